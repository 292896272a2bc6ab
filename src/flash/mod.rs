//! `flash`: putting a node image onto an SD card or USB disk. `bmap_read`
//! reads the map of what to write, `write` writes it (mapped ranges only,
//! the first MiB last, the partition table wiped on any failure), `verify`
//! reads the medium back and opens it with our own readers, `blkdev`
//! holds the block-device ioctls.

pub mod blkdev;
pub mod bmap_read;
pub mod verify;
pub mod write;
