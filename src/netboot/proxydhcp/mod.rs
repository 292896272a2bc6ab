//! A ProxyDHCP responder for Raspberry Pi 4/5 EEPROM bootloaders
//! (targets.md §4.1). It never hands out an address (yiaddr is always 0):
//! the LAN's DHCP server does that, and this server only tells a Pi in the
//! profile (by the serial in its option 97 GUID, or by its MAC) that it may
//! netboot and where the TFTP server is.
//!
//! # The reply, as dnsmasq sends it
//!
//! The reply is what dnsmasq 2.90 sends with `port=0`,
//! `dhcp-range=NET,proxy` and `pxe-service=0,"Raspberry Pi Boot"` (the
//! Raspberry Pi docs' setup, rfc2131.c's proxy branch), checked against
//! dnsmasq itself by tests/integration/netboot_dhcp.rs:
//!
//! - header: op 2; htype, hlen, hops, xid, secs, giaddr, chaddr copied;
//!   yiaddr, siaddr 0; sname, file empty; for a DISCOVER (or a client
//!   without an address) ciaddr 0 and the broadcast flag set;
//! - options, in this order: 53 (OFFER to a DISCOVER, ACK to a REQUEST);
//!   54 our address, which is where the Pi fetches its files by TFTP (the
//!   bootloader takes option 54 when option 43 matched); 60 `PXEClient`;
//!   97 the client's GUID echoed (first 17 bytes, only when it sent one);
//!   43 the PXE menu: discovery control 3, prompt "PXE" with timeout 0, boot
//!   menu item type 0 "Raspberry Pi Boot"; 82 echoed last when a relay
//!   agent added it; End; zero padding to 300 bytes.
//! - no option 66 and siaddr 0: dnsmasq sets neither without a `dhcp-boot`
//!   or option 66 line, and the Pi does not need them (option 54 names the
//!   server);
//! - sent from port 67 to 255.255.255.255:68 (dnsmasq: out of the
//!   interface the request came in on; here: out of our address's
//!   interface, see Sockets); to giaddr:67 when relayed; to ciaddr when the
//!   client has an address.
//!
//! dnsmasq answers a PXE REQUEST only on its boot-server port 4011, which a
//! Pi never uses; on port 67 this server acknowledges only a REQUEST that
//! names it in option 54, so it never races the LAN server's ACK.
//!
//! # Sockets
//!
//! A Pi without an address broadcasts, and Linux hands a datagram to
//! 255.255.255.255 only to sockets bound to the wildcard address, so one
//! socket listens on 0.0.0.0:67. Replies leave through a second socket
//! bound to our address and port 67: Linux sends a broadcast from a socket
//! bound to a local address out of that address's interface, which is the
//! interface the Pis are on. With `--interface` both sockets are also bound
//! to the device (SO_BINDTODEVICE), which also keeps requests from other
//! interfaces out. Unicast requests to our address land on the second
//! socket, so both are read.

pub mod decide;
pub mod pi;
pub mod wire;

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::task::Poll;
use thiserror::Error;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use crate::netboot::registry::{Protocol, Registry};
use decide::{Context, Decision, Ignored};

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Answer Pis that are not in the profile (their GUID says they are a
    /// Pi 4/5) too.
    pub any: bool,
    /// The port clients listen on, where replies go: 68, or N + 68 with
    /// `--port-base N` (the server itself is bound to N + 67).
    pub client_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            any: false,
            client_port: 68,
        }
    }
}

/// Counters a status page can show.
#[derive(Debug, Default)]
pub struct Stats {
    /// Replies sent.
    pub answered: AtomicU64,
    /// Well-formed requests not answered (not a Pi's PXE request, not in
    /// the profile, a REQUEST for another server).
    pub ignored: AtomicU64,
    /// Datagrams that were no DHCP request, dropped.
    pub malformed: AtomicU64,
    /// Replies the kernel would not send.
    pub send_failed: AtomicU64,
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum BindError {
    #[error(
        "cannot listen on port {port}/udp for ProxyDHCP: ports below 1024 need root or \
         CAP_NET_BIND_SERVICE (or choose other ports with --port-base)"
    )]
    Privileged { port: u16 },
    #[error(
        "cannot listen on {addr}/udp for ProxyDHCP: the port is in use (is a DHCP server \
         such as dnsmasq running on this machine?)"
    )]
    InUse { addr: SocketAddrV4 },
    #[error("cannot bind the ProxyDHCP sockets to interface {interface:?}: {error}")]
    Interface { interface: String, error: io::Error },
    #[error("cannot open the ProxyDHCP socket {addr}/udp: {error}")]
    Socket {
        addr: SocketAddrV4,
        error: io::Error,
    },
    #[error("the ProxyDHCP address must be this machine's own IPv4 address, not {addr}")]
    BadAddress { addr: Ipv4Addr },
    #[error("cannot answer DHCP as {addr}: no interface of this machine has that address")]
    NotLocal { addr: Ipv4Addr },
}

