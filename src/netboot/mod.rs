//! Network boot: the servers `serve` runs so a Raspberry Pi 4/5 boots from
//! a node image without an SD card (issue 14; shared/reference/targets.md
//! §4). Each protocol is its own module; `serve` wires them on one runtime.

pub mod boot_files;
pub mod delta;
pub mod disk;
pub mod http;
pub mod initramfs;
pub mod lower;
pub mod nbd;
pub mod ports;
pub mod prepare;
pub mod proxydhcp;
pub mod registry;
pub mod serve;
pub mod tftp;
