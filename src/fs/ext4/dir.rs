//! Directory blocks (`directory.rst`): `ext4_dir_entry_2` records, the
//! `metadata_csum` tail, and the operations on one leaf block — parse with
//! every record checked, insert into slack, remove, lay out afresh.

use super::checksum::crc32c_raw;
use super::error::{Result, Structure, WriteError};
use crate::io::bytes::{le_u16, le_u32};

pub const FT_UNKNOWN: u8 = 0;
pub const FT_REG_FILE: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_SYMLINK: u8 = 7;
/// The highest `file_type` value (`EXT4_FT_SYMLINK`).
const FT_MAX: u8 = 7;
const TAIL_LEN: usize = 12;
const TAIL_FT: u8 = 0xDE;

/// One live record of a directory block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub ino: u32,
    pub name: Vec<u8>,
    pub file_type: u8,
}

/// Record length a name needs: 8 bytes of header, the name, 4-byte aligned.
pub fn rec_len_for(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

/// A live entry's name as e2fsck wants it: not empty, no `/` and no NUL
/// (the kernel could never have made it; a writer that kept going would
/// build around a name nothing can look up).
fn check_name(name: &[u8], at: usize) -> std::result::Result<(), String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() {
        return Err(format!("a live entry at offset {at} has an empty name"));
    }
    if name.contains(&b'/') {
        return Err(format!("the name {shown:?} at offset {at} contains '/'"));
    }
    if name.contains(&0) {
        return Err(format!(
            "the name {shown:?} at offset {at} contains a NUL byte"
        ));
    }
    Ok(())
}

/// How directory blocks of one filesystem are laid out.
#[derive(Debug, Clone, Copy)]
pub struct DirFormat {
    pub block_size: usize,
    pub filetype: bool,
    pub csum: bool,
}

impl DirFormat {
    /// Where records end: before the tail under metadata_csum.
    pub fn usable(&self) -> usize {
        if self.csum {
            self.block_size - TAIL_LEN
        } else {
            self.block_size
        }
    }

    fn name_len(&self, block: &[u8], at: usize) -> usize {
        if self.filetype {
            usize::from(block[at + 6])
        } else {
            usize::from(le_u16(block, at + 6))
        }
    }

    fn put_record(&self, block: &mut [u8], at: usize, rec_len: usize, d: &Dirent) {
        block[at..at + 4].copy_from_slice(&d.ino.to_le_bytes());
        // rec_len ≤ block size ≤ 4096 and name ≤ 255: both fit u16.
        block[at + 4..at + 6].copy_from_slice(&(rec_len as u16).to_le_bytes());
        if self.filetype {
            block[at + 6] = d.name.len() as u8;
            block[at + 7] = d.file_type;
        } else {
            block[at + 6..at + 8].copy_from_slice(&(d.name.len() as u16).to_le_bytes());
        }
        block[at + 8..at + 8 + d.name.len()].copy_from_slice(&d.name);
        // Zero the slack so the same inputs give the same bytes.
        block[at + 8 + d.name.len()..at + rec_len].fill(0);
    }

