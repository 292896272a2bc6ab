//! Checking a FAT volume before fatfs follows it. fatfs 0.3.6 trusts every
//! number on the volume: a looped cluster chain makes it read forever, a
//! chain pointing outside the data area makes it compute offsets from
//! garbage, a file whose size exceeds its chain reads back truncated. So
//! before fatfs sees a volume we walk, over the FAT itself, every chain it
//! could follow: the root directory's and, for a full check, every
//! directory's and file's reachable from it. Each cluster may be claimed
//! once (a visited set catches loops and cross-links), every link must
//! name a data cluster, every chain must end in an end-of-chain mark, a
//! file's chain must be exactly as long as its size needs (what `fsck.fat`
//! demands), and a directory's `.` and `..` must point where they belong.
//! The work is bounded by the number of clusters: nothing is visited twice.

use std::collections::HashSet;

use super::bpb::{Bpb, FatType};
use crate::io::PartitionWindow;
use crate::io::bytes::{le_u16, le_u32};

/// How much of the volume to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The root directory's own chain (what reading the label follows).
    RootDir,
    /// Every directory and file reachable from the root.
    Everything,
    /// Everything, and where each file's bytes lie (`Checked::files`).
    Map,
}

/// A volume structure that fatfs must not be allowed to follow. Paths are
/// inside the volume; clusters are FAT cluster numbers.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(
        "{path}: starts at cluster {cluster}, which is not a data cluster of this volume \
         (2 to {last}); the FAT is damaged"
    )]
    BadStart {
        path: String,
        cluster: u32,
        last: u32,
    },
    #[error(
        "{path}: cluster {cluster} links to cluster {next}, which is not a data cluster of \
         this volume (2 to {last}); the FAT is damaged"
    )]
    OutOfRange {
        path: String,
        cluster: u32,
        next: u32,
        last: u32,
    },
    #[error("{path}: its cluster chain loops back to cluster {cluster}; the FAT is damaged")]
    Loop { path: String, cluster: u32 },
    #[error(
        "{path}: cluster {cluster} also belongs to another file or directory (cross-linked \
         chains); the FAT is damaged"
    )]
    CrossLinked { path: String, cluster: u32 },
    #[error(
        "{path}: cluster {cluster} is marked {what} in the middle of its chain; the FAT is damaged"
    )]
    Broken {
        path: String,
        cluster: u32,
        what: &'static str,
    },
    #[error(
        "{path}: its size is {size} bytes, but its cluster chain from cluster {first} holds \
         only {clusters} clusters ({} bytes); the volume is damaged",
        u64::from(*clusters) * cluster_size
    )]
    SizeBeyondChain {
        path: String,
        size: u64,
        first: u32,
        clusters: u32,
        cluster_size: u64,
    },
    #[error(
        "{path}: its cluster chain from cluster {first} has {clusters} clusters, more than the \
         {need} its size of {size} bytes needs; the volume is damaged"
    )]
    ChainBeyondSize {
        path: String,
        size: u64,
        first: u32,
        clusters: u32,
        need: u64,
    },
    #[error(
        "{dir}: an entry is named {name:?}, which no path can name (empty, `.`, `..` or with a \
         `/`); the volume is damaged"
    )]
    BadName { dir: String, name: String },
    #[error(
        "{dir}: more than one entry is named {name:?} (names differ in more than case, long \
         and short ones alike); the volume is damaged"
    )]
    Duplicate { dir: String, name: String },
    #[error("{path}: a directory entry with no first cluster; the volume is damaged")]
    DirWithoutCluster { path: String },
    #[error(
        "{path}: its {name:?} entry points to cluster {cluster}, not {expected}; the volume is \
         damaged"
    )]
    BadDotEntry {
        path: String,
        name: &'static str,
        cluster: u32,
        expected: u32,
    },
    #[error("FSInfo sector {sector}: {field} is {value:#010x}, not {expected:#010x}")]
    FsInfo {
        sector: u16,
        field: &'static str,
        value: u32,
        expected: u32,
    },
    /// (`cause`, not `source`: the message carries it, and a source
    /// would print it twice under `{:#}`.)
    #[error("{path}: reading {what}: {cause}")]
    Io {
        path: String,
        what: String,
        cause: std::io::Error,
    },
}

