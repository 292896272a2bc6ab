//! The two block-device ioctls flashing needs and rustix has no safe
//! wrapper for: `BLKRRPART` (make the kernel re-read the partition table)
//! and `BLKFLSBUF` (drop the device's page cache before reading it back).
//! The only `unsafe` of the crate lives here.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use rustix::ioctl::{NoArg, Opcode, opcode};

/// `_IO(0x12, 95)` in linux/fs.h.
const BLKRRPART: Opcode = opcode::none(0x12, 95);
/// `_IO(0x12, 97)` in linux/fs.h.
const BLKFLSBUF: Opcode = opcode::none(0x12, 97);

/// Asks the kernel to re-read `disk`'s partition table. On a regular
/// file this fails with ENOTTY; on a loop device without partition
/// scanning with EINVAL; while a partition is in use with EBUSY.
pub fn reread_partitions(disk: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART is `_IO(0x12, 95)`, an ioctl that takes no
    // argument (the kernel ignores `arg`), so passing none is what it
    // expects; `disk` is an open descriptor borrowed for the call, and
    // on a descriptor that is not a block device the kernel answers
    // ENOTTY without touching memory.
    let call = unsafe { NoArg::<BLKRRPART>::new() };
    // SAFETY: as above; NoArg passes no pointer the kernel could write
    // through.
    unsafe { rustix::ioctl::ioctl(disk, call) }.map_err(io::Error::from)
}

/// Writes back and drops `disk`'s buffer cache, so the next buffered
/// read comes from the medium. Needs CAP_SYS_ADMIN; ENOTTY on a file.
pub fn flush_buffers(disk: &File) -> io::Result<()> {
    // SAFETY: BLKFLSBUF is `_IO(0x12, 97)` and takes no argument, as
    // BLKRRPART above; the same reasoning holds.
    let call = unsafe { NoArg::<BLKFLSBUF>::new() };
    // SAFETY: as above.
    unsafe { rustix::ioctl::ioctl(disk, call) }.map_err(io::Error::from)
}
