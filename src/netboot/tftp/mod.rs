//! A read-only TFTP server (RFC 1350) with option negotiation (RFC 2347),
//! `blksize` (RFC 2348), `tsize` and `timeout` (RFC 2349): what a Pi 4/5
//! EEPROM bootloader speaks (targets.md §4.2). Ours rather than async-tftp
//! (0.4.2): that crate runs on its own executor stack (async-executor,
//! async-io, blocking, futures-lite) beside the tokio `serve` already uses,
//! and its `Handler` wants an `AsyncRead` stream where a file inside an
//! image is positional reads. The protocol is small, and the bounds `serve`
//! needs (sessions at once, a whole-session deadline, bounded resends,
//! block-number rollover) are easier to own than to configure. tokio comes
//! at no new crate: reqwest already builds it.
//!
//! The listening socket only reads requests; each transfer runs on its own
//! socket (a new transfer ID, as RFC 1350 asks) connected to the client, so
//! the kernel drops datagrams from anyone else.

pub mod files;
pub mod packet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

pub use files::{DirFiles, Files, Opened, Refusal};
use packet::Packet;

/// The largest block RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
const DEFAULT_BLKSIZE: u16 = 512;

/// The server's bounds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Transfers at once; a request beyond gets ERROR 0 "server busy".
    pub max_sessions: usize,
    /// A transfer that lasts longer than this is abandoned.
    pub session_limit: Duration,
    /// Wait for an ACK before sending again, unless the client's `timeout`
    /// option asks for another value.
    pub retransmit: Duration,
    /// Sends of one packet before the client is given up on.
    pub max_tries: u32,
    /// The largest `blksize` granted.
    pub max_blksize: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            session_limit: Duration::from_secs(600),
            retransmit: Duration::from_secs(1),
            max_tries: 5,
            max_blksize: MAX_BLKSIZE,
        }
    }
}

/// Counters a status page can show.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams that were no valid request, dropped.
    pub malformed: AtomicU64,
    /// Requests refused (unknown file, denied path, write, busy, bad mode).
    pub refused: AtomicU64,
    /// Transfers that sent their last block and saw it acknowledged.
    pub completed: AtomicU64,
    /// Transfers the client aborted or stopped answering, or that ran out of time.
    pub abandoned: AtomicU64,
    /// File bytes acknowledged by clients.
    pub bytes: AtomicU64,
}

/// A bound server; `run` serves until the future is dropped.
pub struct Server {
    socket: UdpSocket,
    files: Arc<dyn Files>,
    config: Config,
    sessions: Arc<Semaphore>,
    stats: Arc<Stats>,
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        files: Arc<dyn Files>,
        config: Config,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self {
            socket,
            files,
            sessions: Arc::new(Semaphore::new(config.max_sessions)),
            config,
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Reads requests forever, one task per accepted transfer.
    pub async fn run(self) -> std::io::Result<()> {
        // A request fits in 512 bytes (RFC 2347); a larger datagram is cut
        // here and then fails to parse, which is the right answer for it.
        let mut buf = vec![0u8; 1024];
        let local_ip = self.socket.local_addr()?.ip();
        loop {
            let (n, client) = self.socket.recv_from(&mut buf).await?;
            let request = match packet::parse(&buf[..n]) {
                Ok(Packet::Request(r)) => r,
                Ok(_) | Err(_) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.sessions).try_acquire_owned() else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%client, "tftp: refused {:?}: too many transfers", request.filename);
                let _ = self
                    .socket
                    .send_to(&packet::error(packet::ERR_UNDEFINED, "server busy"), client)
                    .await;
                continue;
            };
            let files = Arc::clone(&self.files);
            let config = self.config.clone();
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                let _permit = permit;
                let deadline = later(config.session_limit);
                let outcome = match transfer_socket(local_ip, client).await {
                    Ok(sock) => {
                        let s = Session {
                            sock: &sock,
                            client,
                            config: &config,
                            stats: &stats,
                        };
                        match timeout_at(deadline, s.serve(request, files.as_ref())).await {
                            Ok(o) => o,
                            Err(_) => Outcome::Abandoned("the transfer ran out of time"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%client, "tftp: no socket for a transfer: {e}");
                        Outcome::Abandoned("no socket")
                    }
                };
                match outcome {
                    Outcome::Completed => stats.completed.fetch_add(1, Ordering::Relaxed),
                    Outcome::Refused => stats.refused.fetch_add(1, Ordering::Relaxed),
                    Outcome::Abandoned(why) => {
                        tracing::debug!(%client, "tftp: transfer abandoned: {why}");
                        stats.abandoned.fetch_add(1, Ordering::Relaxed)
                    }
                };
            });
        }
    }
}

/// `now + wait`; a `Duration` too large for the clock (a caller's "no
/// limit") means a day, not a panic on overflow.
fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

async fn transfer_socket(
    local_ip: std::net::IpAddr,
    client: SocketAddr,
) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    sock.connect(client).await?;
    Ok(sock)
}

enum Outcome {
    Completed,
    Refused,
    Abandoned(&'static str),
}

/// What a request negotiated.
struct Negotiated {
    blksize: u16,
    retransmit: Duration,
    /// The options to acknowledge; empty means no OACK (RFC 2347).
    oack: Vec<(String, String)>,
}

fn negotiate(options: &[(String, String)], len: u64, config: &Config) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        retransmit: config.retransmit,
        oack: Vec::new(),
    };
    for (name, value) in options {
        match name.as_str() {
            "blksize" => {
                // RFC 2348: 8..=65464; out of range, the option is ignored.
                if let Ok(asked) = value.parse::<u16>()
                    && (8..=MAX_BLKSIZE).contains(&asked)
                {
                    n.blksize = asked.min(config.max_blksize.max(8));
                    n.oack.push((name.clone(), n.blksize.to_string()));
                }
            }
            // RFC 2349: a reading client sends 0 and learns the size.
            "tsize" if value.parse::<u64>().is_ok() => {
                n.oack.push((name.clone(), len.to_string()));
            }
            "timeout" => {
                if let Ok(secs) = value.parse::<u8>()
                    && secs >= 1
                {
                    n.retransmit = Duration::from_secs(u64::from(secs));
                    n.oack.push((name.clone(), secs.to_string()));
                }
            }
            // Unknown options are left out of the OACK (RFC 2347).
            _ => {}
        }
    }
    n
}