/// What one FAT entry says about the cluster after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Next(u32),
    End,
    Free,
    Bad,
}

/// Reads FAT entries through a one-block cache: chains are mostly
/// contiguous, so walking one costs about a read per block of entries.
struct Table<'a> {
    window: &'a PartitionWindow,
    offset: u64,
    fat_type: FatType,
    block: Option<u64>,
    buf: Vec<u8>,
}

const BLOCK: u64 = 4096;

impl<'a> Table<'a> {
    fn new(window: &'a PartitionWindow, bpb: &Bpb) -> Table<'a> {
        Table {
            window,
            offset: bpb.fat_offset(),
            fat_type: bpb.fat_type,
            block: None,
            buf: vec![0; BLOCK as usize], // as: a 4 KiB constant
        }
    }

    /// One byte of the FAT at `pos` (relative to the FAT's start).
    fn byte(&mut self, pos: u64) -> std::io::Result<u8> {
        let block = pos / BLOCK;
        if self.block != Some(block) {
            // The last block may be short: the FAT ends where the data
            // area starts, which need not be 4 KiB aligned; read what the
            // window holds and leave the rest zero.
            let start = self.offset + block * BLOCK;
            let avail = self.window.len().0.saturating_sub(start).min(BLOCK);
            self.buf.fill(0);
            // avail <= BLOCK, so it fits in usize.
            self.window
                .read_exact_at(start, &mut self.buf[..avail as usize])?;
            self.block = Some(block);
        }
        Ok(self.buf[(pos % BLOCK) as usize]) // as: below BLOCK
    }

    /// The entry of `cluster` (a data cluster: Bpb::parse checked that the
    /// FAT has an entry for each).
    fn link(&mut self, cluster: u32) -> std::io::Result<Link> {
        let c = u64::from(cluster);
        let (raw, bad, end) = match self.fat_type {
            FatType::Fat12 => {
                let pos = c + c / 2;
                let pair = u32::from(self.byte(pos)?) | (u32::from(self.byte(pos + 1)?) << 8);
                let v = if cluster & 1 == 0 {
                    pair & 0x0FFF
                } else {
                    pair >> 4
                };
                (v, 0xFF7, 0xFF8)
            }
            FatType::Fat16 => {
                let pos = c * 2;
                let v = u32::from(self.byte(pos)?) | (u32::from(self.byte(pos + 1)?) << 8);
                (v, 0xFFF7, 0xFFF8)
            }
            FatType::Fat32 => {
                let pos = c * 4;
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.byte(pos + i)?) << (8 * i);
                }
                // The top four bits are reserved (as fatfs and the spec mask them).
                (v & 0x0FFF_FFFF, 0x0FFF_FFF7, 0x0FFF_FFF8)
            }
        };
        Ok(match raw {
            0 => Link::Free,
            v if v == bad => Link::Bad,
            v if v >= end => Link::End,
            v => Link::Next(v),
        })
    }
}

/// Clusters already claimed by a chain: a bit per cluster for a full
/// check, a set for the root directory alone (so reading a label does not
/// allocate a bit for every cluster of a large volume).
enum Visited {
    Bits(Vec<u64>),
    Set(HashSet<u32>),
}

impl Visited {
    /// Marks `c`; false when it was already marked.
    fn insert(&mut self, c: u32) -> bool {
        match self {
            Visited::Bits(words) => {
                let (w, b) = ((c / 64) as usize, c % 64); // as: u32 fits usize
                let fresh = words[w] & (1 << b) == 0;
                words[w] |= 1 << b;
                fresh
            }
            Visited::Set(s) => s.insert(c),
        }
    }
}

