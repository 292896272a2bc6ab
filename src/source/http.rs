//! The HTTP client (reqwest, blocking, rustls with the ring provider and the
//! system's trust store): timeouts, a floor on the transfer rate, retries
//! with exponential backoff, redirects (http and https only), the
//! `--mirror` rewrite, and small downloads (checksum and signature files).
//! Large resumable downloads are `fetch`'s. URLs in messages have their
//! passwords masked (`redact`).

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, LOCATION, RANGE};
use thiserror::Error;

pub use reqwest::Url;

use super::redact;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("GET {}: HTTP {status}", redact::url(url))]
    Status { url: Url, status: StatusCode },
    #[error(
        "GET {url}: the server redirects to {to}, whose scheme ({scheme}) is refused: only \
         http and https redirects are followed"
    )]
    RedirectScheme {
        /// Both URLs with their passwords masked; `to` as the server gave
        /// it (resolved against `url` when relative).
        url: String,
        to: String,
        scheme: String,
    },
    #[error("GET {}: {detail}", redact::url(url))]
    Transport {
        url: Url,
        detail: String,
        /// Worth another try (not a request reqwest refused to make, nor
        /// a redirect loop).
        retry: bool,
    },
    /// No DNS answer or no route to the host: this machine looks offline.
    /// Not retried; the message says what to do instead.
    #[error(
        "GET {}: cannot reach {} ({detail}); is this machine offline? Download \
         the image elsewhere and set the node's `image.path` to it, or pass \
         --mirror URL of a mirror you can reach",
        redact::url(url),
        url.host_str().unwrap_or("the server")
    )]
    Unreachable { url: Url, detail: String },
    #[error(
        "GET {}: the response is larger than {limit} bytes (not a checksum, signature or index file?)",
        redact::url(url)
    )]
    TooLarge { url: Url, limit: u64 },
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    #[error("{:?} is not an http(s) URL", redact::text(url))]
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

    /// The host cannot be reached at all (no DNS answer, no route).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// Worth another try: transport failures (but not a certificate that
    /// does not verify), 5xx, 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { detail, retry, .. } => {
                *retry && !detail.contains("invalid peer certificate")
            }
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
            .redirect(redirect_policy())
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
        tracing::debug!("GET {} from byte {offset}", redact::url(url));
        let resp = self
            .client
            .get(url.clone())
            .headers(headers)
            .send()
            .map_err(|e| transport(url, &e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        // reqwest follows redirects to http(s) URLs itself and hands back
        // the ones it will not follow (another scheme) as they came.
        if status.is_redirection()
            && let Some(to) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
        {
            let target = resp.url().join(to);
            let scheme = match &target {
                Ok(t) => t.scheme().to_owned(),
                Err(_) => to.split_once(':').map_or("", |(s, _)| s).to_owned(),
            };
            if !matches!(scheme.as_str(), "http" | "https") {
                return Err(HttpError::RedirectScheme {
                    url: redact::url(url),
                    to: target.map_or_else(|_| redact::text(to), |t| redact::url(&t)),
                    scheme,
                });
            }
        }
        Err(HttpError::Status {
            url: url.clone(),
            status,
        })
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
        let mut reader = resp.take(limit + 1);
        let mut pace = Pace::new(self.opts.read_timeout);
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(HttpError::Transport {
                        url: url.clone(),
                        detail: io_chain(&e),
                        retry: true,
                    });
                }
            };
            body.extend_from_slice(&buf[..n]);
            if let Err(detail) = pace.add(n) {
                return Err(HttpError::Transport {
                    url: url.clone(),
                    detail,
                    retry: true,
                });
            }
        }
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

/// Follows up to 10 redirects between http(s) URLs; one to another scheme
/// (`file:`, `ftp:`, …) stops there, and `get_from` refuses it by name.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if !matches!(attempt.url().scheme(), "http" | "https") {
            attempt.stop()
        } else if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The slowest transfer we wait for: every `window` (the read timeout)
/// must bring at least `MIN_BYTES`, or the rest of the body. The read
/// timeout alone bounds each wait, so a server that sends a byte just
/// before it expires would otherwise hold a download forever.
pub struct Pace {
    window: Duration,
    started: Instant,
    bytes: u64,
    /// A window that ended short: an error if more bytes follow (the body
    /// may instead end with the read that found it short).
    short: Option<String>,
}

impl Pace {
    /// Bytes each read-timeout window must bring (16 KiB a minute at the
    /// default timeout: far below any working link).
    pub const MIN_BYTES: u64 = 16 << 10;

    pub fn new(window: Duration) -> Self {
        Self {
            window,
            started: Instant::now(),
            bytes: 0,
            short: None,
        }
    }

    /// Counts `n` more bytes; an error once a whole window brought fewer
    /// than `MIN_BYTES` and the body did not end there.
    pub fn add(&mut self, n: usize) -> Result<(), String> {
        if let Some(why) = self.short.take() {
            return Err(why);
        }
        self.bytes = self.bytes.saturating_add(super::len64(n));
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        if self.bytes < Self::MIN_BYTES {
            self.short = Some(format!(
                "too slow: {} bytes in {:.1} s, less than {} bytes per read timeout \
                 (--read-timeout)",
                self.bytes,
                elapsed.as_secs_f64(),
                Self::MIN_BYTES
            ));
        }
        self.started = Instant::now();
        self.bytes = 0;
        Ok(())
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
    if e.is_connect() && unreachable(e) {
        return HttpError::Unreachable {
            url: url.clone(),
            detail: chain(e),
        };
    }
    HttpError::Transport {
        url: url.clone(),
        detail: chain(e),
        retry: !(e.is_builder() || e.is_redirect()),
    }
}

/// Whether a connect error says the host cannot be reached at all: its
/// name does not resolve, or there is no route to its network. Retrying
/// those only makes an offline machine wait (31 s with the default
/// retries) for the same answer.
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        // hyper-util's resolver error: "dns error: failed to lookup
        // address information: …".
        if c.to_string().starts_with("dns error") {
            return true;
        }
        cur = c.source();
    }
    false
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
    // Some causes quote the URL, credentials and all.
    redact::text(&parts.join(": "))
}

/// An I/O error from a response body, with the reqwest causes inside it.
pub fn io_chain(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => {
            let s = chain(inner);
            if s.is_empty() {
                redact::text(&e.to_string())
            } else {
                s
            }
        }
        None => redact::text(&e.to_string()),
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
    fn a_short_window_is_an_error_only_if_more_bytes_follow() {
        let mut pace = Pace::new(Duration::ZERO);
        // The window (zero long) is over at once with 10 bytes: the body
        // may end here, so no error yet …
        assert_eq!(pace.add(10), Ok(()));
        // … but it did not.
        assert!(
            pace.add(10)
                .unwrap_err()
                .starts_with("too slow: 10 bytes in ")
        );
        let mut fast = Pace::new(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(fast.add(1 << 20), Ok(()));
        }
    }

    #[test]
    fn only_http_urls() {
        assert!(parse_url("https://x.example/a").is_ok());
        assert!(parse_url("ftp://x.example/a").is_err());
        assert!(parse_url("/tmp/a.img").is_err());
    }
}
