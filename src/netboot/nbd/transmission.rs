//! The transmission phase: requests one at a time (the spec lets a server
//! answer in order), simple replies only. Disk work runs on tokio's
//! blocking pool; every buffer is at most `Config::max_request` and paid
//! for from the server-wide buffer budget before it is allocated, so no
//! client decides how much memory we hold.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::proto::{self, *};
use super::{Ctx, End, Stream};
use crate::netboot::disk::Disk;
use crate::netboot::registry::Protocol;

/// How often a session's byte counts reach the registry.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes not yet added to the registry: one lock per second, not per
/// request.
struct Tally<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    served: u64,
    written: u64,
    since: Instant,
}

impl Tally<'_> {
    fn add(&mut self, served: u64, written: u64) {
        self.served += served;
        self.written += written;
        if self.since.elapsed() >= REPORT_EVERY {
            self.report();
        }
    }

    fn report(&mut self) {
        if self.served + self.written > 0 {
            self.ctx
                .registry
                .add_bytes(self.name, Protocol::Nbd, self.served, self.written);
        }
        self.served = 0;
        self.written = 0;
        self.since = Instant::now();
    }
}

/// The NBD error for a failed disk call.
fn nbd_error(e: &io::Error) -> u32 {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            ENOSPC
        }
        io::ErrorKind::InvalidInput => EINVAL,
        _ => EIO,
    }
}

/// Runs `f` on the disk off the async threads. A panic inside becomes EIO.
async fn on_disk<T: Send + 'static>(
    disk: &Arc<dyn Disk>,
    f: impl FnOnce(&dyn Disk) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let disk = Arc::clone(disk);
    tokio::task::spawn_blocking(move || f(disk.as_ref()))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the disk task failed: {e}"))))
}

/// Whether `[offset, offset + len)` lies inside a disk of `size`.
fn inside(offset: u64, len: u64, size: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= size)
}

/// What one request left the session to do.
enum Next {
    Continue,
    Stop(End),
}

struct Session<'a> {
    s: &'a mut Stream,
    peer: SocketAddr,
    ctx: &'a Ctx,
    disk: Arc<dyn Disk>,
    name: &'a str,
}

/// Serves requests until the client disconnects, breaks the protocol, or
/// goes quiet for `idle_timeout`.
pub async fn serve(
    s: &mut Stream,
    peer: SocketAddr,
    ctx: &Ctx,
    name: &str,
    disk: Arc<dyn Disk>,
) -> End {
    let mut tally = Tally {
        ctx,
        name,
        served: 0,
        written: 0,
        since: Instant::now(),
    };
    let mut session = Session {
        s,
        peer,
        ctx,
        disk,
        name,
    };
    let end = loop {
        let mut header = [0u8; REQUEST_LEN];
        // Waiting for a request has the long idle limit; once its first
        // byte arrives, the rest of it, its data and our reply share the
        // short I/O limit, so a client that stalls mid-request is let go.
        match timeout(
            ctx.config.idle_timeout,
            session.s.read_exact(&mut header[..1]),
        )
        .await
        {
            Err(_) => break End::Timeout("no request within the idle timeout"),
            Ok(Err(e)) => break End::from(e),
            Ok(Ok(_)) => {}
        }
        let step = timeout(ctx.config.io_timeout, async {
            session.s.read_exact(&mut header[1..]).await?;
            let Some(request) = proto::parse_request(&header) else {
                return Ok(Next::Stop(End::Malformed(
                    "a request without the request magic".into(),
                )));
            };
            ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
            session.handle(request, &mut tally).await
        })
        .await;
        match step {
            Err(_) => break End::Timeout("a request was not completed within the I/O timeout"),
            Ok(Err(end)) => break end,
            Ok(Ok(Next::Stop(end))) => break end,
            Ok(Ok(Next::Continue)) => {}
        }
    };
    tally.report();
    end
}

