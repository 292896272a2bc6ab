//! The HTTP status server of `serve`: the status page, `/api/nodes`, and
//! the endpoint where each node's first-boot unit reports its state with
//! its token (routes in `api`, the page in `page`, tokens in `tokens`).
//!
//! axum routes; the accept loop is ours (hyper's HTTP/1 connection
//! builder) because `axum::serve` has no bounds, and this server faces a
//! LAN: at most `max_connections` at once (more are closed on accept), a
//! request's headers must arrive within `header_timeout`, and a connection
//! lives at most `connection_limit` whatever it does (then the request in
//! flight gets `header_timeout` to finish), so a slow or vanished client
//! holds nothing for long. Bodies are capped at `api::MAX_BODY`.
//!
//! Logging: each report stored at info, each refusal at warn; the page and
//! `/api/nodes`, which an open page polls every 2 s, at debug.

pub mod api;
pub mod page;
pub mod tokens;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::netboot::registry::Registry;
pub use api::{MAX_BODY, MAX_DETAIL, Peer};
pub use tokens::Tokens;

/// The most a connection buffers of a request's head (hyper's minimum is
/// 8 KiB, its default ~400 KiB): a request line and headers beyond it are
/// refused, so 64 connections hold at most 1 MiB.
const MAX_READ_BUFFER: usize = 16 * 1024;

/// The server's bounds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections served at once; one more is closed as it is accepted.
    pub max_connections: usize,
    /// Time for a request's headers to arrive.
    pub header_timeout: Duration,
    /// The longest a connection lives (a browser reconnects).
    pub connection_limit: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            connection_limit: Duration::from_secs(60),
        }
    }
}

/// Counters for the log and the tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and served.
    pub connections: AtomicU64,
    /// Connections closed on accept because `max_connections` were open.
    pub turned_away: AtomicU64,
    /// Connections cut at `connection_limit`.
    pub timed_out: AtomicU64,
}

/// Why the status server could not listen.
#[derive(Debug, Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr} for the status server: port {port} is below 1024, \
         which needs root or CAP_NET_BIND_SERVICE (or move every port with --port-base)"
    )]
    Privileged { addr: SocketAddr, port: u16 },
    #[error("cannot listen on {addr} for the status server: {error}")]
    Io {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A bound status server; `run` serves until its future is dropped.
pub struct StatusServer {
    listener: std::net::TcpListener,
    config: Config,
    stats: Arc<Stats>,
}

impl StatusServer {
    /// Listens on `addr`:`port` (port 0 picks a free one).
    pub fn bind(addr: IpAddr, port: u16) -> Result<Self, BindError> {
        Self::bind_with(addr, port, Config::default())
    }

    pub fn bind_with(addr: IpAddr, port: u16, config: Config) -> Result<Self, BindError> {
        let at = SocketAddr::new(addr, port);
        let io = |error| BindError::Io { addr: at, error };
        let listener = std::net::TcpListener::bind(at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied && port < 1024 {
                BindError::Privileged { addr: at, port }
            } else {
                io(e)
            }
        })?;
        // tokio takes over a listener only in non-blocking mode.
        listener.set_nonblocking(true).map_err(io)?;
        Ok(Self {
            listener,
            config,
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Serves `registry` (reports checked against `tokens`) until the
    /// future is dropped. Must run on a tokio runtime with I/O and time.
    pub async fn run(self, registry: Arc<Registry>, tokens: Tokens) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let app = api::router(Arc::new(api::Shared { registry, tokens }));
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        tracing::info!(addr = %listener.local_addr()?, "status server listening");
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather
                    // than spin; the listener itself stays usable.
                    tracing::warn!("status server: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                self.stats.turned_away.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "status server: too many connections, closing one");
                drop(stream);
                continue;
            };
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            let service = TowerToHyperService::new(app.clone());
            let handler = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(Peer(peer));
                service.call(req)
            });
            let config = self.config.clone();
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                let _slot = slot;
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_timeout)
                    .max_buf_size(MAX_READ_BUFFER)
                    .serve_connection(TokioIo::new(stream), handler);
                let mut connection = std::pin::pin!(connection);
                let result = match tokio::time::timeout(
                    config.connection_limit,
                    connection.as_mut(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        // Finish the request in flight (a browser's poll)
                        // and close; one that does not finish in time is cut.
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        connection.as_mut().graceful_shutdown();
                        tokio::time::timeout(config.header_timeout, connection)
                            .await
                            .unwrap_or(Ok(()))
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, "status server connection: {e}");
                }
            });
        }
    }
}
