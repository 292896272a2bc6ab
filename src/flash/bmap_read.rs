//! Reading a `.bmap`: ours (`build::bmap` writes format 2.0) and
//! bmaptool's, formats 1.0–1.2 (no checksums), 1.4 and 2.x (SHA-256), and
//! choosing the map for an image that has none beside it.
//!
//! A small hand parser rather than the `bmap-parser` crate: the crate pulls
//! in quick-xml, flate2 and async-trait, reads without bounds and reports
//! serde errors with neither line nor range, while the format is seven
//! leaf elements and a list of `<Range>`s. Every error here names the file
//! and the line (and the range) it is about.
//!
//! What is checked, as bmaptool checks it and then some: the format major
//! version (2 at most), `BlocksCount` against `ImageSize` / `BlockSize`,
//! `MappedBlocksCount` against the ranges, the ranges sorted, not
//! overlapping and inside the image, every checksum 64 hex digits, and
//! `BmapFileChecksum` by bmaptool's rule: the SHA-256 of the file with the
//! first occurrence of the checksum's text replaced by as many `0`s.
//! Checksums other than SHA-256 (format 1.3's SHA-1, a `ChecksumType` of
//! md5 or sha1) are refused: we would have to trust ranges we cannot check.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::build::mapped::{self, BlockRuns};
use crate::image::Image;

/// The largest `.bmap` read (a map of 2 M ranges is about 200 MiB; real ones
/// are kilobytes).
pub const MAX_FILE: u64 = 64 << 20;
/// The most ranges a map may have.
pub const MAX_RANGES: usize = 1 << 20;
/// Block sizes accepted: powers of two in this span.
const BLOCK_SIZES: std::ops::RangeInclusive<u64> = 512..=(1 << 20);
/// Deepest element nesting the format has: bmap > BlockMap > Range.
const MAX_DEPTH: usize = 3;

/// One mapped range: blocks `first..=last` and, when the map has it, the
/// SHA-256 of their bytes (the last block cut at the image's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRange {
    pub first: u64,
    pub last: u64,
    pub sha256: Option<[u8; 32]>,
}

/// A parsed, checked block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub block_size: u64,
    /// Sorted, not overlapping, inside the image.
    pub ranges: Vec<MapRange>,
}

impl Bmap {
    /// A map of every block of an image of `len` bytes, without checksums.
    pub fn whole(len: u64) -> Bmap {
        let block_size = crate::build::bmap::BLOCK;
        let ranges = if len == 0 {
            Vec::new()
        } else {
            vec![MapRange {
                first: 0,
                last: (len - 1) / block_size,
                sha256: None,
            }]
        };
        Bmap {
            image_size: len,
            block_size,
            ranges,
        }
    }

    /// A map of the 4 KiB block runs `runs` of an image of `len` bytes,
    /// without checksums. Runs past the end are cut off.
    pub fn from_runs(len: u64, runs: &BlockRuns) -> Bmap {
        let block_size = crate::build::bmap::BLOCK;
        let blocks = len.div_ceil(block_size);
        let ranges = runs
            .runs()
            .iter()
            .filter(|&&(first, _)| first < blocks)
            .map(|&(first, last)| MapRange {
                first,
                last: last.min(blocks - 1),
                sha256: None,
            })
            .collect();
        Bmap {
            image_size: len,
            block_size,
            ranges,
        }
    }

    /// The bytes `[start, end)` of the image that `r` covers.
    pub fn span(&self, r: &MapRange) -> (u64, u64) {
        let start = r.first.saturating_mul(self.block_size).min(self.image_size);
        let end = r
            .last
            .saturating_add(1)
            .saturating_mul(self.block_size)
            .min(self.image_size);
        (start, end)
    }

    /// Bytes of the image the ranges cover.
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (a, b) = self.span(r);
                b - a
            })
            .sum()
    }

    /// Whether every range carries a checksum.
    pub fn has_checksums(&self) -> bool {
        !self.ranges.is_empty() && self.ranges.iter().all(|r| r.sha256.is_some())
    }
}

/// Why a `.bmap` was refused: the file, and the line when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmapError {
    pub file: String,
    pub line: Option<usize>,
    pub why: String,
}