/// At most this many MACs are remembered to log an unknown client once;
/// past it the memory starts over (and each is logged once more).
const MAX_REMEMBERED: usize = 1024;
/// Large enough for any request: a DHCP message over Ethernet fits in
/// 1500 bytes, and a longer datagram is cut here and then fails to parse.
const RECV_BUF: usize = 4096;
/// Socket receive buffer: room for a burst of requests from a rack of Pis
/// powering on at once (or a flood, which is then dropped by the kernel
/// rather than queued in our memory).
const SO_RCVBUF: usize = 1 << 20;

/// A bound server; `run` serves until the future is dropped.
pub struct ProxyDhcp {
    listen: std::net::UdpSocket,
    reply: std::net::UdpSocket,
    server: Ipv4Addr,
    port: u16,
    stats: Arc<Stats>,
}

fn open(addr: SocketAddrV4, interface: Option<&str>) -> Result<std::net::UdpSocket, BindError> {
    let socket_err = |error| BindError::Socket { addr, error };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProtocol::UDP)).map_err(socket_err)?;
    s.set_reuse_address(true).map_err(socket_err)?;
    s.set_broadcast(true).map_err(socket_err)?;
    // A smaller buffer than asked for still works; only the burst it holds
    // shrinks.
    let _ = s.set_recv_buffer_size(SO_RCVBUF);
    if let Some(name) = interface {
        s.bind_device(Some(name.as_bytes()))
            .map_err(|error| BindError::Interface {
                interface: name.to_owned(),
                error,
            })?;
    }
    s.bind(&SocketAddr::V4(addr).into())
        .map_err(|error| match error.kind() {
            // Linux's default ip_unprivileged_port_start is 1024.
            io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
                BindError::Privileged { port: addr.port() }
            }
            io::ErrorKind::AddrInUse => BindError::InUse { addr },
            io::ErrorKind::AddrNotAvailable => BindError::NotLocal { addr: *addr.ip() },
            _ => BindError::Socket { addr, error },
        })?;
    s.set_nonblocking(true).map_err(socket_err)?;
    Ok(s.into())
}

