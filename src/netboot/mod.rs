//! Network boot: the servers `serve` runs so a Raspberry Pi 4/5 boots from
//! a node image without an SD card (issue 14; shared/reference/targets.md
//! §4). Each protocol is its own module; the wiring into `serve` comes later.

pub mod disk;
pub mod initramfs;
pub mod registry;
pub mod tftp;