    /// Every record (offset, rec_len, entry; `ino` 0 for unused) of a leaf
    /// block, each checked; also checks the tail and its checksum.
    pub fn parse(
        &self,
        block: &[u8],
        ino: u32,
        lblk: u32,
        csum_seed: Option<u32>,
        inodes_count: u32,
    ) -> Result<Vec<(usize, usize, Dirent)>> {
        let bad = |why: String| WriteError::corrupt(Structure::DirectoryBlock { ino, lblk }, why);
        let end = self.usable();
        if self.csum {
            let t = &block[end..];
            if le_u32(t, 0) != 0
                || usize::from(le_u16(t, 4)) != TAIL_LEN
                || t[6] != 0
                || t[7] != TAIL_FT
            {
                return Err(bad("the checksum tail is missing".into()));
            }
            if let Some(seed) = csum_seed {
                let stored = le_u32(t, 8);
                let computed = crc32c_raw(seed, &block[..end]);
                if stored != computed {
                    return Err(bad(format!(
                        "directory block checksum is {stored:#010x}, computed {computed:#010x}"
                    )));
                }
            }
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at < end {
            if at + 8 > end {
                return Err(bad(format!("record at offset {at} crosses the block end")));
            }
            let rec_len = usize::from(le_u16(block, at + 4));
            let name_len = self.name_len(block, at);
            if rec_len < 12 || rec_len % 4 != 0 || at + rec_len > end {
                return Err(bad(format!("rec_len {rec_len} at offset {at}")));
            }
            if 8 + name_len > rec_len {
                return Err(bad(format!(
                    "name_len {name_len} does not fit rec_len {rec_len} at offset {at}"
                )));
            }
            let child = le_u32(block, at);
            if child > inodes_count {
                return Err(bad(format!("entry at offset {at} points at inode {child}")));
            }
            let file_type = if self.filetype {
                block[at + 7]
            } else {
                FT_UNKNOWN
            };
            if child != 0 {
                check_name(&block[at + 8..at + 8 + name_len], at).map_err(bad)?;
                if file_type > FT_MAX {
                    return Err(bad(format!(
                        "entry at offset {at} has file type {file_type} (0 to {FT_MAX} exist)"
                    )));
                }
            }
            out.push((
                at,
                rec_len,
                Dirent {
                    ino: child,
                    name: block[at + 8..at + 8 + name_len].to_vec(),
                    file_type,
                },
            ));
            at += rec_len;
        }
        Ok(out)
    }

    /// Inserts `d` into slack of the block if there is room; false if not.
    pub fn insert(&self, block: &mut [u8], d: &Dirent) -> bool {
        let need = rec_len_for(d.name.len());
        let end = self.usable();
        let mut at = 0;
        while at < end {
            let rec_len = usize::from(le_u16(block, at + 4));
            if rec_len == 0 {
                return false;
            }
            let live = le_u32(block, at) != 0;
            let used = if live {
                rec_len_for(self.name_len(block, at))
            } else {
                0
            };
            if rec_len - used >= need {
                if live {
                    block[at + 4..at + 6].copy_from_slice(&(used as u16).to_le_bytes());
                    self.put_record(block, at + used, rec_len - used, d);
                } else {
                    self.put_record(block, at, rec_len, d);
                }
                return true;
            }
            at += rec_len;
        }
        false
    }

    /// Removes the live record named `name`; false if absent.
    pub fn remove(&self, block: &mut [u8], name: &[u8]) -> bool {
        let end = self.usable();
        let mut at = 0;
        let mut prev: Option<usize> = None;
        while at < end {
            let rec_len = usize::from(le_u16(block, at + 4));
            if rec_len == 0 {
                return false;
            }
            let n = self.name_len(block, at);
            if le_u32(block, at) != 0 && &block[at + 8..at + 8 + n] == name {
                match prev {
                    Some(p) => {
                        let merged = usize::from(le_u16(block, p + 4)) + rec_len;
                        block[p + 4..p + 6].copy_from_slice(&(merged as u16).to_le_bytes());
                        block[at..at + rec_len].fill(0);
                    }
                    None => block[at..at + 4].fill(0),
                }
                return true;
            }
            prev = Some(at);
            at += rec_len;
        }
        false
    }

    /// A block holding exactly `entries`, packed, the last record taking the
    /// slack, plus the tail. `entries` must fit (callers check with
    /// the sum of `rec_len_for`).
    pub fn layout(&self, entries: &[Dirent]) -> Vec<u8> {
        let mut block = vec![0u8; self.block_size];
        let end = self.usable();
        if entries.is_empty() {
            // One empty record spanning the block.
            block[4..6].copy_from_slice(&(end as u16).to_le_bytes());
        }
        let mut at = 0;
        for (i, d) in entries.iter().enumerate() {
            let len = if i + 1 == entries.len() {
                end - at
            } else {
                rec_len_for(d.name.len())
            };
            self.put_record(&mut block, at, len, d);
            at += len;
        }
        self.init_tail(&mut block);
        block
    }

    fn init_tail(&self, block: &mut [u8]) {
        if self.csum {
            let t = self.usable();
            block[t..].fill(0);
            block[t + 4..t + 6].copy_from_slice(&(TAIL_LEN as u16).to_le_bytes());
            block[t + 7] = TAIL_FT;
        }
    }

    /// Stores the tail checksum (call after the last change).
    pub fn finish(&self, block: &mut [u8], csum_seed: Option<u32>) {
        if let (true, Some(seed)) = (self.csum, csum_seed) {
            let t = self.usable();
            let c = crc32c_raw(seed, &block[..t]);
            block[t + 8..t + 12].copy_from_slice(&c.to_le_bytes());
        }
    }

    /// The first block of a new directory: `.`, `..` and the tail.
    pub fn new_dir_block(&self, ino: u32, parent: u32) -> Vec<u8> {
        let t = if self.filetype { FT_DIR } else { FT_UNKNOWN };
        self.layout(&[
            Dirent {
                ino,
                name: b".".to_vec(),
                file_type: t,
            },
            Dirent {
                ino: parent,
                name: b"..".to_vec(),
                file_type: t,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ino: u32, name: &str) -> Dirent {
        Dirent {
            ino,
            name: name.as_bytes().to_vec(),
            file_type: FT_REG_FILE,
        }
    }

    fn parse_err(f: &DirFormat, b: &[u8]) -> String {
        f.parse(b, 12, 0, None, 1000).unwrap_err().to_string()
    }

    #[test]
    fn names_with_a_slash_or_nul_and_bad_file_types_are_refused() {
        let f = DirFormat {
            block_size: 1024,
            filetype: true,
            csum: false,
        };
        for (name, why) in [("a/b", "contains '/'"), ("a\0b", "contains a NUL byte")] {
            let mut b = f.new_dir_block(12, 2);
            assert!(f.insert(&mut b, &d(100, name)));
            let e = parse_err(&f, &b);
            assert!(
                e.contains("directory block 0 of inode 12") && e.contains(why),
                "{e}"
            );
        }
        let mut b = f.new_dir_block(12, 2);
        assert!(f.insert(&mut b, &d(100, "x")));
        let at = b
            .windows(3)
            .position(|w| w == [1, FT_REG_FILE, b'x'])
            .unwrap()
            - 6;
        b[at + 7] = 9;
        let e = parse_err(&f, &b);
        assert!(e.contains("file type 9"), "{e}");
    }

    #[test]
    fn insert_remove_and_parse_agree() {
        let f = DirFormat {
            block_size: 1024,
            filetype: true,
            csum: true,
        };
        let mut b = f.new_dir_block(12, 2);
        for i in 0..40 {
            assert!(f.insert(&mut b, &d(100 + i, &format!("file-{i:03}"))));
        }
        assert!(f.remove(&mut b, b"file-007"));
        assert!(!f.remove(&mut b, b"file-007"));
        f.finish(&mut b, Some(1));
        let names: Vec<_> = f
            .parse(&b, 12, 0, Some(1), 1000)
            .unwrap()
            .into_iter()
            .filter(|(_, _, e)| e.ino != 0)
            .map(|(_, _, e)| String::from_utf8(e.name).unwrap())
            .collect();
        assert_eq!(names.len(), 41);
        assert!(!names.contains(&"file-007".to_string()));
        // Fill it up: insertion reports a full block instead of overrunning.
        let mut n = 0;
        while f.insert(&mut b, &d(1, &format!("more-{n}"))) {
            n += 1;
        }
        assert!(n > 0);
        f.finish(&mut b, Some(1));
        assert!(f.parse(&b, 12, 0, Some(1), 1000).is_ok());
    }
}
