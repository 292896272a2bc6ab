//! bmaptool's format 2.0: the image size, its mapped block ranges and a
//! SHA-256 of each, and the file's own checksum (taken with that field all
//! zeros).
//!
//! Which blocks are mapped is `build::mapped`'s rule: every block the
//! image's structures or filesystems use, zero or not — everything outside
//! the data partitions, a FAT's reserved area, FATs, root directory and
//! clusters with a non-zero entry, every block an ext4's bitmaps mark in
//! use, any other or unreadable partition whole. Only free space is left
//! out, because `bmaptool copy` leaves unmapped blocks of the card as they
//! were (docs/BMAP.md). A range's SHA-256 covers the image's bytes there,
//! holes in the file read as zeros.

use sha2::{Digest, Sha256};

use crate::digest::hex;

pub const BLOCK: u64 = 4096;

/// One mapped range: blocks `first..=last` and the SHA-256 of their bytes
/// (the last block cut at the image's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub sha256: [u8; 32],
}

/// The bmap of an image of `len` bytes whose mapped blocks are `ranges`
/// (in order, not overlapping).
pub fn render(len: u64, ranges: &[Range]) -> String {
    let mut lines = String::new();
    let mut mapped = 0;
    for r in ranges {
        mapped += r.last - r.first + 1;
        let span = if r.first == r.last {
            format!("{}", r.first)
        } else {
            format!("{}-{}", r.first, r.last)
        };
        lines.push_str(&format!(
            "        <Range chksum=\"{}\"> {span} </Range>\n",
            hex(&r.sha256)
        ));
    }
    let blocks = len.div_ceil(BLOCK);
    let template = |sum: &str| {
        format!(
            "<?xml version=\"1.0\" ?>\n\
             <!-- Made by homelab-image; use it with bmaptool copy -->\n\
             <bmap version=\"2.0\">\n    \
             <ImageSize> {len} </ImageSize>\n    \
             <BlockSize> {BLOCK} </BlockSize>\n    \
             <BlocksCount> {blocks} </BlocksCount>\n    \
             <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    \
             <ChecksumType> sha256 </ChecksumType>\n    \
             <BmapFileChecksum> {sum} </BmapFileChecksum>\n    \
             <BlockMap>\n{lines}    </BlockMap>\n</bmap>\n"
        )
    };
    let unsigned = template(&"0".repeat(64));
    let sum = hex(&Sha256::digest(unsigned.as_bytes()));
    template(&sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_checksum_covers_the_file_with_the_field_zeroed() {
        let r = Range {
            first: 0,
            last: 2,
            sha256: [7; 32],
        };
        let text = render(10_000, &[r]);
        assert!(text.contains("<BlocksCount> 3 </BlocksCount>"));
        assert!(text.contains("<MappedBlocksCount> 3 </MappedBlocksCount>"));
        assert!(text.contains("> 0-2 </Range>"));
        let start = text.find("<BmapFileChecksum> ").unwrap() + 19;
        let sum = text[start..start + 64].to_string();
        let zeroed = text.replace(&sum, &"0".repeat(64));
        assert_eq!(hex(&Sha256::digest(zeroed.as_bytes())), sum);
    }
}
