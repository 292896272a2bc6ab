//! The HTTP client (reqwest, blocking, rustls with the ring provider and the
//! system's trust store): timeouts, retries with exponential backoff, the
//! `--mirror` rewrite, and small downloads (checksum and signature files).
//! Large resumable downloads are `fetch`'s.

use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, RANGE};
use thiserror::Error;

pub use reqwest::Url;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("GET {url}: HTTP {status}")]
    Status { url: Url, status: StatusCode },
    #[error("GET {url}: {detail}")]
    Transport { url: Url, detail: String },
    #[error(
        "GET {url}: the response is larger than {limit} bytes (not a checksum or signature file?)"
    )]
    TooLarge { url: Url, limit: u64 },
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    #[error("{url:?} is not an http(s) URL")]
    BadUrl { url: String },
}

impl HttpError {
    /// What went wrong, without the request (for messages that name it).
    pub fn detail(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::Transport { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// Worth another try: transport failures (but not a certificate that
    /// does not verify), 5xx, 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { detail, .. } => !detail.contains("invalid peer certificate"),
            Self::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

/// Network behaviour, from the command line or the build's settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the response head or for any read of its body.
    pub read_timeout: Duration,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// First backoff delay; doubled after each failure, at most 60 s.
    pub retry_delay: Duration,
    /// Replaces the scheme and host (and prefixes the path) of catalog URLs.
    pub mirror: Option<Url>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            retries: 5,
            retry_delay: Duration::from_secs(1),
            mirror: None,
        }
    }
}

pub struct Http {
    client: Client,
    pub opts: HttpOptions,
}

impl Http {
    pub fn new(opts: HttpOptions) -> Result<Self, HttpError> {
        // reqwest is built without a default crypto provider (aws-lc needs a
        // C toolchain and cmake); ring is ours. A second install in the same
        // process fails harmlessly: the first one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .user_agent(concat!("homelab-image/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            // For the blocking client this bounds each wait (head, each body
            // read), not the whole transfer.
            .timeout(opts.read_timeout)
            .build()
            .map_err(|e| HttpError::Client(chain(&e)))?;
        Ok(Self { client, opts })
    }

    /// The delay before attempt `n` (1-based) of a retry.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.opts
            .retry_delay
            .saturating_mul(factor)
            .min(Duration::from_secs(60))
    }

    /// One GET, from byte `offset` on when it is not 0. Statuses other than
    /// 2xx and 416 are errors.
    pub fn get_from(&self, url: &Url, offset: u64) -> Result<Response, HttpError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = format!("bytes={offset}-");
            if let Ok(v) = range.parse() {
                headers.insert(RANGE, v);
            }
        }
        let resp = self
            .client
            .get(url.clone())
            .headers(headers)
            .send()
            .map_err(|e| transport(url, &e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            Ok(resp)
        } else {
            Err(HttpError::Status {
                url: url.clone(),
                status,
            })
        }
    }

    /// A small file, whole, with retries. Returns the URL it finally came
    /// from (after redirects) and its bytes.
    pub fn get_small(&self, url: &Url, limit: u64) -> Result<(Url, Vec<u8>), HttpError> {
        let mut attempt = 0;
        loop {
            match self.get_small_once(url, limit) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_transient() && attempt < self.opts.retries => {
                    attempt += 1;
                    tracing::info!("{e}; retry {attempt} of {}", self.opts.retries);
                    std::thread::sleep(self.backoff(attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn get_small_once(&self, url: &Url, limit: u64) -> Result<(Url, Vec<u8>), HttpError> {
        let resp = self.get_from(url, 0)?;
        if resp.status() != StatusCode::OK {
            return Err(HttpError::Status {
                url: url.clone(),
                status: resp.status(),
            });
        }
        let final_url = resp.url().clone();
        let mut body = Vec::new();
        resp.take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| HttpError::Transport {
                url: url.clone(),
                detail: io_chain(&e),
            })?;
        if super::len64(body.len()) > limit {
            return Err(HttpError::TooLarge {
                url: url.clone(),
                limit,
            });
        }
        Ok((final_url, body))
    }

    /// `url` with the mirror's scheme, host and port, and the mirror's path
    /// in front of its own.
    pub fn mirrored(&self, url: &str) -> Result<Url, HttpError> {
        let parsed = parse_url(url)?;
        Ok(match &self.opts.mirror {
            Some(m) => apply_mirror(&parsed, m),
            None => parsed,
        })
    }
}

/// Parses an http(s) URL.
pub fn parse_url(url: &str) -> Result<Url, HttpError> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        _ => Err(HttpError::BadUrl {
            url: url.to_owned(),
        }),
    }
}

pub fn apply_mirror(url: &Url, mirror: &Url) -> Url {
    let mut out = mirror.clone();
    let prefix = mirror.path().trim_end_matches('/');
    out.set_path(&format!("{prefix}{}", url.path()));
    out.set_query(url.query());
    out
}

fn transport(url: &Url, e: &reqwest::Error) -> HttpError {
    HttpError::Transport {
        url: url.clone(),
        detail: chain(e),
    }
}

/// The causes of a reqwest error, without its own wording (which repeats
/// the URL): "connection refused", "operation timed out", …
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    if let Some(re) = e.downcast_ref::<reqwest::Error>()
        && re.is_timeout()
        && !parts.iter().any(|p| p.contains("timed out"))
    {
        parts.insert(0, "timed out".to_owned());
    }
    parts.join(": ")
}

/// An I/O error from a response body, with the reqwest causes inside it.
pub fn io_chain(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => {
            let s = chain(inner);
            if s.is_empty() { e.to_string() } else { s }
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_replace_scheme_host_and_prefix_the_path() {
        let u = Url::parse("https://cdimage.ubuntu.com/releases/24.04/release/SHA256SUMS").unwrap();
        let m = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            apply_mirror(&u, &m).as_str(),
            "http://127.0.0.1:8080/releases/24.04/release/SHA256SUMS"
        );
        let m = Url::parse("http://mirror.lan/ubuntu/").unwrap();
        assert_eq!(
            apply_mirror(&u, &m).as_str(),
            "http://mirror.lan/ubuntu/releases/24.04/release/SHA256SUMS"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let http = Http::new(HttpOptions {
            retry_delay: Duration::from_millis(500),
            ..HttpOptions::default()
        })
        .unwrap();
        assert_eq!(http.backoff(1), Duration::from_millis(500));
        assert_eq!(http.backoff(3), Duration::from_secs(2));
        assert_eq!(http.backoff(40), Duration::from_secs(60));
    }

    #[test]
    fn only_http_urls() {
        assert!(parse_url("https://x.example/a").is_ok());
        assert!(parse_url("ftp://x.example/a").is_err());
        assert!(parse_url("/tmp/a.img").is_err());
    }
}
