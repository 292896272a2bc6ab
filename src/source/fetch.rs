//! Resumable downloads into a `.part` file: hashes while it writes, resumes
//! with `Range: bytes=N-` after an interruption (a 206 whose Content-Range
//! starts at N and gives the size we know, else it starts over), retries
//! failures with backoff, and reports progress. Checking the hash against
//! the publisher's is the caller's job: this only says what arrived.
//!
//! The retry budget is per download and counts every failed attempt,
//! whatever went wrong and whether or not it brought bytes: at most
//! `retries + 1` requests. A server that cuts every reply short, answers a
//! range request from the wrong byte or with another size, ignores ranges,
//! or drips bytes slower than the floor in [`Pace`] therefore ends the run
//! with an error that counts each kind of failure; the `.part` file stays,
//! and the next run resumes it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use thiserror::Error;

use super::http::{Http, HttpError, Pace, Url, io_chain};
use super::redact;
use crate::digest::{Hasher, Sha256};
use crate::progress::{Progress, Task};

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(
        "GET {url}: gave up after {} failed attempt{} ({tally}); the last: {detail}",
        tally.total(),
        if tally.total() == 1 { "" } else { "s" }
    )]
    GaveUp {
        /// With its password masked.
        url: String,
        tally: Tally,
        detail: String,
    },
    #[error("GET {url}: {detail}")]
    Protocol {
        /// With its password masked.
        url: String,
        detail: String,
    },
    #[error(transparent)]
    Io(#[from] crate::io::path_error::PathIoError),
}

/// Why one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No usable response: the connection failed or timed out, or the
    /// server answered 5xx, 408 or 429.
    NoResponse,
    /// The body ended (or broke) before the whole file arrived.
    CutShort,
    /// The body came slower than the floor (see [`Pace`]).
    TooSlow,
    /// A 206 that starts elsewhere than the byte asked for.
    WrongStart,
    /// A 206 that gives another size than the file had.
    WrongTotal,
    /// A 206 without a usable Content-Range, or a 416 for a range inside
    /// the file.
    BadRange,
}

impl Failure {
    const ALL: [Failure; 6] = [
        Self::NoResponse,
        Self::CutShort,
        Self::TooSlow,
        Self::WrongStart,
        Self::WrongTotal,
        Self::BadRange,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::NoResponse => "without a response",
            Self::CutShort => "cut short",
            Self::TooSlow => "too slow",
            Self::WrongStart => "a range from the wrong start",
            Self::WrongTotal => "a range with the wrong total size",
            Self::BadRange => "an unusable range answer",
        }
    }
}

/// Failed attempts by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u32; Failure::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, f: Failure) {
        if let Some(i) = Failure::ALL.iter().position(|k| *k == f) {
            self.counts[i] = self.counts[i].saturating_add(1);
        }
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, c| a.saturating_add(*c))
    }

    pub fn count(&self, f: Failure) -> u32 {
        Failure::ALL
            .iter()
            .position(|k| *k == f)
            .map_or(0, |i| self.counts[i])
    }
}

/// `2 cut short, 1 a range from the wrong start`.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, n) in Failure::ALL.iter().zip(self.counts) {
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n} {}", kind.label())?;
        }
        Ok(())
    }
}

/// What arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: Sha256,
    pub size: u64,
    /// Bytes already in the `.part` file from an earlier run.
    pub resumed_from: u64,
    /// Times the download started over (a server that ignored a range
    /// request, or whose answer did not fit what we had).
    pub restarts: u32,
}

/// The `.part` file, its hash so far, and where the next byte goes.
struct Part<'a> {
    path: &'a Path,
    file: File,
    hasher: Hasher,
    offset: u64,
}

impl Part<'_> {
    /// Drops what arrived: the next request asks for the whole file.
    fn start_over(&mut self) -> Result<(), FetchError> {
        let path = self.path;
        let err = |action| crate::io::path_error::at(action, path);
        self.file.set_len(0).map_err(err("truncating"))?;
        self.file.seek(SeekFrom::Start(0)).map_err(err("writing"))?;
        self.hasher = Hasher::default();
        self.offset = 0;
        Ok(())
    }
}

