//! Typed errors of partition-table parsing. Each carries the coordinates
//! (partition number, LBA, byte offset) a user needs to find the problem.

use crate::io::UnitError;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("the image is only {len} bytes, smaller than one 512-byte sector")]
    TooSmall { len: u64 },
    #[error("no partition table: no MBR boot signature 0x55AA at bytes 510–511")]
    NoSignature,
    #[error(
        "no partition table: the image is a bare {0} filesystem; we need a whole-disk \
         image with an MBR or GPT"
    )]
    BareFilesystem(&'static str),
    #[error(
        "no partition table: MBR entry {entry} has boot flag {flag:#04x} \
         (must be 0x00 or 0x80), so bytes 446–509 are not a partition table"
    )]
    BadBootFlag { entry: u32, flag: u8 },
    #[error("partition {number} starts at LBA 0, on top of the partition table")]
    StartsAtZero { number: u32 },
    #[error("partition {number} ends at byte {end}, past the end of the image ({image_len} bytes)")]
    PastEnd {
        number: u32,
        end: u64,
        image_len: u64,
    },
    #[error(
        "partitions {a} and {b} overlap (partition {a}: LBA {a_start}–{a_last}, \
         partition {b}: LBA {b_start}–{b_last})"
    )]
    Overlap {
        a: u32,
        b: u32,
        a_start: u64,
        a_last: u64,
        b_start: u64,
        b_last: u64,
    },
    #[error("extended partition chain: EBR at LBA {lba} {problem}")]
    BadEbr { lba: u64, problem: &'static str },
    #[error("GPT header at LBA {lba}: {problem}")]
    BadGptHeader { lba: u64, problem: String },
    #[error(
        "GPT header at LBA {lba} has a bad CRC32 (stored {stored:#010x}, computed {computed:#010x})"
    )]
    GptHeaderCrc {
        lba: u64,
        stored: u32,
        computed: u32,
    },
    #[error(
        "GPT partition entry array at LBA {lba} has a bad CRC32 \
         (stored {stored:#010x}, computed {computed:#010x})"
    )]
    GptEntriesCrc {
        lba: u64,
        stored: u32,
        computed: u32,
    },
    #[error(
        "protective MBR announces a GPT, but no GPT header was found at LBA 1 \
         for 512- or 4096-byte sectors"
    )]
    GptMissing,
    #[error("GPT partition {number}: {problem}")]
    BadGptEntry { number: u32, problem: String },
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// The cause is part of the message and deliberately not a `source`
    /// (a field named `source` would make it one), so `{:#}` prints it once.
    #[error("reading {what} at byte {offset}: {error}")]
    Io {
        what: &'static str,
        offset: u64,
        error: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::DiskError;

    #[test]
    fn an_io_error_prints_its_cause_once_under_alternate_format() {
        let e = DiskError::Io {
            what: "the MBR",
            offset: 0,
            error: std::io::Error::other("disk on fire"),
        };
        let shown = format!("{:#}", anyhow::Error::new(e).context("x.img"));
        assert_eq!(shown.matches("disk on fire").count(), 1, "{shown}");
        assert!(shown.contains("the MBR at byte 0: disk on fire"), "{shown}");
    }
}