/// A directory waiting to have its entries checked.
struct Dir {
    path: String,
    /// First cluster, 0 for the fixed FAT12/16 root.
    first: u32,
    /// The parent's first cluster, as `..` records it (0 for the root).
    parent: u32,
    clusters: Vec<u32>,
}

struct Checker<'a> {
    window: &'a PartitionWindow,
    bpb: &'a Bpb,
    table: Table<'a>,
    visited: Visited,
    dead: Vec<(u64, u64)>,
    /// With `Scope::Map`: the files found so far.
    files: Option<Vec<FileMap>>,
}

/// Where one file's bytes lie in the volume: `runs` of (offset, length)
/// in volume bytes, in file order, adding up to at least `size` (the last
/// cluster's slack is included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMap {
    /// The path from the root, `/`-separated, as the entries name it
    /// (the long name when there is one).
    pub path: String,
    pub size: u64,
    pub runs: Vec<(u64, u64)>,
}

/// What a full check found that an edit must deal with first.
#[derive(Debug, Default)]
pub struct Checked {
    /// Spans (offset, length in the volume) of directory slots after an
    /// end mark that hold stale bytes. They are free, but fatfs writes a
    /// new entry into the end mark's slot, after which those bytes would
    /// read as entries: an edit zeroes them first.
    pub dead: Vec<(u64, u64)>,
    /// Every file and where its bytes are (with `Scope::Map` only).
    pub files: Vec<FileMap>,
}

/// Checks the volume in `window`, whose boot sector `bpb` was parsed
/// from; `scope` says how much of the tree to walk.
pub fn check(window: &PartitionWindow, bpb: &Bpb, scope: Scope) -> Result<Checked, ChainError> {
    if bpb.fat_type == FatType::Fat32 {
        check_fs_info(window, bpb)?;
    }
    let visited = match scope {
        Scope::Everything | Scope::Map => {
            // cluster_count + 2 bits, rounded up to whole words.
            let words = (u64::from(bpb.cluster_count) + 2).div_ceil(64);
            Visited::Bits(vec![0; usize::try_from(words).unwrap_or(usize::MAX)])
        }
        Scope::RootDir => Visited::Set(HashSet::new()),
    };
    let mut ck = Checker {
        window,
        bpb,
        table: Table::new(window, bpb),
        visited,
        dead: Vec::new(),
        files: (scope == Scope::Map).then(Vec::new),
    };
    let root = match bpb.fat_type {
        FatType::Fat32 => Dir {
            path: "/".into(),
            first: bpb.root_cluster,
            parent: 0,
            clusters: ck.walk("/", bpb.root_cluster, true)?.0,
        },
        _ => Dir {
            path: "/".into(),
            first: 0,
            parent: 0,
            clusters: Vec::new(),
        },
    };
    if scope == Scope::RootDir {
        return Ok(Checked::default());
    }
    let mut todo = vec![root];
    while let Some(dir) = todo.pop() {
        ck.entries(&dir, &mut todo)?;
    }
    Ok(Checked {
        dead: ck.dead,
        files: ck.files.unwrap_or_default(),
    })
}

/// The FSInfo sector's three signatures, which fatfs refuses to mount
/// without (with a message that names neither sector nor field).
fn check_fs_info(window: &PartitionWindow, bpb: &Bpb) -> Result<(), ChainError> {
    let mut s = [0u8; 512];
    let at = u64::from(bpb.fs_info_sector) * u64::from(bpb.bytes_per_sector);
    window
        .read_exact_at(at, &mut s)
        .map_err(|cause| ChainError::Io {
            path: "/".into(),
            what: format!("the FSInfo sector {}", bpb.fs_info_sector),
            cause,
        })?;
    for (field, off, expected) in [
        ("FSI_LeadSig", 0, 0x4161_5252),
        ("FSI_StrucSig", 484, 0x6141_7272),
        ("FSI_TrailSig", 508, 0xAA55_0000),
    ] {
        let value = le_u32(&s, off);
        if value != expected {
            return Err(ChainError::FsInfo {
                sector: bpb.fs_info_sector,
                field,
                value,
                expected,
            });
        }
    }
    Ok(())
}

