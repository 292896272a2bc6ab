//! Refusing a state directory that git tracks: its host keys and
//! passphrase would be in every clone of the repository, so every node
//! built from it would have a publicly known identity. Asked of git itself
//! (`git ls-files`), so `.gitignore` rules, `git add -f` and the index all
//! count as git sees them; without git, or outside a work tree, there is
//! nothing to track the files and the check passes silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

/// Files named in the message before "and N more".
const SHOWN: usize = 5;

#[derive(Debug, Error)]
#[error(
    "the state directory {} holds files tracked by git ({}): everyone with \
     the repository has these secrets. Untrack it with `git rm -r --cached {}` \
     and commit, then make new keys: delete its nodes/*/ssh_host_ed25519_key* \
     (and microcloud-passphrase, password-salt.*) and build again",
    dir.display(),
    shown(files),
    dir.display()
)]
pub struct TrackedState {
    pub dir: PathBuf,
    /// Relative to `dir`.
    pub files: Vec<PathBuf>,
}

fn shown(files: &[PathBuf]) -> String {
    let mut names: Vec<String> = files
        .iter()
        .take(SHOWN)
        .map(|f| f.display().to_string())
        .collect();
    if files.len() > SHOWN {
        names.push(format!("and {} more", files.len() - SHOWN));
    }
    names.join(", ")
}

/// Errs when git tracks any file in (or once in) `dir`.
pub fn refuse_tracked(dir: &Path) -> Result<(), TrackedState> {
    let files = tracked_files(dir);
    if files.is_empty() {
        Ok(())
    } else {
        Err(TrackedState {
            dir: dir.to_owned(),
            files,
        })
    }
}

/// The files under `dir` that git's index holds (deleted ones included),
/// relative to `dir`; empty when git is missing or `dir` is in no work tree.
pub fn tracked_files(dir: &Path) -> Vec<PathBuf> {
    // git needs an existing directory to start from: the nearest ancestor
    // of `dir` that exists, with the rest as the pathspec.
    let mut base = dir;
    while !base.is_dir() {
        match base.parent() {
            Some(p) if !p.as_os_str().is_empty() => base = p,
            _ => {
                base = Path::new(".");
                break;
            }
        }
    }
    let rest = dir.strip_prefix(base).unwrap_or(Path::new(""));
    let spec = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest
    };
    let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(base)
        .args(["ls-files", "-z", "--"])
        .arg(spec)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    out.stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let path = PathBuf::from(String::from_utf8_lossy(name).into_owned());
            path.strip_prefix(rest).map_or(path.clone(), Path::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> bool {
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn tracked_files_are_listed_relative_to_the_state_dir() {
        let repo = tempfile::tempdir().unwrap();
        if !git(repo.path(), &["init", "-q"]) {
            // No git on this machine: the check is skipped by design.
            assert!(tracked_files(repo.path()).is_empty());
            return;
        }
        let state = repo.path().join("p/.homelab-state");
        std::fs::create_dir_all(state.join("nodes/a")).unwrap();
        std::fs::write(state.join("nodes/a/key"), "k").unwrap();
        assert!(refuse_tracked(&state).is_ok(), "untracked");
        assert!(git(repo.path(), &["add", "-f", "p/.homelab-state"]));
        assert_eq!(tracked_files(&state), [PathBuf::from("nodes/a/key")]);
        // Deleted from the work tree but still in the index: still tracked.
        std::fs::remove_dir_all(&state).unwrap();
        let e = refuse_tracked(&state).unwrap_err().to_string();
        assert!(e.contains("(nodes/a/key)"), "{e}");
        assert!(e.contains("git rm -r --cached"), "{e}");
    }

    #[test]
    fn outside_a_work_tree_nothing_is_tracked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(tracked_files(&dir.path().join("state")).is_empty());
    }

    #[test]
    fn long_lists_are_cut() {
        let files: Vec<PathBuf> = (0..8).map(|i| PathBuf::from(format!("f{i}"))).collect();
        assert_eq!(shown(&files), "f0, f1, f2, f3, f4, and 3 more");
    }
}
