//! Our NBD server (NetworkBlockDevice/nbd `doc/proto.md`): what a Pi's
//! initramfs `nbd-client` mounts its root from (targets.md §4.4). Fixed
//! newstyle handshake with `NBD_OPT_GO`/`INFO`/`LIST`/`ABORT`/`EXPORT_NAME`;
//! transmission with `READ`/`WRITE`/`FLUSH`/`TRIM`/`DISC` and the FUA flag,
//! simple replies only. Ours rather than a crate: the protocol subset a
//! kernel client needs is small, and the bounds `serve` needs (connections
//! at once, a handshake deadline, idle and I/O timeouts, a request cap and a
//! server-wide buffer budget) are easier to own than to bolt on.
//!
//! Each accepted connection is a task in a `JoinSet` the `run` future owns:
//! dropping that future (shutdown) aborts every session. `serve` then calls
//! `ProfileExports::flush_all`, so every delta is durable even while a
//! cancelled task still holds its disk (each `Delta` flushes again when the
//! last holder drops it).
//!
//! Logging: a session's start (info: client, export, size), its end (info
//! for a clean end, warn for a refusal, a timeout or a protocol breach);
//! single requests are too many to log, and are counted in `Stats` and the
//! registry instead.

mod exports;
mod handshake;
pub mod proto;
mod transmission;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

pub use exports::{Exports, ProfileExports, Refusal};

use crate::netboot::registry::{Protocol, Registry};

/// The most one request may read or write: the spec's default maximum
/// payload, and what Linux's nbd driver stays under.
pub const MAX_REQUEST: u32 = 32 * 1024 * 1024;

/// The server's bounds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections at once; one more is closed at once (and counted).
    pub max_connections: usize,
    /// From accept to the chosen export.
    pub handshake_timeout: Duration,
    /// How long a session may wait for its next request. A node's root
    /// disk can be quiet for long stretches and dropping it breaks the
    /// node's root filesystem, so the default is a day; a peer that
    /// vanished is found sooner by TCP keepalive (`keepalive`).
    pub idle_timeout: Duration,
    /// From a request's first byte to our reply's last.
    pub io_timeout: Duration,
    /// The largest READ or WRITE; a larger READ gets `EINVAL`, a larger
    /// WRITE (whose data we will not take) a disconnect.
    pub max_request: u32,
    /// Request buffers held at once over all sessions, in bytes; at least
    /// `max_request`. A request waits for room (within `io_timeout`).
    pub buffer_budget: u32,
    /// Idle time before TCP keepalive probes (then 6 probes 10 s apart).
    pub keepalive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(24 * 3600),
            io_timeout: Duration::from_secs(60),
            max_request: MAX_REQUEST,
            buffer_budget: 8 * MAX_REQUEST,
            keepalive: Duration::from_secs(60),
        }
    }
}

/// Counters a status page can show.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub busy: AtomicU64,
    /// Sessions now in progress.
    pub active: AtomicU64,
    /// Exports refused (unknown name, or not this client's).
    pub refused: AtomicU64,
    /// Connections dropped for breaking the protocol: bad magic or flags,
    /// lengths past our limits, too many options.
    pub malformed: AtomicU64,
    /// Connections dropped for the handshake, idle or I/O timeout.
    pub timeouts: AtomicU64,
    /// Transmission requests received.
    pub requests: AtomicU64,
    /// Requests answered with an error (EINVAL, ENOSPC, EIO).
    pub error_replies: AtomicU64,
    /// READs and WRITEs over `max_request`.
    pub oversized: AtomicU64,
    /// Bytes clients read.
    pub bytes_read: AtomicU64,
    /// Bytes clients wrote.
    pub bytes_written: AtomicU64,
}

/// Why a listening socket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen for NBD on TCP {addr}: port {} is below 1024, which needs root or CAP_NET_BIND_SERVICE (--port-base moves every server's port)",
        addr.port()
    )]
    Privileged { addr: SocketAddr },
    #[error("cannot listen for NBD on TCP {addr}: {cause}")]
    Io { addr: SocketAddr, cause: io::Error },
}

fn bind_error(addr: SocketAddr, cause: io::Error) -> BindError {
    if cause.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        BindError::Privileged { addr }
    } else {
        BindError::Io { addr, cause }
    }
}

/// What ended a connection.
pub(crate) enum End {
    /// `NBD_CMD_DISC`.
    Disconnected,
    /// `NBD_OPT_ABORT`.
    Aborted,
    /// The client closed or reset the connection, or a write to it failed.
    Gone(io::Error),
    Timeout(&'static str),
    Malformed(String),
    /// `NBD_OPT_EXPORT_NAME` for an export we do not serve it.
    Refused(String, Refusal),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Gone(e)
    }
}

type Stream = BufReader<TcpStream>;

/// What every session shares.
pub(crate) struct Ctx {
    config: Config,
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    budget: Arc<Semaphore>,
}

