//! `PathIoError`: an I/O error with what we were doing and to which path,
//! shared by every module that touches files (state directory, render trees,
//! the cache, downloads).

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("{action} {}", path.display())]
pub struct PathIoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `map_err(at("reading", path))`.
pub fn at<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PathIoError + 'a {
    move |source| PathIoError {
        action,
        path: path.to_owned(),
        source,
    }
}
