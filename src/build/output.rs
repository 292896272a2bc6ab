//! Output files that appear whole or not at all: everything is written
//! under a hidden `.partial` name in the output directory and renamed into
//! place at the end; until then a guard deletes the partial files on any
//! error, interrupt or panic, so a previous good image stays untouched.
//!
//! Every file is created 0600: an image carries the node's SSH host key
//! and its MicroCloud passphrase, and its `.bmap` and `.sha256` hash those
//! blocks, so none of them is for other users of the machine.
//!
//! Partial names carry the process id, so two processes never share one
//! (a build also locks its output directory: see `io::lock`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Default)]
pub struct Partial {
    /// (partial path, final path)
    files: Vec<(PathBuf, PathBuf)>,
    /// Final paths of files this output no longer has (removed on commit).
    stale: Vec<PathBuf>,
    committed: bool,
}

/// `dir/.name.PID.partial` for the final `dir/name`.
pub fn partial_name(fin: &Path) -> PathBuf {
    let name = fin
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    fin.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Removes partial files of `fin` that a killed build left behind
/// (`.name.PID.partial`, and `.name.partial` from older versions). Only
/// for a caller holding the output directory's lock: then no other
/// process is writing them.
pub fn remove_stale_partials(fin: &Path) {
    let (Some(dir), Some(name)) = (fin.parent(), fin.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let stale = n.strip_prefix(&prefix).is_some_and(|rest| {
            rest == "partial"
                || rest
                    .strip_suffix(".partial")
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Partial {
    pub fn new() -> Partial {
        Partial::default()
    }

    /// Registers `fin` and returns the partial path to write instead.
    pub fn add(&mut self, fin: &Path) -> PathBuf {
        let p = partial_name(fin);
        self.files.push((p.clone(), fin.to_path_buf()));
        p
    }

    /// Registers `fin` and creates its partial file, new, 0600, for
    /// reading and writing (a stale partial of a killed run is replaced).
    pub fn create(&mut self, fin: &Path) -> Result<File> {
        let p = self.add(fin);
        let _ = std::fs::remove_file(&p);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))
    }

    /// Writes `bytes` to the partial file of `fin`.
    pub fn write(&mut self, fin: &Path, bytes: &[u8]) -> Result<()> {
        let p = partial_name(fin);
        self.create(fin)?
            .write_all(bytes)
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    /// Registers `fin` as a file that must not survive the commit (an
    /// older build's output that no longer describes the new files).
    pub fn remove_on_commit(&mut self, fin: &Path) {
        self.stale.push(fin.to_path_buf());
    }

    /// Flushes and renames every file into place, in the order added,
    /// after removing the stale ones: a stale file never sits beside the
    /// new ones (at worst, if a rename then fails, it is gone early).
    pub fn commit(mut self) -> Result<()> {
        for (p, _) in &self.files {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            f.sync_all()
                .with_context(|| format!("flushing {}", p.display()))?;
        }
        for fin in &self.stale {
            match std::fs::remove_file(fin) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing the stale {}", fin.display()));
                }
            }
        }
        for (p, fin) in &self.files {
            std::fs::rename(p, fin)
                .with_context(|| format!("renaming {} to {}", p.display(), fin.display()))?;
        }
        // Make the renames durable too.
        if let Some(Ok(d)) = self
            .files
            .first()
            .and_then(|(_, f)| f.parent())
            .map(std::fs::File::open)
        {
            let _ = d.sync_all();
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            for (p, _) in &self.files {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
