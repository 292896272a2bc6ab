//! Resumable downloads into a `.part` file: hashes while it writes, resumes
//! with `Range: bytes=N-` after an interruption (a 206 whose Content-Range
//! starts at N, else it starts over), retries transient failures with
//! backoff, and reports progress. Checking the hash against the publisher's
//! is the caller's job: this only says what arrived.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use thiserror::Error;

use super::digest::{Hasher, Sha256};
use super::http::{Http, HttpError, Url, io_chain};
use super::progress::{Progress, Task};

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(
        "GET {url}: gave up after {attempts} failed attempt{}; the last: {detail}",
        if *attempts == 1 { "" } else { "s" }
    )]
    GaveUp {
        url: Url,
        attempts: u32,
        detail: String,
    },
    #[error("GET {url}: {detail}")]
    Protocol { url: Url, detail: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: Sha256,
    pub size: u64,
    /// Bytes already in the `.part` file from an earlier run.
    pub resumed_from: u64,
    /// Times the server ignored a range request and sent everything again.
    pub restarts: u32,
}

/// Downloads `url` into `part`, continuing what an earlier run left there.
pub fn download(
    http: &Http,
    url: &Url,
    part: &Path,
    label: &str,
    progress: &Progress,
) -> Result<Downloaded, FetchError> {
    let io_err = |action| {
        move |source| FetchError::Io {
            action,
            path: part.to_owned(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(io_err("opening"))?;
    let resumed_from = file.metadata().map_err(io_err("reading"))?.len();
    let mut hasher = hash_prefix(&mut file, resumed_from).map_err(io_err("reading"))?;
    let mut offset = resumed_from;
    if resumed_from > 0 {
        progress.note(format!(
            "resuming {label} at {}",
            crate::io::units::human_size(resumed_from)
        ));
    }
    let mut failures = 0u32;
    let mut restarts = 0u32;
    let mut task: Option<Task> = None;
    let mut last_error = String::new();
    loop {
        if failures > 0 {
            if failures > http.opts.retries {
                if let Some(t) = &task {
                    t.abandon();
                }
                return Err(FetchError::GaveUp {
                    url: url.clone(),
                    attempts: failures,
                    detail: last_error,
                });
            }
            tracing::info!(
                "{url}: {last_error}; retry {failures} of {}",
                http.opts.retries
            );
            std::thread::sleep(http.backoff(failures));
        }
        let mut resp = match http.get_from(url, offset) {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                failures += 1;
                last_error = e.detail();
                continue;
            }
            Err(e) => {
                if let Some(t) = &task {
                    t.abandon();
                }
                return Err(e.into());
            }
        };
        let total = match interpret(&resp, offset) {
            Answer::Rest { total } => total,
            Answer::Everything { total } => {
                if offset > 0 {
                    progress.note(format!(
                        "{url}: the server ignored the range request; starting over"
                    ));
                    file.set_len(0).map_err(io_err("truncating"))?;
                    file.seek(SeekFrom::Start(0)).map_err(io_err("writing"))?;
                    hasher = Hasher::default();
                    offset = 0;
                    restarts += 1;
                    if let Some(t) = &task {
                        t.restart_at(0);
                    }
                }
                total
            }
            Answer::AlreadyComplete => break,
            Answer::Mismatch(detail) => {
                // The server's idea of the file differs from ours: start
                // over rather than splice two versions together.
                tracing::info!("{url}: {detail}; starting over");
                file.set_len(0).map_err(io_err("truncating"))?;
                file.seek(SeekFrom::Start(0)).map_err(io_err("writing"))?;
                hasher = Hasher::default();
                offset = 0;
                restarts += 1;
                failures += 1;
                last_error = detail;
                continue;
            }
        };
        let t = task.get_or_insert_with(|| progress.task("downloading", offset, total));
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err("writing"))?;
        let mut buf = vec![0u8; 256 << 10];
        let mut progressed = false;
        let outcome = loop {
            match resp.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    file.write_all(&buf[..n]).map_err(io_err("writing"))?;
                    hasher.update(&buf[..n]);
                    offset += super::len64(n);
                    progressed = true;
                    t.set_position(offset);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(io_chain(&e)),
            }
        };
        if progressed {
            failures = 0;
        }
        match (outcome, total) {
            (Ok(()), Some(total)) if offset < total => {
                failures += 1;
                last_error = format!("the connection closed at byte {offset} of {total}");
            }
            (Ok(()), Some(total)) if offset > total => {
                t.abandon();
                return Err(FetchError::Protocol {
                    url: url.clone(),
                    detail: format!("received {offset} bytes, more than the {total} announced"),
                });
            }
            (Ok(()), _) => break,
            (Err(detail), Some(total)) => {
                failures += 1;
                last_error = format!("the transfer stopped at byte {offset} of {total}: {detail}");
            }
            (Err(detail), None) => {
                failures += 1;
                last_error = format!("the transfer stopped at byte {offset}: {detail}");
            }
        }
    }
    file.sync_all().map_err(io_err("syncing"))?;
    if let Some(t) = &task {
        t.finish(format!(
            "downloaded {} ({})",
            label,
            crate::io::units::human_size(offset)
        ));
    }
    Ok(Downloaded {
        sha256: hasher.finish(),
        size: offset,
        resumed_from,
        restarts,
    })
}

enum Answer {
    /// 206 from our offset; `total` is the whole file's size.
    Rest {
        total: Option<u64>,
    },
    /// 200: the whole file, whatever we asked.
    Everything {
        total: Option<u64>,
    },
    /// 416 with the file's size equal to what we have.
    AlreadyComplete,
    Mismatch(String),
}

fn interpret(resp: &reqwest::blocking::Response, offset: u64) -> Answer {
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            match header(CONTENT_RANGE)
                .as_deref()
                .and_then(parse_content_range)
            {
                Some(ContentRange::Bytes { start, total, .. }) if start == offset => {
                    Answer::Rest { total }
                }
                Some(ContentRange::Bytes { start, .. }) => Answer::Mismatch(format!(
                    "asked for bytes from {offset}, the server sent from {start}"
                )),
                _ => Answer::Mismatch("a partial response without a usable Content-Range".into()),
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => match header(CONTENT_RANGE)
            .as_deref()
            .and_then(parse_content_range)
        {
            Some(ContentRange::Unsatisfied { total }) if total == offset => Answer::AlreadyComplete,
            _ => Answer::Mismatch(format!("the server cannot serve bytes from {offset}")),
        },
        _ => Answer::Everything {
            total: header(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ContentRange {
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    Unsatisfied {
        total: u64,
    },
}

/// `bytes 100-199/1000`, `bytes 100-199/*`, `bytes */1000` (RFC 9110 §14.4).
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if range == "*" {
        return Some(ContentRange::Unsatisfied { total: total? });
    }
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange::Bytes { start, end, total })
}

/// Hashes the first `len` bytes of `file` (what an earlier run fetched).
fn hash_prefix(file: &mut File, len: u64) -> io::Result<Hasher> {
    let mut hasher = Hasher::default();
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut reader = (&*file).take(len);
    while left > 0 {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the partial download shrank",
            ));
        }
        hasher.update(&buf[..n]);
        left -= super::len64(n);
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some(ContentRange::Bytes {
                start: 100,
                end: 199,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange::Bytes {
                start: 5,
                end: 9,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000"),
            Some(ContentRange::Unsatisfied { total: 1000 })
        );
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
