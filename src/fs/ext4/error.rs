//! Typed errors of the ext4 writer. Every corruption names the structure
//! (and its inode, group or block) that failed, so the caller can say which
//! part of which image is damaged; every refusal names the feature or state
//! that caused it.

use std::fmt;

use super::superblock::SuperblockError;

/// The on-disk structure a corruption was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Structure {
    Superblock,
    GroupDescriptor { group: u32 },
    BlockBitmap { group: u32 },
    InodeBitmap { group: u32 },
    Inode { ino: u32 },
    ExtentHeader { ino: u32, block: Option<u64> },
    DirectoryBlock { ino: u32, lblk: u32 },
    HtreeNode { ino: u32, lblk: u32 },
    Journal,
    XattrBlock { ino: u32, block: u64 },
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::Superblock => write!(f, "superblock"),
            Structure::GroupDescriptor { group } => write!(f, "group descriptor {group}"),
            Structure::BlockBitmap { group } => write!(f, "block bitmap of group {group}"),
            Structure::InodeBitmap { group } => write!(f, "inode bitmap of group {group}"),
            Structure::Inode { ino } => write!(f, "inode {ino}"),
            Structure::ExtentHeader { ino, block: None } => {
                write!(f, "extent header in inode {ino}")
            }
            Structure::ExtentHeader {
                ino,
                block: Some(b),
            } => write!(f, "extent tree block {b} of inode {ino}"),
            Structure::DirectoryBlock { ino, lblk } => {
                write!(f, "directory block {lblk} of inode {ino}")
            }
            Structure::HtreeNode { ino, lblk } => {
                write!(f, "htree node (directory block {lblk}) of inode {ino}")
            }
            Structure::Journal => write!(f, "journal superblock"),
            Structure::XattrBlock { ino, block } => {
                write!(f, "extended attribute block {block} of inode {ino}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Superblock(#[from] SuperblockError),
    /// The filesystem is in a state or uses a feature we do not write.
    #[error("refusing to write this ext4 filesystem: {0}")]
    Refused(String),
    #[error("ext4 {structure} is corrupt: {why}")]
    Corrupt { structure: Structure, why: String },
    #[error("not enough free {what} in the ext4 filesystem: {needed} needed, {free} free{hint}")]
    NoSpace {
        what: &'static str,
        needed: u64,
        free: u64,
        hint: String,
    },
    /// An operation that does not fit the tree (missing parent, a file where
    /// a directory is wanted, a bad name).
    #[error("{path}: {why}")]
    Path { path: String, why: String },
    /// The cause is part of the message and deliberately not a `source`,
    /// so `{:#}` prints it once.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

impl WriteError {
    pub fn corrupt(structure: Structure, why: impl Into<String>) -> WriteError {
        WriteError::Corrupt {
            structure,
            why: why.into(),
        }
    }

    pub fn path(path: &str, why: impl Into<String>) -> WriteError {
        WriteError::Path {
            path: path.to_string(),
            why: why.into(),
        }
    }

    pub fn io(what: impl Into<String>, error: std::io::Error) -> WriteError {
        WriteError::Io {
            what: what.into(),
            error,
        }
    }
}

pub type Result<T, E = WriteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::WriteError;

    #[test]
    fn an_io_error_prints_its_cause_once_under_alternate_format() {
        let e = WriteError::io(
            "reading ext4 block 7",
            std::io::Error::other("disk on fire"),
        );
        let shown = format!("{:#}", anyhow::Error::new(e).context("x.img: partition 2"));
        assert_eq!(shown.matches("disk on fire").count(), 1, "{shown}");
        assert!(
            shown.contains("reading ext4 block 7: disk on fire"),
            "{shown}"
        );
    }
}
