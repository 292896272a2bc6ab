//! Reading a file that the profile or the state directory names
//! (`files[].source`, `ssh_key_files`, a secret's `file:`, host keys,
//! salts): regular files only, symlinks followed, at most a documented
//! number of bytes per kind (docs/PROFILE.md). `/dev/zero` would otherwise
//! be read until memory runs out and a FIFO would block forever, so the
//! file is opened non-blocking, its type checked on the open descriptor and
//! the read capped one byte past the limit.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use thiserror::Error;

/// What a named file is for; each kind has its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `files[].source`: copied into the image as it is.
    ExtraFile,
    /// `ssh_key_files`: authorized_keys-style text.
    SshKeys,
    /// A secret's `file:` (a password, a Wi-Fi key, a passphrase).
    Secret,
    /// A file of the state directory (host key, salt, passphrase).
    State,
}

impl Kind {
    /// The largest file of this kind that is read.
    pub const fn limit(self) -> u64 {
        match self {
            Self::ExtraFile => 8 << 20,
            Self::SshKeys => 256 << 10,
            Self::Secret | Self::State => 64 << 10,
        }
    }

    /// How the limit is named in messages (and in docs/PROFILE.md).
    fn what(self) -> &'static str {
        match self {
            Self::ExtraFile => "files[].source files",
            Self::SshKeys => "ssh_key_files",
            Self::Secret => "secret files",
            Self::State => "state directory files",
        }
    }
}

/// A byte count as the limits are written: `8 MiB`, `256 KiB`, `12 bytes`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        }
    }
}

#[derive(Debug, Error)]
pub enum NamedFileError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(
        "{} is {size} bytes; {} are limited to {}",
        path.display(), kind.what(), Size(kind.limit())
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        kind: Kind,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
}

/// What a file type is called in messages.
fn describe(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Opens `path` for reading if it is a regular file; never blocks (a FIFO
/// is refused, not waited on).
pub fn open_regular(path: &Path) -> Result<std::fs::File, NamedFileError> {
    let io = |source| NamedFileError::Io {
        path: path.to_owned(),
        source,
    };
    let not_regular = |what| NamedFileError::NotRegular {
        path: path.to_owned(),
        what,
    };
    // stat first: opening a socket fails with a confusing errno, and the
    // type named here is the one the user sees.
    let meta = std::fs::metadata(path).map_err(io)?;
    if let Some(what) = describe(meta.file_type()) {
        return Err(not_regular(what));
    }
    // Non-blocking, so that a FIFO swapped in after the stat cannot hang
    // the open; the type is checked again on what was opened.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io)?;
    if let Some(what) = describe(meta.file_type()) {
        return Err(not_regular(what));
    }
    Ok(file)
}

/// Reads the whole of `path`, a regular file of at most `kind.limit()`.
pub fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, NamedFileError> {
    let io = |source| NamedFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = open_regular(path)?;
    let meta = file.metadata().map_err(io)?;
    let too_large = |size| NamedFileError::TooLarge {
        path: path.to_owned(),
        size,
        kind,
    };
    if meta.len() > kind.limit() {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew since the stat.
    file.take(kind.limit() + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > kind.limit() {
        return Err(too_large(read));
    }
    Ok(bytes)
}

/// `read`, as UTF-8 text.
pub fn read_text(path: &Path, kind: Kind) -> Result<String, NamedFileError> {
    String::from_utf8(read(path, kind)?).map_err(|_| NamedFileError::NotUtf8 {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for (path, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO (named pipe)"),
            (dir.path(), "a directory"),
        ] {
            match read(path, Kind::Secret) {
                Err(NamedFileError::NotRegular { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn the_limit_is_named_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("at-limit");
        let f = std::fs::File::create(&at).unwrap();
        f.set_len(Kind::Secret.limit()).unwrap();
        assert_eq!(read(&at, Kind::Secret).unwrap().len(), 64 << 10);
        f.set_len(Kind::Secret.limit() + 1).unwrap();
        let e = read(&at, Kind::Secret).unwrap_err().to_string();
        assert!(e.ends_with("secret files are limited to 64 KiB"), "{e}");
        assert!(e.contains("is 65537 bytes"), "{e}");
    }

    #[test]
    fn symlinks_are_followed_and_text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"key\xff").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read(&link, Kind::SshKeys).unwrap(), b"key\xff");
        assert!(matches!(
            read_text(&link, Kind::SshKeys),
            Err(NamedFileError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn sizes_print_in_the_unit_they_are_documented_in() {
        assert_eq!(Size(8 << 20).to_string(), "8 MiB");
        assert_eq!(Size(256 << 10).to_string(), "256 KiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
    }
}