impl Session<'_> {
    async fn reply(&mut self, error: u32, handle: u64) -> Result<Next, End> {
        if error != 0 {
            self.ctx.stats.error_replies.fetch_add(1, Ordering::Relaxed);
        }
        self.s
            .write_all(&proto::simple_reply(error, handle))
            .await?;
        Ok(Next::Continue)
    }

    /// Replies with the error of a failed disk call, logging what failed.
    async fn failed(&mut self, what: &str, r: &proto::Request, e: &io::Error) -> Result<Next, End> {
        tracing::warn!(
            peer = %self.peer,
            export = self.name,
            offset = r.offset,
            length = r.length,
            "nbd: {what} failed: {e}"
        );
        self.reply(nbd_error(e), r.handle).await
    }

    async fn handle(&mut self, r: proto::Request, tally: &mut Tally<'_>) -> Result<Next, End> {
        let size = self.disk.size();
        let len = u64::from(r.length);
        let fua = r.flags & CMD_FLAG_FUA != 0;
        // FUA is the only flag we advertise; it is valid on every command.
        let unknown_flags = r.flags & !CMD_FLAG_FUA != 0;
        match r.kind {
            CMD_READ => {
                if r.length > self.ctx.config.max_request {
                    self.ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %self.peer, length = r.length, "nbd: refused an oversized READ");
                    return self.reply(EINVAL, r.handle).await;
                }
                if unknown_flags || !inside(r.offset, len, size) {
                    return self.reply(EINVAL, r.handle).await;
                }
                let _paid = self.ctx.pay(r.length).await?;
                // The reply header and the data in one buffer, one write;
                // the length is at most `max_request` (a u32: fits usize).
                let mut buf = vec![0u8; 16 + r.length as usize];
                let offset = r.offset;
                let read = on_disk(&self.disk, move |d| {
                    d.read_at(&mut buf[16..], offset).map(|()| buf)
                })
                .await;
                match read {
                    Ok(mut buf) => {
                        buf[..16].copy_from_slice(&proto::simple_reply(0, r.handle));
                        self.s.write_all(&buf).await?;
                        self.ctx.stats.bytes_read.fetch_add(len, Ordering::Relaxed);
                        tally.add(len, 0);
                        Ok(Next::Continue)
                    }
                    Err(e) => self.failed("READ", &r, &e).await,
                }
            }
            CMD_WRITE => {
                if r.length > self.ctx.config.max_request {
                    // Its data cannot be skipped within our bounds, and the
                    // stream is useless without skipping it: the spec lets
                    // us disconnect.
                    self.ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                    return Ok(Next::Stop(End::Malformed(format!(
                        "a WRITE of {} bytes (at most {})",
                        r.length, self.ctx.config.max_request
                    ))));
                }
                let _paid = self.ctx.pay(r.length).await?;
                // At most `max_request`, paid for above (a u32: fits usize).
                let mut data = vec![0u8; r.length as usize];
                self.s.read_exact(&mut data).await?;
                if unknown_flags {
                    return self.reply(EINVAL, r.handle).await;
                }
                if !inside(r.offset, len, size) {
                    // The spec's answer to a write past the end.
                    return self.reply(ENOSPC, r.handle).await;
                }
                let offset = r.offset;
                let wrote = on_disk(&self.disk, move |d| {
                    d.write_at(&data, offset)?;
                    if fua { d.flush() } else { Ok(()) }
                })
                .await;
                match wrote {
                    Ok(()) => {
                        self.ctx
                            .stats
                            .bytes_written
                            .fetch_add(len, Ordering::Relaxed);
                        tally.add(0, len);
                        self.reply(0, r.handle).await
                    }
                    Err(e) => self.failed("WRITE", &r, &e).await,
                }
            }
            CMD_DISC => Ok(Next::Stop(End::Disconnected)),
            CMD_FLUSH => {
                if unknown_flags {
                    return self.reply(EINVAL, r.handle).await;
                }
                match on_disk(&self.disk, |d| d.flush()).await {
                    Ok(()) => self.reply(0, r.handle).await,
                    Err(e) => self.failed("FLUSH", &r, &e).await,
                }
            }
            CMD_TRIM => {
                if unknown_flags || !inside(r.offset, len, size) {
                    return self.reply(EINVAL, r.handle).await;
                }
                let offset = r.offset;
                let trimmed = on_disk(&self.disk, move |d| {
                    d.trim(offset, len)?;
                    if fua { d.flush() } else { Ok(()) }
                })
                .await;
                match trimmed {
                    Ok(()) => self.reply(0, r.handle).await,
                    Err(e) => self.failed("TRIM", &r, &e).await,
                }
            }
            other => {
                // Nothing else was advertised; none of the others carries
                // data, so the stream stays in step.
                tracing::debug!(peer = %self.peer, command = other, "nbd: unsupported command");
                self.reply(EINVAL, r.handle).await
            }
        }
    }
}
