//! Where the TFTP server's files come from: the `Files` trait `serve` plugs
//! the FAT boot partition of a node image into, and `DirFiles`, a local
//! directory (tests, and serving an extracted tree), which refuses any
//! path that could leave its root.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use crate::io::ReadAt;

/// An opened file: its length (for `tsize` and the last block) and positional
/// reads; the server reads `[offset, offset + blksize)` windows inside `len`.
pub struct Opened {
    pub len: u64,
    pub data: Box<dyn ReadAt + Send + Sync>,
}

/// Why a read request is refused; the server answers with a TFTP ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// ERROR 1 "file not found".
    NotFound,
    /// ERROR 2 "access violation": the reason is logged, not sent.
    Denied(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotFound => f.write_str("file not found"),
            Refusal::Denied(why) => write!(f, "access denied: {why}"),
        }
    }
}

/// A read-only source of files, asked once per read request. `client` lets
/// an implementation serve each Pi only its own node's files.
pub trait Files: Send + Sync {
    fn open(&self, client: SocketAddr, path: &str) -> Result<Opened, Refusal>;
}

/// Checks a requested path is relative and stays below its root: no NUL,
/// no absolute path, no `..`, no backslash (a Windows-style separator some
/// clients send, which would otherwise name a file with a backslash in it).
/// Returns the relative path to join to the root.
pub fn confined(path: &str) -> Result<PathBuf, Refusal> {
    if path.contains('\0') {
        return Err(Refusal::Denied("the path holds a NUL byte".into()));
    }
    if path.contains('\\') {
        return Err(Refusal::Denied("the path holds a backslash".into()));
    }
    if path.is_empty() {
        return Err(Refusal::Denied("the path is empty".into()));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(Refusal::Denied("the path climbs with `..`".into()));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Refusal::Denied("the path is absolute".into()));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Refusal::Denied("the path names no file".into()));
    }
    Ok(out)
}

/// Files below a local directory. Symbolic links are followed only when the
/// file they reach is still below the root.
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    /// `root` is resolved now, so a later rename of a parent cannot move it.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
        })
    }
}

impl Files for DirFiles {
    // Every client sees the same tree; the server logs each refusal with
    // the client and the path.
    fn open(&self, _client: SocketAddr, path: &str) -> Result<Opened, Refusal> {
        let rel = confined(path)?;
        let full = match self.root.join(rel).canonicalize() {
            Ok(p) => p,
            Err(_) => return Err(Refusal::NotFound),
        };
        if !full.starts_with(&self.root) {
            return Err(Refusal::Denied(
                "a symbolic link leads outside the served directory".into(),
            ));
        }
        let file = std::fs::File::open(&full).map_err(|_| Refusal::NotFound)?;
        let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
        if !meta.is_file() {
            return Err(Refusal::NotFound);
        }
        Ok(Opened {
            len: meta.len(),
            data: Box::new(file),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_absolute_nul_and_backslash_are_refused() {
        for p in [
            "../etc/passwd",
            "a/../../b",
            "a/..",
            "/etc/passwd",
            "a\0b",
            "..\\x",
            "",
            ".",
        ] {
            assert!(
                matches!(confined(p), Err(Refusal::Denied(_))),
                "{p:?} allowed"
            );
        }
        assert_eq!(confined("./a/b.txt"), Ok(PathBuf::from("a/b.txt")));
    }
}