impl fmt::Display for BmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}: line {line}: {}", self.file, self.why),
            None => write!(f, "{}: {}", self.file, self.why),
        }
    }
}

impl std::error::Error for BmapError {}

/// Reads and checks the `.bmap` at `path` (at most `MAX_FILE` bytes).
pub fn read(path: &Path) -> Result<Bmap, BmapError> {
    let file = path.display().to_string();
    let whole = |why: String| BmapError {
        file: file.clone(),
        line: None,
        why,
    };
    let f = std::fs::File::open(path).map_err(|e| whole(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        // as: a usize always fits in u64.
        return Err(whole(format!(
            "larger than {} MiB, more than any block map needs",
            MAX_FILE >> 20
        )));
    }
    parse(&bytes, &file)
}

/// Where the map of an image came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOrigin {
    /// A `.bmap` file beside the image (or named).
    File(PathBuf),
    /// No `.bmap`: the blocks the image's structures and filesystems use,
    /// found by our readers (`build::mapped`, the rule `build` maps by).
    Filesystems,
    /// No `.bmap` and a layout our readers do not know: every block.
    Whole { why: String },
}

impl fmt::Display for MapOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapOrigin::File(p) => write!(f, "{}", p.display()),
            MapOrigin::Filesystems => {
                f.write_str("no .bmap: the blocks its partition table and filesystems use")
            }
            MapOrigin::Whole { why } => write!(f, "no .bmap, every block ({why})"),
        }
    }
}

/// The `.bmap` bmaptool and `build` would use for `image`: `IMAGE.bmap`,
/// else `IMAGE` with its extension replaced by `.bmap`.
pub fn beside(image: &Path) -> Option<PathBuf> {
    let appended = PathBuf::from(format!("{}.bmap", image.display()));
    let replaced = image.with_extension("bmap");
    [appended, replaced].into_iter().find(|p| p.is_file())
}

/// The map to write `image` (of `len` bytes) by: `bmap` when given, else
/// the one beside it, else what our readers find it uses, else all of it.
///
/// Why not the image file's holes when there is no `.bmap`: a zero block a
/// filesystem uses (a free FAT entry, an inode table, the journal) is a
/// hole in a sparse image, and a card that held something before keeps its
/// old bytes there (docs/BMAP.md). Our readers know which blocks are used;
/// for a layout they do not know, only writing every block is safe.
pub fn for_image(image: &Path, len: u64, bmap: Option<&Path>) -> anyhow::Result<(Bmap, MapOrigin)> {
    let named = bmap.map(Path::to_path_buf).or_else(|| beside(image));
    if let Some(path) = named {
        let map = read(&path)?;
        if map.image_size != len {
            anyhow::bail!(
                "{}: maps an image of {} bytes, but {} is {len} bytes",
                path.display(),
                map.image_size,
                image.display()
            );
        }
        return Ok((map, MapOrigin::File(path)));
    }
    match Image::open(image) {
        Ok(img) => {
            let usage = mapped::used_blocks(&img);
            Ok((Bmap::from_runs(len, &usage.runs), MapOrigin::Filesystems))
        }
        Err(e) => Ok((
            Bmap::whole(len),
            MapOrigin::Whole {
                why: format!("{e:#}"),
            },
        )),
    }
}

/// One element being read: its name, where it opened, its text.
struct Open<'a> {
    name: &'a str,
    at: usize,
    text: String,
    attrs: Vec<(&'a str, &'a str)>,
}

/// The leaf fields of `<bmap>`, each with the line it was on.
#[derive(Default)]
struct Fields {
    version: Option<(String, usize)>,
    image_size: Option<(String, usize)>,
    block_size: Option<(String, usize)>,
    blocks_count: Option<(String, usize)>,
    mapped_count: Option<(String, usize)>,
    checksum_type: Option<(String, usize)>,
    file_checksum: Option<(String, usize)>,
    file_sha1: Option<(String, usize)>,
    /// (span text, chksum attribute, sha1 attribute, line)
    ranges: Vec<(String, Option<String>, Option<String>, usize)>,
}