impl ProxyDhcp {
    /// Opens the sockets: 0.0.0.0:`port` for broadcasts and `addr`:`port`
    /// for replies, both bound to `interface` when given. Port 0 (tests)
    /// picks a free port for the second and reuses it for the first.
    pub fn bind(addr: Ipv4Addr, port: u16, interface: Option<&str>) -> Result<Self, BindError> {
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            return Err(BindError::BadAddress { addr });
        }
        let reply = open(SocketAddrV4::new(addr, port), interface)?;
        let port = match reply.local_addr() {
            Ok(SocketAddr::V4(a)) => a.port(),
            _ => port,
        };
        let listen = open(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port), interface)?;
        Ok(Self {
            listen,
            reply,
            server: addr,
            port,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The port requests are read on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Reads requests and answers them until the future is dropped or a
    /// socket fails. Requests are handled one at a time on this task: each
    /// is a pure decision and one send, so nothing queues in memory.
    pub async fn run(self, registry: Arc<Registry>, config: Config) -> io::Result<()> {
        let listen = UdpSocket::from_std(self.listen)?;
        let reply = UdpSocket::from_std(self.reply)?;
        let mut state = Serving {
            ctx_server: self.server,
            port: self.port,
            config,
            registry,
            stats: self.stats,
            seen_unknown: HashSet::new(),
        };
        let mut buf = vec![0u8; RECV_BUF];
        let mut turn = false;
        loop {
            // Both sockets are polled, the one polled first alternating so
            // a flood on one cannot starve the other.
            turn = !turn;
            let (n, from) = std::future::poll_fn(|cx| {
                let order = if turn {
                    [&listen, &reply]
                } else {
                    [&reply, &listen]
                };
                for sock in order {
                    let mut rb = ReadBuf::new(&mut buf);
                    if let Poll::Ready(r) = sock.poll_recv_from(cx, &mut rb) {
                        return Poll::Ready(r.map(|from| (rb.filled().len(), from)));
                    }
                }
                Poll::Pending
            })
            .await?;
            let datagram = &buf[..n];
            let SocketAddr::V4(from) = from else {
                continue; // an IPv4 socket only hears IPv4
            };
            if let Some(answer) = state.handle(datagram, from) {
                match reply.send_to(&answer.bytes, answer.to).await {
                    Ok(_) => {
                        state.stats.answered.fetch_add(1, Ordering::Relaxed);
                        state.record(&answer, from);
                    }
                    Err(e) => {
                        state.stats.send_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(to = %answer.to, "dhcp: could not send the reply: {e}");
                    }
                }
            }
        }
    }
}

/// What `run` keeps between requests.
struct Serving {
    ctx_server: Ipv4Addr,
    port: u16,
    config: Config,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    /// MACs of unknown clients already logged.
    seen_unknown: HashSet<[u8; 6]>,
}

impl Serving {
    fn handle(&mut self, datagram: &[u8], from: SocketAddrV4) -> Option<decide::Answer> {
        let request = match wire::parse(datagram) {
            Ok(r) => r,
            Err(why) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, len = datagram.len(), "dhcp: dropped a malformed datagram: {why}");
                return None;
            }
        };
        let ctx = Context {
            registry: &self.registry,
            any: self.config.any,
            server: self.ctx_server,
            server_port: self.port,
            client_port: self.config.client_port,
        };
        match decide::decide(&request, from, ctx) {
            Decision::Answer(a) => Some(a),
            Decision::Ignore(why) => {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                self.log_ignored(&why, request.header.xid());
                None
            }
        }
    }

    fn log_ignored(&mut self, why: &Ignored, xid: u32) {
        match why {
            Ignored::Unknown { mac, serial } => {
                // Once per MAC: a Pi retries every few seconds for as long
                // as it is powered, and the log should say so once.
                let first = mac.is_none_or(|m| self.first_sighting(m));
                if first {
                    tracing::info!(
                        mac = mac.map(|m| crate::profile::net::MacAddr::from_octets(m).to_string()),
                        serial = serial.map(|s| s.to_string()),
                        "dhcp: not answering a Pi netboot request from a client that is not in \
                         the profile (add its serial or MAC, or serve --any)"
                    );
                }
            }
            other => tracing::debug!(xid, "dhcp: not answering: {other:?}"),
        }
    }

    /// Whether `mac` is new to the log; the memory of MACs is bounded.
    fn first_sighting(&mut self, mac: [u8; 6]) -> bool {
        if self.seen_unknown.len() >= MAX_REMEMBERED {
            self.seen_unknown.clear();
        }
        self.seen_unknown.insert(mac)
    }

    fn record(&self, answer: &decide::Answer, from: SocketAddrV4) {
        let served = answer.bytes.len() as u64; // a few hundred bytes
        match &answer.node {
            Some(node) => {
                tracing::info!(
                    node,
                    request = answer.request,
                    to = %answer.to,
                    "dhcp: answered a Pi's {} with the netboot offer", answer.request
                );
                self.registry.record(
                    node,
                    Protocol::Dhcp,
                    Some((*from.ip()).into()),
                    answer.request,
                    served,
                    0,
                );
            }
            None => tracing::info!(
                serial = answer.serial.map(|s| s.to_string()),
                request = answer.request,
                to = %answer.to,
                "dhcp: answered a Pi not in the profile (--any)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving() -> Serving {
        Serving {
            ctx_server: Ipv4Addr::new(10, 0, 0, 1),
            port: 67,
            config: Config::default(),
            registry: Arc::new(Registry::new(Vec::new())),
            stats: Arc::new(Stats::default()),
            seen_unknown: HashSet::new(),
        }
    }

    /// A Pi 4 DISCOVER from `mac`, laid out by hand.
    fn discover(mac: [u8; 6]) -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[..4].copy_from_slice(&[1, 1, 6, 0]);
        b[28..34].copy_from_slice(&mac);
        b[236..240].copy_from_slice(&[99, 130, 83, 99]);
        b.extend_from_slice(&[53, 1, 1, 93, 2, 0, 0, 97, 17, 0]);
        b.extend_from_slice(b"RPi4");
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&[60, 9]);
        b.extend_from_slice(b"PXEClient");
        b.push(255);
        b
    }

    #[test]
    fn unknown_clients_are_counted_logged_once_and_remembered_boundedly() {
        let mut s = serving();
        let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
        let n = 3 * MAX_REMEMBERED;
        for i in 0..n {
            let [.., a, b] = (i as u32).to_be_bytes();
            assert!(s.handle(&discover([2, 0, 0, 0, a, b]), from).is_none());
            assert!(s.seen_unknown.len() <= MAX_REMEMBERED);
        }
        assert_eq!(s.stats.ignored.load(Ordering::Relaxed), n as u64);
        assert!(s.first_sighting([9; 6]));
        assert!(!s.first_sighting([9; 6]), "a MAC is logged once");
        assert_eq!(s.handle(b"not dhcp", from), None);
        assert_eq!(s.stats.malformed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn with_any_a_pi_not_in_the_profile_is_answered() {
        let mut s = serving();
        s.config.any = true;
        let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
        let a = s
            .handle(&discover([2, 0, 0, 0, 0, 1]), from)
            .expect("an answer");
        assert_eq!(a.node, None);
        assert_eq!(a.to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    }
}