struct Session<'a> {
    sock: &'a UdpSocket,
    client: SocketAddr,
    config: &'a Config,
    stats: &'a Stats,
}

impl Session<'_> {
    async fn refuse(&self, code: u16, message: &str) -> Outcome {
        let _ = self.sock.send(&packet::error(code, message)).await;
        Outcome::Refused
    }

    async fn serve(&self, request: packet::Request, files: &dyn Files) -> Outcome {
        let client = self.client;
        if request.write {
            tracing::warn!(%client, path = request.filename, "tftp: refused a write request");
            return self
                .refuse(packet::ERR_ACCESS, "this server is read-only")
                .await;
        }
        if request.mode != "octet" {
            tracing::warn!(%client, path = request.filename, mode = request.mode, "tftp: refused a mode");
            return self
                .refuse(packet::ERR_ILLEGAL, "only octet mode is served")
                .await;
        }
        let opened = match files.open(client, &request.filename) {
            Ok(o) => o,
            Err(r) => {
                // A denial is worth a warning (a client probing for files
                // outside the tree); a missing file is routine (the Pi
                // probes `SERIAL/start4.elf` before falling back).
                match &r {
                    Refusal::NotFound => {
                        tracing::info!(%client, path = request.filename, "tftp: {r}")
                    }
                    Refusal::Denied(_) => {
                        tracing::warn!(%client, path = request.filename, "tftp: refused, {r}")
                    }
                }
                let code = match r {
                    Refusal::NotFound => packet::ERR_NOT_FOUND,
                    Refusal::Denied(_) => packet::ERR_ACCESS,
                };
                let message = match r {
                    Refusal::NotFound => "file not found",
                    Refusal::Denied(_) => "access violation",
                };
                return self.refuse(code, message).await;
            }
        };
        let n = negotiate(&request.options, opened.len, self.config);
        if !n.oack.is_empty() {
            // The OACK is answered by ACK 0, or by an ERROR when the client
            // only wanted the size (the Pi's tsize probe): either ends here.
            if let Err(o) = self.exchange(&packet::oack(&n.oack), 0, n.retransmit).await {
                return o;
            }
        }
        self.send_file(&opened, &n).await
    }

    /// Sends `packet` until the ACK of `block` arrives, at most
    /// `config.max_tries` times. An older ACK (a duplicate) is not answered:
    /// resending on it would double every later packet (the Sorcerer's
    /// Apprentice bug, RFC 1123 4.2.3.1).
    async fn exchange(&self, packet: &[u8], block: u16, wait: Duration) -> Result<(), Outcome> {
        let mut buf = [0u8; 516];
        for _ in 0..self.config.max_tries {
            self.sock
                .send(packet)
                .await
                .map_err(|_| Outcome::Abandoned("the client cannot be reached"))?;
            let until = later(wait);
            loop {
                let n = match timeout_at(until, self.sock.recv(&mut buf)).await {
                    Err(_) => break, // resend
                    // ICMP port unreachable surfaces here: the client is gone.
                    Ok(Err(_)) => return Err(Outcome::Abandoned("the client went away")),
                    Ok(Ok(n)) => n,
                };
                match packet::parse(&buf[..n]) {
                    Ok(Packet::Ack(b)) if b == block => return Ok(()),
                    Ok(Packet::Error { code, message }) => {
                        tracing::debug!(client = %self.client, code, message, "tftp: client aborted");
                        return Err(Outcome::Abandoned("the client sent an ERROR"));
                    }
                    _ => self.stats.malformed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        Err(Outcome::Abandoned("the client stopped answering"))
    }

    async fn send_file(&self, opened: &Opened, n: &Negotiated) -> Outcome {
        let size = usize::from(n.blksize);
        let mut payload = vec![0u8; size];
        let mut offset = 0u64;
        let mut block: u16 = 0;
        loop {
            // Block numbers wrap to 0 after 65535 (what tftp-hpa and curl
            // expect), so files beyond 65535 blocks go through.
            block = block.wrapping_add(1);
            let left = opened.len - offset;
            let take16 = u16::try_from(left).map_or(n.blksize, |l| l.min(n.blksize));
            let take = usize::from(take16);
            let chunk = &mut payload[..take];
            // A positional read of at most 64 KiB: short enough to run on
            // the async task rather than a blocking thread.
            if let Err(e) = opened.data.read_exact_at(chunk, offset) {
                tracing::warn!(client = %self.client, offset, "tftp: read failed: {e}");
                let _ = self
                    .sock
                    .send(&packet::error(packet::ERR_UNDEFINED, "read error"))
                    .await;
                return Outcome::Abandoned("the file could not be read");
            }
            let datagram = packet::data(block, chunk);
            if let Err(o) = self.exchange(&datagram, block, n.retransmit).await {
                return o;
            }
            offset += u64::from(take16);
            self.stats
                .bytes
                .fetch_add(u64::from(take16), Ordering::Relaxed);
            if take < size {
                return Outcome::Completed;
            }
        }
    }
}
