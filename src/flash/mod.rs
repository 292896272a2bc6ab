//! `flash`: putting a node image onto an SD card or USB disk.
//!
//! Which disk: `devices` (read from sysfs and procfs under a root that
//! tests replace), the safety rules a target must pass (`rules`), whether
//! we may write it (`privileges`), and opening it exclusively with the
//! rules checked again on what was opened (`exclusive`). What and how:
//! `bmap_read` reads the map of what to write, `write` writes it (mapped
//! ranges only, the first MiB last, the partition table wiped on any
//! failure), `verify` reads the medium back and opens it with our own
//! readers, `blkdev` holds the block-device ioctls. `current` tells
//! whether a node's built image is still what `build` makes of the profile.

pub mod blkdev;
pub mod bmap_read;
pub mod current;
pub mod devices;
pub mod exclusive;
pub mod mounts;
pub mod privileges;
pub mod rules;
pub mod sysfs;
pub mod verify;
pub mod write;