impl Checker<'_> {
    fn last_cluster(&self) -> u32 {
        // cluster_count <= 0x0FFF_FFF4 (Bpb::parse), so this cannot overflow.
        self.bpb.cluster_count + 1
    }

    /// Walks the chain starting at `first`, claiming each cluster: its
    /// clusters when `keep` (a directory, whose entries are read next)
    /// and its length.
    fn walk(&mut self, path: &str, first: u32, keep: bool) -> Result<(Vec<u32>, u32), ChainError> {
        let last = self.last_cluster();
        if !self.bpb.is_data_cluster(first) {
            return Err(ChainError::BadStart {
                path: path.into(),
                cluster: first,
                last,
            });
        }
        let mut list = Vec::new();
        let mut len = 0u32;
        let mut c = first;
        loop {
            if !self.visited.insert(c) {
                return Err(if self.in_chain(first, len, c) {
                    ChainError::Loop {
                        path: path.into(),
                        cluster: c,
                    }
                } else {
                    ChainError::CrossLinked {
                        path: path.into(),
                        cluster: c,
                    }
                });
            }
            len += 1;
            if keep {
                list.push(c);
            }
            let link = self.table.link(c).map_err(|cause| ChainError::Io {
                path: path.into(),
                what: format!("the FAT entry of cluster {c}"),
                cause,
            })?;
            match link {
                Link::End => return Ok((list, len)),
                Link::Free => {
                    return Err(ChainError::Broken {
                        path: path.into(),
                        cluster: c,
                        what: "free",
                    });
                }
                Link::Bad => {
                    return Err(ChainError::Broken {
                        path: path.into(),
                        cluster: c,
                        what: "bad",
                    });
                }
                Link::Next(next) if !self.bpb.is_data_cluster(next) => {
                    return Err(ChainError::OutOfRange {
                        path: path.into(),
                        cluster: c,
                        next,
                        last,
                    });
                }
                Link::Next(next) => c = next,
            }
        }
    }

    /// Whether `c` is among the first `len` clusters of the chain from
    /// `first` (which were just walked, so the walk is bounded and valid).
    fn in_chain(&mut self, first: u32, len: u32, c: u32) -> bool {
        let mut cur = first;
        for _ in 0..len {
            if cur == c {
                return true;
            }
            match self.table.link(cur) {
                Ok(Link::Next(n)) => cur = n,
                _ => return false,
            }
        }
        false
    }

    /// Checks every entry of `dir`, a cluster (or the fixed root) at a
    /// time; subdirectories go onto `todo`. Slots after the end mark that
    /// are not zero are noted in `dead`.
    fn entries(&mut self, dir: &Dir, todo: &mut Vec<Dir>) -> Result<(), ChainError> {
        let io = |what: String| {
            let path = dir.path.clone();
            move |cause| ChainError::Io { path, what, cause }
        };
        let mut st = DirScan::default();
        if dir.first == 0 {
            let (start, len) = self.bpb.root_dir_region();
            // root_entries * 32, rounded up to a sector: about 2 MiB at most.
            let mut buf = vec![0; len as usize];
            self.window
                .read_exact_at(start, &mut buf)
                .map_err(io("the root directory".into()))?;
            if let Scan::End(at) = self.scan(dir, &buf, &mut st, todo)? {
                self.note_dead(start, &buf, at + 32);
            }
            return Ok(());
        }
        // A cluster is at most 128 sectors of 4 KiB.
        let mut buf = vec![0; self.bpb.cluster_size() as usize];
        let mut ended = false;
        for &c in &dir.clusters {
            let start = self.bpb.cluster_offset(c);
            self.window
                .read_exact_at(start, &mut buf)
                .map_err(io(format!("cluster {c}")))?;
            if ended {
                self.note_dead(start, &buf, 0);
            } else if let Scan::End(at) = self.scan(dir, &buf, &mut st, todo)? {
                self.note_dead(start, &buf, at + 32);
                ended = true;
            }
        }
        Ok(())
    }

    /// Notes `buf[from..]` (read at `start`) as dead when it is not all
    /// zero: free slots by the spec, but fatfs writes a new entry into the
    /// end mark's slot and so would bring what follows it to life.
    fn note_dead(&mut self, start: u64, buf: &[u8], from: usize) {
        if let Some(rest) = buf.get(from..)
            && rest.iter().any(|&b| b != 0)
        {
            // from <= buf.len(), a usize.
            self.dead.push((start + from as u64, rest.len() as u64));
        }
    }

    /// Checks the entries in `bytes`, part of `dir`.
    fn scan(
        &mut self,
        dir: &Dir,
        bytes: &[u8],
        st: &mut DirScan,
        todo: &mut Vec<Dir>,
    ) -> Result<Scan, ChainError> {
        let lfn = &mut st.lfn;
        for (i, raw) in bytes.chunks_exact(32).enumerate() {
            let at = i * 32;
            match raw[0] {
                // No entries follow (fatfs stops here too).
                0x00 => return Ok(Scan::End(at)),
                0xE5 => {
                    lfn.clear();
                    continue;
                }
                _ => {}
            }
            // Classified as fatfs does: the four low attribute bits all set
            // make a long-name part whatever the others say; any entry
            // with the volume bit is skipped (fatfs never follows one).
            let attr = raw[11];
            if attr & 0x0F == 0x0F {
                lfn.push(raw);
                continue;
            }
            let long = lfn.take(raw);
            if attr & 0x08 != 0 {
                continue;
            }
            let first_hi = if self.bpb.fat_type == FatType::Fat32 {
                u32::from(le_u16(raw, 20))
            } else {
                0
            };
            let first = (first_hi << 16) | u32::from(le_u16(raw, 26));
            if let Some(dot) = dot_name(raw) {
                self.check_dot(dir, dot, first)?;
                continue;
            }
            let short = short_name(raw);
            let name = long.unwrap_or_else(|| short.clone());
            // fatfs finds an entry by its long or its short name, ignoring
            // case: each must lead to one entry only, and be a name a path
            // can hold.
            let mut aliases = vec![name.to_uppercase()];
            if !short.eq_ignore_ascii_case(&name) {
                aliases.push(short.to_uppercase());
            }
            for alias in aliases {
                if alias.contains('/') || alias == "." || alias == ".." || alias.is_empty() {
                    return Err(ChainError::BadName {
                        dir: dir.path.clone(),
                        name,
                    });
                }
                if !st.names.insert(alias) {
                    return Err(ChainError::Duplicate {
                        dir: dir.path.clone(),
                        name,
                    });
                }
            }
            let path = if dir.path == "/" {
                format!("/{name}")
            } else {
                format!("{}/{name}", dir.path)
            };
            if attr & 0x10 != 0 {
                if first == 0 {
                    return Err(ChainError::DirWithoutCluster { path });
                }
                let (clusters, _) = self.walk(&path, first, true)?;
                todo.push(Dir {
                    path,
                    first,
                    parent: dir.first,
                    clusters,
                });
            } else {
                self.check_file(&path, first, u64::from(le_u32(raw, 28)))?;
            }
        }
        Ok(Scan::More)
    }

    /// A `.` must name its own directory, `..` its parent (0, or the root
    /// cluster, for the root).
    fn check_dot(&self, dir: &Dir, dot: &'static str, cluster: u32) -> Result<(), ChainError> {
        let root = self.bpb.root_cluster;
        let ok = match dot {
            "." => cluster == dir.first,
            _ => cluster == dir.parent || (dir.parent == root && cluster == 0),
        };
        if ok || dir.path == "/" && cluster == 0 {
            return Ok(());
        }
        Err(ChainError::BadDotEntry {
            path: dir.path.clone(),
            name: dot,
            cluster,
            expected: if dot == "." { dir.first } else { dir.parent },
        })
    }

    /// A file's chain must be exactly as long as its size needs.
    fn check_file(&mut self, path: &str, first: u32, size: u64) -> Result<(), ChainError> {
        let cs = self.bpb.cluster_size();
        let need = size.div_ceil(cs);
        let keep = self.files.is_some();
        let (list, clusters) = if first == 0 {
            (Vec::new(), 0)
        } else {
            self.walk(path, first, keep)?
        };
        if need > u64::from(clusters) {
            return Err(ChainError::SizeBeyondChain {
                path: path.into(),
                size,
                first,
                clusters,
                cluster_size: cs,
            });
        }
        if need < u64::from(clusters) {
            return Err(ChainError::ChainBeyondSize {
                path: path.into(),
                size,
                first,
                clusters,
                need,
            });
        }
        if let Some(files) = &mut self.files {
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for c in list {
                let at = self.bpb.cluster_offset(c);
                match runs.last_mut() {
                    Some((start, len)) if *start + *len == at => *len += cs,
                    _ => runs.push((at, cs)),
                }
            }
            files.push(FileMap {
                path: path.to_owned(),
                size,
                runs,
            });
        }
        Ok(())
    }
}