/// Parses and checks bmap text; `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Bmap, BmapError> {
    let text = std::str::from_utf8(bytes).map_err(|e| BmapError {
        file: file.to_string(),
        line: Some(line_at(bytes, e.valid_up_to())),
        why: "not UTF-8 text".into(),
    })?;
    let fields = scan(text, file)?;
    check(bytes, file, fields)
}

/// 1-based line of byte `pos`.
fn line_at(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads the XML structure into `Fields`, refusing anything the format
/// does not have (a DOCTYPE, entities, deeper nesting, stray text).
fn scan<'a>(text: &'a str, file: &str) -> Result<Fields, BmapError> {
    let err = |pos: usize, why: String| BmapError {
        file: file.to_string(),
        line: Some(line_at(text.as_bytes(), pos)),
        why,
    };
    let mut fields = Fields::default();
    let mut stack: Vec<Open<'a>> = Vec::new();
    let mut seen_root = false;
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() {
                let what = if seen_root {
                    "after the end of"
                } else {
                    "outside"
                };
                return Err(err(pos, format!("text {what} <bmap>")));
            }
            break;
        };
        let between = &rest[..lt];
        if between.contains('&') {
            return Err(err(
                pos,
                "XML entities (&...;) are not part of a bmap".into(),
            ));
        }
        match stack.last_mut() {
            Some(top) => top.text.push_str(between),
            None if !between.trim().is_empty() => {
                return Err(err(pos, "text outside <bmap>".into()));
            }
            None => {}
        }
        let at = pos + lt;
        let tag = &text[at..];
        if tag.starts_with("<?") {
            let end = tag
                .find("?>")
                .ok_or_else(|| err(at, "unterminated <?...?>".into()))?;
            pos = at + end + 2;
            continue;
        }
        if tag.starts_with("<!--") {
            let end = tag
                .find("-->")
                .ok_or_else(|| err(at, "unterminated comment".into()))?;
            pos = at + end + 3;
            continue;
        }
        if tag.starts_with("<!") {
            return Err(err(
                at,
                "a DOCTYPE or CDATA section is not part of a bmap".into(),
            ));
        }
        let end = tag
            .find('>')
            .ok_or_else(|| err(at, "unterminated tag".into()))?;
        let inner = &tag[1..end];
        pos = at + end + 1;
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim();
            let open = stack
                .pop()
                .ok_or_else(|| err(at, format!("</{name}> closes nothing")))?;
            if open.name != name {
                return Err(err(
                    at,
                    format!(
                        "</{name}> closes <{}> opened on line {}",
                        open.name,
                        line_at(text.as_bytes(), open.at)
                    ),
                ));
            }
            close(open, &stack, &mut fields, text, file)?;
            continue;
        }
        let (inner, self_closing) = match inner.strip_suffix('/') {
            Some(i) => (i, true),
            None => (inner, false),
        };
        let name_end = inner
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(inner.len());
        let name = &inner[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(at, format!("bad element name {name:?}")));
        }
        let attrs = attributes(&inner[name_end..]).map_err(|why| err(at, why))?;
        if stack.is_empty() {
            if seen_root || name != "bmap" {
                return Err(err(
                    at,
                    format!("<{name}> where the one <bmap> element belongs"),
                ));
            }
            seen_root = true;
        }
        if stack.len() >= MAX_DEPTH {
            return Err(err(at, format!("<{name}> nested deeper than a bmap goes")));
        }
        let open = Open {
            name,
            at,
            text: String::new(),
            attrs,
        };
        if self_closing {
            close(open, &stack, &mut fields, text, file)?;
        } else {
            stack.push(open);
        }
    }
    if let Some(open) = stack.last() {
        return Err(err(open.at, format!("<{}> is never closed", open.name)));
    }
    if !seen_root {
        return Err(BmapError {
            file: file.to_string(),
            line: None,
            why: "no <bmap> element: not a block map".into(),
        });
    }
    Ok(fields)
}

