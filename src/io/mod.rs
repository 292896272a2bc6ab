//! Byte-level access to image files: typed units and bounded partition
//! windows. Nothing above this module computes an absolute file offset.

pub mod bytes;
pub mod units;
pub mod window;

pub use units::{ByteLen, ByteOffset, ByteRange, Lba, SectorCount, SectorSize, UnitError};
pub use window::PartitionWindow;