/// What the scan of one directory carries from cluster to cluster.
#[derive(Default)]
struct DirScan {
    lfn: LongName,
    /// Every name and short name seen, upper-cased (fatfs matches names
    /// ignoring case).
    names: HashSet<String>,
}

/// Whether a directory's entries go on after the bytes just scanned, or
/// end at the end mark at this offset in them.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    More,
    End(usize),
}

/// `"."` or `".."` for the two special entries of a subdirectory.
fn dot_name(raw: &[u8]) -> Option<&'static str> {
    match &raw[..11] {
        b".          " => Some("."),
        b"..         " => Some(".."),
        _ => None,
    }
}

/// The 8.3 name as `NAME.EXT` (used when no long name precedes it), in
/// lower case where the entry's case flags say so (as Linux and fatfs
/// show it).
fn short_name(raw: &[u8]) -> String {
    let mut base: Vec<u8> = raw[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5; // 0x05 stands for a leading 0xE5 byte
    }
    let mut ext = raw[8..11].to_vec();
    if raw[12] & 0x08 != 0 {
        base.make_ascii_lowercase();
    }
    if raw[12] & 0x10 != 0 {
        ext.make_ascii_lowercase();
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches(' ').to_string();
    let (b, e) = (text(&base), text(&ext));
    if e.is_empty() { b } else { format!("{b}.{e}") }
}

/// Long-name entries collected before the short entry they belong to.
#[derive(Default)]
struct LongName {
    parts: Vec<(u8, u8, [u16; 13])>,
}

impl LongName {
    fn clear(&mut self) {
        self.parts.clear();
    }

    fn push(&mut self, raw: &[u8]) {
        // 20 parts make the longest name (255 UTF-16 units); more is junk.
        if self.parts.len() >= 20 {
            self.parts.clear();
        }
        let mut units = [0u16; 13];
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (u, off) in units.iter_mut().zip(offsets) {
            *u = le_u16(raw, off);
        }
        self.parts.push((raw[0] & 0x1F, raw[13], units));
    }

    /// The long name for the short entry `raw`, when the parts before it
    /// are complete and carry its checksum; clears the parts either way.
    fn take(&mut self, raw: &[u8]) -> Option<String> {
        let parts = std::mem::take(&mut self.parts);
        let sum = raw[..11]
            .iter()
            .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
        if parts.is_empty() || parts.iter().any(|p| p.1 != sum) {
            return None;
        }
        // Stored last part first: sequence numbers n, n-1, …, 1.
        let mut units = Vec::new();
        for (i, (seq, _, chunk)) in parts.iter().rev().enumerate() {
            if usize::from(*seq) != i + 1 {
                return None;
            }
            units.extend_from_slice(chunk);
        }
        let end = units
            .iter()
            .position(|&u| u == 0 || u == 0xFFFF)
            .unwrap_or(units.len());
        Some(String::from_utf16_lossy(&units[..end]))
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