impl Ctx {
    /// Waits for `bytes` of the buffer budget; held until the permit drops.
    async fn pay(&self, bytes: u32) -> Result<OwnedSemaphorePermit, End> {
        Arc::clone(&self.budget)
            .acquire_many_owned(bytes)
            .await
            // The semaphore is never closed.
            .map_err(|_| End::Timeout("the buffer budget is gone"))
    }
}

/// A bound server; `run` serves until the future is dropped.
pub struct Server {
    listener: TcpListener,
    config: Config,
    stats: Arc<Stats>,
}

impl Server {
    /// Listens on `addr:port` (port 0 picks a free port).
    pub async fn bind(addr: IpAddr, port: u16, config: Config) -> Result<Self, BindError> {
        let at = SocketAddr::new(addr, port);
        let listener = TcpListener::bind(at)
            .await
            .map_err(|cause| bind_error(at, cause))?;
        Ok(Self {
            listener,
            config,
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Accepts connections forever, one task each.
    pub async fn run(self, exports: Arc<dyn Exports>, registry: Arc<Registry>) -> io::Result<()> {
        let budget = self.config.buffer_budget.max(self.config.max_request);
        let ctx = Arc::new(Ctx {
            config: self.config.clone(),
            stats: Arc::clone(&self.stats),
            registry,
            // A u32 always fits usize on the hosts we build for.
            budget: Arc::new(Semaphore::new(budget as usize)),
        });
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let mut sessions = JoinSet::new();
        loop {
            while sessions.try_join_next().is_some() {}
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before we
                    // took it: wait a little rather than spin.
                    tracing::warn!("nbd: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "nbd: refused a connection: {} already open", self.config.max_connections);
                continue;
            };
            let ctx = Arc::clone(&ctx);
            let exports = Arc::clone(&exports);
            sessions.spawn(async move {
                let _slot = slot;
                ctx.stats.active.fetch_add(1, Ordering::Relaxed);
                connection(stream, peer, &ctx, exports.as_ref()).await;
                ctx.stats.active.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

fn tune(stream: &TcpStream, keepalive: Duration) {
    // Replies are small and latency-bound; keepalive finds peers that
    // vanished (a Pi powered off) on a session that is otherwise idle.
    let _ = stream.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!("nbd: no TCP keepalive: {e}");
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: &Ctx, exports: &dyn Exports) {
    tune(&stream, ctx.config.keepalive);
    let mut s = BufReader::new(stream);
    let chosen = match timeout(
        ctx.config.handshake_timeout,
        handshake::negotiate(&mut s, peer, ctx, exports),
    )
    .await
    {
        Ok(Ok(chosen)) => chosen,
        Ok(Err(end)) => return account(ctx, peer, None, &end),
        Err(_) => {
            return account(
                ctx,
                peer,
                None,
                &End::Timeout("the handshake took too long"),
            );
        }
    };
    let ip = peer.ip().to_canonical();
    tracing::info!(%peer, export = chosen.name, size = chosen.disk.size(), "nbd: serving");
    ctx.registry
        .record(&chosen.name, Protocol::Nbd, Some(ip), &chosen.name, 0, 0);
    let end = transmission::serve(&mut s, peer, ctx, &chosen.name, chosen.disk).await;
    account(ctx, peer, Some(&chosen.name), &end);
}

/// Counts and logs how a connection ended.
fn account(ctx: &Ctx, peer: SocketAddr, export: Option<&str>, end: &End) {
    let export = export.unwrap_or("-");
    match end {
        End::Disconnected | End::Aborted => {
            tracing::info!(%peer, export, "nbd: client disconnected")
        }
        End::Gone(e) => tracing::info!(%peer, export, "nbd: connection closed: {e}"),
        End::Timeout(why) => {
            ctx.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, export, "nbd: dropped: {why}");
        }
        End::Malformed(why) => {
            ctx.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, export, "nbd: dropped a client that broke the protocol: {why}");
        }
        End::Refused(name, refusal) => {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, export = name, "nbd: refused: {refusal}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_low_port_says_what_it_needs() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let msg = bind_error("0.0.0.0:809".parse().unwrap(), denied()).to_string();
        assert!(
            msg.contains("TCP 0.0.0.0:809")
                && msg.contains("CAP_NET_BIND_SERVICE")
                && msg.contains("--port-base"),
            "{msg}"
        );
        // A high port refused for another reason keeps that reason.
        let msg = bind_error("10.0.0.1:10809".parse().unwrap(), denied()).to_string();
        assert!(!msg.contains("CAP_NET_BIND_SERVICE"), "{msg}");
        let busy = io::Error::from(io::ErrorKind::AddrInUse);
        let msg = bind_error("10.0.0.1:10809".parse().unwrap(), busy).to_string();
        assert!(
            msg.contains("TCP 10.0.0.1:10809") && msg.contains("in use"),
            "{msg}"
        );
    }

    #[test]
    fn binding_a_port_in_use_names_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let here = IpAddr::from([127, 0, 0, 1]);
            let first = Server::bind(here, 0, Config::default()).await.unwrap();
            let port = first.local_addr().unwrap().port();
            let e = Server::bind(here, port, Config::default())
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        });
    }
}
