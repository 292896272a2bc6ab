//! Byte-level access to image files: typed units and bounded partition
//! windows. Nothing above this module computes an absolute file offset.

pub mod bytes;
pub mod lock;
pub mod overlay;
pub mod path_error;
pub mod segments;
pub mod storage;
pub mod units;
pub mod window;

/// Positional reads of exactly `buf.len()` bytes: what the partition-table
/// readers need, from an image file or (for fuzzing) from memory.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        match start.and_then(|s| self.get(s..s.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the buffer",
            )),
        }
    }
}

pub use storage::{MemStorage, Storage};
pub use units::{ByteLen, ByteOffset, ByteRange, Lba, SectorCount, SectorSize, UnitError};
pub use window::PartitionWindow;