/// Downloads `url` into `part`, continuing what an earlier run left there.
pub fn download(
    http: &Http,
    url: &Url,
    part: &Path,
    label: &str,
    progress: &Progress,
) -> Result<Downloaded, FetchError> {
    let shown = redact::url(url);
    let io_err = |action| crate::io::path_error::at(action, part);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(io_err("opening"))?;
    let resumed_from = file.metadata().map_err(io_err("reading"))?.len();
    let hasher = hash_prefix(&mut file, resumed_from).map_err(io_err("reading"))?;
    let mut p = Part {
        path: part,
        file,
        hasher,
        offset: resumed_from,
    };
    if resumed_from > 0 {
        progress.note(format!(
            "resuming {label} at {}",
            crate::io::units::human_size(resumed_from)
        ));
    }
    let mut tally = Tally::default();
    let mut restarts = 0u32;
    // The file's size as the server first gave it: a later answer with
    // another size means another file, whose bytes must not be spliced on.
    let mut known_total: Option<u64> = None;
    let mut task: Option<Task> = None;
    let mut last_error = String::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let failures = tally.total();
        if failures > 0 {
            if failures > http.opts.retries {
                if let Some(t) = &task {
                    t.abandon();
                }
                return Err(FetchError::GaveUp {
                    url: shown,
                    tally,
                    detail: last_error,
                });
            }
            tracing::info!(
                "{shown}: {last_error}; retry {failures} of {}",
                http.opts.retries
            );
            std::thread::sleep(http.backoff(failures));
        }
        let mut resp = match http.get_from(url, p.offset) {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                tally.add(Failure::NoResponse);
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
        let total = match interpret(&resp, p.offset, known_total) {
            Answer::Rest { total } => total,
            Answer::Everything { total } => {
                if p.offset > 0 {
                    progress.note(format!(
                        "{shown}: the server ignored the range request; starting over"
                    ));
                    p.start_over()?;
                    restarts += 1;
                    if let Some(t) = &task {
                        t.restart_at(0);
                    }
                }
                total
            }
            Answer::AlreadyComplete => break,
            Answer::Mismatch(kind, detail) => {
                // The server's idea of the file differs from ours: start
                // over rather than splice two versions together.
                tracing::info!("{shown}: {detail}; starting over");
                p.start_over()?;
                if let Some(t) = &task {
                    t.restart_at(0);
                }
                restarts += 1;
                tally.add(kind);
                last_error = detail;
                continue;
            }
        };
        if total.is_some() {
            known_total = total;
        }
        let t = task.get_or_insert_with(|| progress.task("downloading", p.offset, total));
        p.file
            .seek(SeekFrom::Start(p.offset))
            .map_err(io_err("writing"))?;
        let mut pace = Pace::new(http.opts.read_timeout);
        let outcome = loop {
            match resp.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    p.file.write_all(&buf[..n]).map_err(io_err("writing"))?;
                    p.hasher.update(&buf[..n]);
                    p.offset += super::len64(n);
                    t.set_position(p.offset);
                    if let Err(slow) = pace.add(n) {
                        break Err((Failure::TooSlow, slow));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err((Failure::CutShort, io_chain(&e))),
            }
        };
        let offset = p.offset;
        match (outcome, total) {
            (Ok(()), Some(total)) if offset < total => {
                tally.add(Failure::CutShort);
                last_error = format!("the connection closed at byte {offset} of {total}");
            }
            (Ok(()), Some(total)) if offset > total => {
                t.abandon();
                return Err(FetchError::Protocol {
                    url: shown,
                    detail: format!("received {offset} bytes, more than the {total} announced"),
                });
            }
            (Ok(()), _) => break,
            (Err((kind, detail)), Some(total)) => {
                tally.add(kind);
                last_error = format!("the transfer stopped at byte {offset} of {total}: {detail}");
            }
            (Err((kind, detail)), None) => {
                tally.add(kind);
                last_error = format!("the transfer stopped at byte {offset}: {detail}");
            }
        }
    }
    p.file.sync_all().map_err(io_err("syncing"))?;
    if let Some(t) = &task {
        t.finish(format!(
            "downloaded {} ({})",
            label,
            crate::io::units::human_size(p.offset)
        ));
    }
    Ok(Downloaded {
        sha256: p.hasher.finish(),
        size: p.offset,
        resumed_from,
        restarts,
    })
}

enum Answer {
    /// 206 from our offset; `total` is the whole file's size.
    Rest { total: Option<u64> },
    /// 200: the whole file, whatever we asked.
    Everything { total: Option<u64> },
    /// 416 with the file's size equal to what we have.
    AlreadyComplete,
    /// An answer that does not continue what we have.
    Mismatch(Failure, String),
}

/// What a response means for a download at `offset` of a file whose size
/// was `known_total` in an earlier answer.
fn interpret(resp: &reqwest::blocking::Response, offset: u64, known_total: Option<u64>) -> Answer {
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
                Some(ContentRange::Bytes { start, .. }) if start != offset => Answer::Mismatch(
                    Failure::WrongStart,
                    format!("asked for bytes from {offset}, the server sent from {start}"),
                ),
                Some(ContentRange::Bytes { total, .. }) => match (known_total, total) {
                    (Some(before), Some(now)) if before != now => Answer::Mismatch(
                        Failure::WrongTotal,
                        format!(
                            "the server gave the file's size as {before} before and as {now} now"
                        ),
                    ),
                    _ => Answer::Rest { total },
                },
                _ => Answer::Mismatch(
                    Failure::BadRange,
                    "a partial response without a usable Content-Range".into(),
                ),
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => match header(CONTENT_RANGE)
            .as_deref()
            .and_then(parse_content_range)
        {
            Some(ContentRange::Unsatisfied { total })
                if total == offset && known_total.is_none_or(|k| k == total) =>
            {
                Answer::AlreadyComplete
            }
            _ => Answer::Mismatch(
                Failure::BadRange,
                format!("the server cannot serve bytes from {offset}"),
            ),
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