/// `name="value"` pairs (either quote).
fn attributes(mut s: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute {s:?} has no value"))?;
        let name = s[..eq].trim();
        let v = s[eq + 1..].trim_start();
        let quote = v
            .chars()
            .next()
            .filter(|&q| q == '"' || q == '\'')
            .ok_or_else(|| format!("attribute {name} is not quoted"))?;
        let close = v[1..]
            .find(quote)
            .ok_or_else(|| format!("attribute {name}: unterminated value"))?;
        let value = &v[1..1 + close];
        if value.contains('&') || value.contains('<') {
            return Err(format!("attribute {name}: entities are not part of a bmap"));
        }
        out.push((name, value));
        s = &v[close + 2..];
    }
}

/// Files a closed element into `fields`; `stack` holds its ancestors.
fn close(
    open: Open<'_>,
    stack: &[Open<'_>],
    fields: &mut Fields,
    text: &str,
    file: &str,
) -> Result<(), BmapError> {
    let line = line_at(text.as_bytes(), open.at);
    let err = |why: String| BmapError {
        file: file.to_string(),
        line: Some(line),
        why,
    };
    let parent = stack.last().map(|o| o.name);
    let value = open.text.trim().to_string();
    let attr = |name: &str| {
        open.attrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    let slot = match (parent, open.name) {
        (None, "bmap") => {
            fields.version = attr("version").map(|v| (v, line));
            return Ok(());
        }
        (Some("BlockMap"), "Range") => {
            if fields.ranges.len() >= MAX_RANGES {
                return Err(err(format!("more than {MAX_RANGES} ranges")));
            }
            fields
                .ranges
                .push((value, attr("chksum"), attr("sha1"), line));
            return Ok(());
        }
        (Some("bmap"), "BlockMap") => {
            if !value.is_empty() {
                return Err(err("text inside <BlockMap> outside its ranges".into()));
            }
            return Ok(());
        }
        (Some("bmap"), "ImageSize") => &mut fields.image_size,
        (Some("bmap"), "BlockSize") => &mut fields.block_size,
        (Some("bmap"), "BlocksCount") => &mut fields.blocks_count,
        (Some("bmap"), "MappedBlocksCount") => &mut fields.mapped_count,
        (Some("bmap"), "ChecksumType") => &mut fields.checksum_type,
        (Some("bmap"), "BmapFileChecksum") => &mut fields.file_checksum,
        (Some("bmap"), "BmapFileSHA1") => &mut fields.file_sha1,
        (Some(p), name) => return Err(err(format!("<{name}> has no place inside <{p}>"))),
        (None, name) => return Err(err(format!("<{name}> outside <bmap>"))),
    };
    if let Some((_, first)) = slot {
        return Err(err(format!(
            "<{}> given twice (first on line {first})",
            open.name
        )));
    }
    *slot = Some((value, line));
    Ok(())
}

/// Checks the fields against each other and the file checksum.
fn check(bytes: &[u8], file: &str, f: Fields) -> Result<Bmap, BmapError> {
    let at = |line: usize, why: String| BmapError {
        file: file.to_string(),
        line: Some(line),
        why,
    };
    let missing = |name: &str| BmapError {
        file: file.to_string(),
        line: None,
        why: format!("no <{name}>"),
    };
    let number = |field: &Option<(String, usize)>, name: &str| -> Result<(u64, usize), BmapError> {
        let (text, line) = field.as_ref().ok_or_else(|| missing(name))?;
        let n = text
            .parse::<u64>()
            .map_err(|_| at(*line, format!("<{name}> {text:?} is not a whole number")))?;
        Ok((n, *line))
    };
    let (version, vline) = f
        .version
        .clone()
        .ok_or_else(|| at(1, "<bmap> has no version attribute".into()))?;
    let (major, minor) = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| {
            at(
                vline,
                format!("bmap version {version:?} is not MAJOR.MINOR"),
            )
        })?;
    // Format 1.4 is 2.0 released under the wrong number (bmaptool's note).
    let sha256_era = major == 2 || (major == 1 && minor >= 4);
    if major > 2 || major == 0 {
        return Err(at(
            vline,
            format!("bmap format {version} is not supported (formats 1.x and 2.x are)"),
        ));
    }
    if !sha256_era && minor == 3 {
        return Err(at(
            vline,
            format!(
                "bmap format {version} has SHA-1 checksums, which are not checked here; \
                 recreate it with a current `bmaptool create` (SHA-256)"
            ),
        ));
    }
    let (image_size, _) = number(&f.image_size, "ImageSize")?;
    let (block_size, bline) = number(&f.block_size, "BlockSize")?;
    if !BLOCK_SIZES.contains(&block_size) || !block_size.is_power_of_two() {
        return Err(at(
            bline,
            format!("block size {block_size} is not a power of two from 512 to 1 MiB"),
        ));
    }
    let (blocks, cline) = number(&f.blocks_count, "BlocksCount")?;
    if blocks != image_size.div_ceil(block_size) {
        return Err(at(
            cline,
            format!(
                "{blocks} blocks do not make an image of {image_size} bytes in blocks of \
                 {block_size}"
            ),
        ));
    }
    let (mapped, mline) = number(&f.mapped_count, "MappedBlocksCount")?;
    if sha256_era {
        let (kind, kline) = f
            .checksum_type
            .as_ref()
            .ok_or_else(|| missing("ChecksumType"))?;
        if kind != "sha256" {
            return Err(at(
                *kline,
                format!(
                    "checksum type {kind:?} is not supported (only sha256); recreate the \
                     bmap with `bmaptool create`"
                ),
            ));
        }
        let (sum, sline) = f
            .file_checksum
            .as_ref()
            .ok_or_else(|| missing("BmapFileChecksum"))?;
        let want = unhex(sum)
            .ok_or_else(|| at(*sline, format!("checksum {sum:?} is not 64 hex digits")))?;
        let got = file_checksum(bytes, sum);
        if got != want {
            return Err(at(
                *sline,
                format!(
                    "the file's checksum is {}, but it says {sum}: the bmap was changed or \
                     damaged",
                    crate::digest::hex(&got)
                ),
            ));
        }
    } else if let Some((_, line)) = f.file_sha1.as_ref().or(f.checksum_type.as_ref()) {
        return Err(at(
            *line,
            format!("bmap format {version} has no checksum fields"),
        ));
    }
    let mut ranges: Vec<MapRange> = Vec::with_capacity(f.ranges.len());
    let mut total: u64 = 0;
    for (span, chksum, sha1, line) in &f.ranges {
        let bad = |why: String| at(*line, format!("range {span:?}: {why}"));
        if sha1.is_some() {
            return Err(bad(
                "a SHA-1 checksum (format 1.3), which is not checked here".into(),
            ));
        }
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad("not FIRST-LAST block numbers".into()))
        };
        let (first, last) = match span.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let a = num(span)?;
                (a, a)
            }
        };
        if last < first {
            return Err(bad("ends before it starts".into()));
        }
        if last >= blocks {
            return Err(bad(format!(
                "past the image's last block ({})",
                blocks.saturating_sub(1)
            )));
        }
        if let Some(prev) = ranges.last()
            && first <= prev.last
        {
            return Err(bad(format!(
                "overlaps or comes before the range ending at block {}",
                prev.last
            )));
        }
        let sha256 = match chksum {
            Some(c) if sha256_era => {
                Some(unhex(c).ok_or_else(|| bad(format!("checksum {c:?} is not 64 hex digits")))?)
            }
            Some(_) => return Err(bad("a checksum in a format without checksums".into())),
            None => None,
        };
        total += last - first + 1;
        ranges.push(MapRange {
            first,
            last,
            sha256,
        });
    }
    if total != mapped {
        return Err(at(
            mline,
            format!("says {mapped} mapped blocks, but its ranges hold {total}"),
        ));
    }
    Ok(Bmap {
        image_size,
        block_size,
        ranges,
    })
}

/// bmaptool's rule: SHA-256 of the file with the first occurrence of the
/// checksum text replaced by as many `0`s.
fn file_checksum(bytes: &[u8], sum: &str) -> [u8; 32] {
    let mut copy = bytes.to_vec();
    if let Some(at) = copy.windows(sum.len()).position(|w| w == sum.as_bytes()) {
        copy[at..at + sum.len()].fill(b'0');
    }
    Sha256::digest(&copy).into()
}

/// 64 hex digits (either case) as 32 bytes.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        // to_digit(16) is below 16, so the u8 narrowing is exact.
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
