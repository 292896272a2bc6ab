//! The ProxyDHCP server of `netboot` against dnsmasq, the reference every
//! Pi netboot guide uses. Each test makes two network namespaces joined by
//! a veth pair (server 10.77.0.1/24, client 10.77.0.2/24, deleted on drop);
//! a scripted client (python3, netboot_dhcp_client.py) in the client
//! namespace broadcasts raw Pi 4 and Pi 5 DISCOVERs built here, byte by
//! byte, and prints the replies. dnsmasq (`port=0`,
//! `dhcp-range=10.77.0.0,proxy`, `pxe-service=0,"Raspberry Pi Boot"`) and
//! then our server, on a thread that joined the server namespace, answer
//! the same requests; the replies must be equal field by field and option
//! by option, and arrive from and to the same addresses.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homelab_image::netboot::proxydhcp::{Config, ProxyDhcp, Stats};
use homelab_image::netboot::registry::{NodeId, Registry};
use homelab_image::profile::net::MacAddr;
use homelab_image::profile::netboot::PiSerial;
use serde_json::{Value, json};

use crate::util::garbage;

const CLIENT_PY: &str = include_str!("netboot_dhcp_client.py");
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

const PI4_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x2e, 0xf8, 0xed];
const PI4_SERIAL: u32 = 0x5b15_4510;
const PI5_MAC: [u8; 6] = [0x2c, 0xcf, 0x67, 0xc4, 0xac, 0xa4];
const PI5_SERIAL: u32 = 0xbd98_9ae1;
const STRANGER_MAC: [u8; 6] = [0xe4, 0x5f, 0x01, 0xb7, 0x9d, 0xf1];
const STRANGER_SERIAL: u32 = 0x1234_abcd;

fn path_with_sbin() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .env("PATH", path_with_sbin())
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and a veth pair between them, deleted on drop.
struct NetPair {
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
}

impl NetPair {
    /// None (the test skips, saying why) without root or `ip netns`.
    fn new() -> Option<NetPair> {
        static N: AtomicUsize = AtomicUsize::new(0);
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: network namespaces need root");
            return None;
        }
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id(), n);
        let pair = NetPair {
            server_ns: format!("hld{id}s"),
            client_ns: format!("hld{id}c"),
            server_if: format!("hds{id}"),
            client_if: format!("hdc{id}"),
        };
        ip(&["netns", "add", &pair.server_ns]);
        ip(&["netns", "add", &pair.client_ns]);
        ip(&[
            "link",
            "add",
            &pair.server_if,
            "netns",
            &pair.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.client_if,
            "netns",
            &pair.client_ns,
        ]);
        for (ns, dev, addr) in [
            (&pair.server_ns, &pair.server_if, "10.77.0.1/24"),
            (&pair.client_ns, &pair.client_if, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Some(pair)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it
        // the peer.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .env("PATH", path_with_sbin())
                .status();
        }
    }
}

/// Our server on its own thread, inside the server namespace; stopped on
/// drop.
struct Ours {
    stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ours {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// With `bind_device`, the sockets are bound to the server's veth; without,
/// replies find the interface through the address they are sent from (the
/// server namespace has no default route, so a wrong guess fails to send).
fn start_ours(pair: &NetPair, registry: Arc<Registry>, any: bool, bind_device: bool) -> Ours {
    let ns_path = format!("/var/run/netns/{}", pair.server_ns);
    let iface = bind_device.then(|| pair.server_if.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        // setns moves only this thread; the sockets opened below live in
        // the server namespace.
        let ns = File::open(&ns_path).expect("opening the server namespace");
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("joining the server namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = ProxyDhcp::bind(SERVER_IP, 67, iface.as_deref()).expect("binding port 67");
        ready_tx.send(server.stats()).unwrap();
        rt.block_on(async move {
            let task = tokio::spawn(server.run(
                registry,
                Config {
                    any,
                    client_port: 68,
                },
            ));
            let _ = stop_rx.await;
            task.abort();
        });
    });
    let stats = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server thread bound its sockets");
    Ours {
        stats,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// dnsmasq as the Raspberry Pi docs configure it, killed on drop.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(pair: &NetPair, dir: &Path) -> Dnsmasq {
    let child = Command::new("ip")
        .env("PATH", path_with_sbin())
        .args(["netns", "exec", &pair.server_ns, "dnsmasq"])
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--log-dhcp",
            "--log-facility=-",
            "--dhcp-range=10.77.0.0,proxy",
            "--pxe-service=0,Raspberry Pi Boot",
        ])
        .arg(format!("--interface={}", pair.server_if))
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("dnsmasq.log")).unwrap())
        .spawn()
        .expect("starting dnsmasq");
    Dnsmasq(child)
}

/// A Pi bootloader's request, laid out by hand: the options a Pi 4 EEPROM
/// sends (RPi docs boot-net.adoc, dnsmasq logs of CM4s): 53, 55 (1, 3, 43,
/// 60, 66, 67, 128-135), 93 arch 0, 94 UNDI 2.1, 97 GUID, 60 PXEClient.
fn pi_request(kind: u8, xid: u32, mac: [u8; 6], fourcc: &[u8; 4], serial: u32) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[..4].copy_from_slice(&[1, 1, 6, 0]);
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[8..10].copy_from_slice(&3u16.to_be_bytes()); // secs
    b[28..34].copy_from_slice(&mac);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(&[53, 1, kind]);
    b.extend_from_slice(&[
        55, 14, 1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135,
    ]);
    b.extend_from_slice(&[93, 2, 0, 0, 94, 3, 1, 2, 1]);
    b.extend_from_slice(&[97, 17, 0]);
    b.extend_from_slice(fourcc);
    b.extend_from_slice(&0x00c0_3111u32.to_le_bytes());
    b.extend_from_slice(&mac[2..]);
    b.extend_from_slice(&serial.to_le_bytes());
    let vendor = b"PXEClient:Arch:00000:UNDI:002001";
    b.push(60);
    b.push(vendor.len() as u8);
    b.extend_from_slice(vendor);
    b.push(255);
    // Pad like a real client to at least a 300-byte BOOTP message.
    if b.len() < 300 {
        b.resize(300, 0);
    }
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs the scripted client in the client namespace and returns the
/// replies it printed.
fn client(pair: &NetPair, dir: &Path, spec: Value) -> Vec<Value> {
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT_PY).unwrap();
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = Command::new("ip")
        .env("PATH", path_with_sbin())
        .args(["netns", "exec", &pair.client_ns, "/usr/bin/python3"])
        .arg(&script)
        .arg(&pair.client_if)
        .arg(&spec_path)
        .output()
        .expect("running the DHCP client");
    assert!(
        out.status.success(),
        "the DHCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("the client's JSON")
}

fn reply_for(replies: &[Value], xid: u32) -> Option<&Value> {
    replies.iter().find(|r| r["xid"] == json!(xid))
}

fn registry() -> Registry {
    Registry::new(vec![
        NodeId {
            name: "pi4".into(),
            serial: Some(PiSerial::parse(&format!("{PI4_SERIAL:08x}")).unwrap()),
            mac: None,
            address: None,
        },
        NodeId {
            name: "pi5".into(),
            serial: Some(PiSerial::parse(&format!("{PI5_SERIAL:08x}")).unwrap()),
            mac: Some(MacAddr::from_octets(PI5_MAC)),
            address: None,
        },
    ])
}

/// A BOOTREPLY split into its fields and its options in order.
#[derive(Debug)]
struct Parsed {
    fields: Vec<(&'static str, Vec<u8>)>,
    options: Vec<(u8, Vec<u8>)>,
    /// Bytes after End: all must be zero padding.
    trailer: Vec<u8>,
}

fn parse_reply(b: &[u8]) -> Parsed {
    assert!(b.len() >= 241, "a reply of {} bytes", b.len());
    let spans: [(&str, usize, usize); 14] = [
        ("op", 0, 1),
        ("htype", 1, 2),
        ("hlen", 2, 3),
        ("hops", 3, 4),
        ("xid", 4, 8),
        ("secs", 8, 10),
        ("flags", 10, 12),
        ("ciaddr", 12, 16),
        ("yiaddr", 16, 20),
        ("siaddr", 20, 24),
        ("giaddr", 24, 28),
        ("chaddr", 28, 44),
        ("sname", 44, 108),
        ("file", 108, 236),
    ];
    let fields = spans
        .iter()
        .map(|(n, a, z)| (*n, b[*a..*z].to_vec()))
        .chain([("cookie", b[236..240].to_vec())])
        .collect();
    let mut options = Vec::new();
    let mut at = 240;
    loop {
        match b[at] {
            0 => at += 1,
            255 => break,
            code => {
                let len = usize::from(b[at + 1]);
                options.push((code, b[at + 2..at + 2 + len].to_vec()));
                at += 2 + len;
            }
        }
    }
    Parsed {
        fields,
        options,
        trailer: b[at + 1..].to_vec(),
    }
}

/// Asserts two replies equal field by field, option by option (order
/// included), then byte for byte, with the datagram's addresses.
fn assert_same_reply(what: &str, dnsmasq: &Value, ours: &Value) {
    for key in ["src", "dst"] {
        assert_eq!(dnsmasq[key], ours[key], "{what}: the reply's {key} address");
    }
    let (d, o) = (
        unhex(dnsmasq["hex"].as_str().unwrap()),
        unhex(ours["hex"].as_str().unwrap()),
    );
    let (pd, po) = (parse_reply(&d), parse_reply(&o));
    for ((name, dv), (_, ov)) in pd.fields.iter().zip(&po.fields) {
        assert_eq!(dv, ov, "{what}: field {name}");
    }
    let codes = |p: &Parsed| p.options.iter().map(|(c, _)| *c).collect::<Vec<_>>();
    assert_eq!(
        codes(&pd),
        codes(&po),
        "{what}: option codes and their order"
    );
    for ((code, dv), (_, ov)) in pd.options.iter().zip(&po.options) {
        assert_eq!(dv, ov, "{what}: option {code}");
    }
    assert!(pd.trailer.iter().all(|&b| b == 0) && po.trailer.iter().all(|&b| b == 0));
    assert_eq!(d.len(), o.len(), "{what}: the reply's length (padding)");
    assert_eq!(d, o, "{what}: the reply's bytes");
}

#[test]
fn pi4_and_pi5_discovers_get_dnsmasqs_proxy_offer_and_strangers_none() {
    let Some(pair) = NetPair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pi4 = pi_request(1, 0x2653_0339, PI4_MAC, b"RPi4", PI4_SERIAL);
    let pi5 = pi_request(1, 0x4022_1a01, PI5_MAC, b"RPi5", PI5_SERIAL);
    let stranger = pi_request(1, 0x0bad_0001, STRANGER_MAC, b"RPi4", STRANGER_SERIAL);
    // The Pi's REQUEST for the LAN server's offer: not for a proxy.
    let mut for_router = pi_request(3, 0x0bad_0002, PI4_MAC, b"RPi4", PI4_SERIAL);
    let end = for_router.iter().rposition(|&b| b == 255).unwrap();
    for_router.splice(end..end, [54, 4].into_iter().chain(ROUTER_IP.octets()));
    let spec = |stranger_answered: bool| {
        json!({
            "wait": 15,
            "quiet": 2.5,
            "requests": [
                {"xid": 0x2653_0339u32, "hex": hex(&pi4), "answer": true},
                {"xid": 0x4022_1a01u32, "hex": hex(&pi5), "answer": true},
                {"xid": 0x0bad_0001u32, "hex": hex(&stranger), "answer": stranger_answered},
                {"xid": 0x0bad_0002u32, "hex": hex(&for_router), "answer": false},
            ],
        })
    };

    let from_dnsmasq = {
        let _d = start_dnsmasq(&pair, dir.path());
        client(&pair, dir.path(), spec(true))
    };
    let log = std::fs::read_to_string(dir.path().join("dnsmasq.log")).unwrap_or_default();
    // dnsmasq answers anyone: that the stranger's offer reached the client
    // shows a reply from ours would have too.
    for xid in [0x2653_0339, 0x4022_1a01, 0x0bad_0001] {
        assert!(
            reply_for(&from_dnsmasq, xid).is_some(),
            "dnsmasq did not answer xid {xid:#x}; its log:\n{log}"
        );
    }
    assert!(
        reply_for(&from_dnsmasq, 0x0bad_0002).is_none(),
        "dnsmasq answered a REQUEST for another server on port 67"
    );

    let served = Arc::new(registry());
    let (from_ours, stats) = {
        let ours = start_ours(&pair, Arc::clone(&served), false, true);
        let replies = client(&pair, dir.path(), spec(false));
        (replies, Arc::clone(&ours.stats))
    };
    for (what, xid) in [("Pi 4", 0x2653_0339), ("Pi 5", 0x4022_1a01)] {
        let d = reply_for(&from_dnsmasq, xid).unwrap();
        let o =
            reply_for(&from_ours, xid).unwrap_or_else(|| panic!("ours did not answer the {what}"));
        assert_same_reply(what, d, o);
    }
    // The facts the comparison rests on, stated once.
    let d = reply_for(&from_dnsmasq, 0x2653_0339).unwrap();
    assert_eq!(d["src"], json!("10.77.0.1:67"));
    assert_eq!(d["dst"], json!("255.255.255.255"));
    let codes: Vec<u8> = parse_reply(&unhex(d["hex"].as_str().unwrap()))
        .options
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(codes, vec![53, 54, 60, 97, 43]);

    assert!(
        reply_for(&from_ours, 0x0bad_0001).is_none(),
        "ours answered a Pi not in the profile"
    );
    assert!(
        reply_for(&from_ours, 0x0bad_0002).is_none(),
        "ours answered a REQUEST for the router"
    );
    assert!(stats.answered.load(Ordering::Relaxed) >= 2);
    assert!(
        stats.ignored.load(Ordering::Relaxed) >= 2,
        "the stranger and the REQUEST"
    );
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    // Each node's answer is on the status page's record.
    for view in served.snapshot() {
        assert!(
            view.dhcp.requests >= 1,
            "{}: no DHCP answer recorded",
            view.name
        );
        assert_eq!(
            view.dhcp.last_what.as_deref(),
            Some("DISCOVER"),
            "{}",
            view.name
        );
    }
}

/// The malformed datagrams: truncated, garbage, wrong op, option lengths
/// past the datagram, options cut before their length byte, fixed-size
/// options of the wrong size; each kind 200 times with varying bytes.
fn malformed(n: usize) -> Vec<Vec<u8>> {
    let good = pi_request(1, 0x7777_0000, PI4_MAC, b"RPi4", PI4_SERIAL);
    let opts_start = 240;
    (0..n)
        .map(|i| {
            let salt = i as u64 + 1;
            let mut b = good.clone();
            b[4..8].copy_from_slice(&(0x7777_0000u32 + i as u32).to_be_bytes());
            match i % 6 {
                // Truncated inside the header.
                0 => b.truncate(i % 240),
                // Garbage that cannot carry the cookie.
                1 => {
                    b = garbage(1 + i % 600, salt);
                    if b.len() >= 240 {
                        b[236] = 0;
                    }
                }
                // A BOOTREPLY (or any op but 1) sent to the server port.
                2 => b[0] = [0u8, 2, 3, 255][i % 4],
                // An option claiming 255 bytes near the datagram's end,
                // after some well-formed ones.
                3 => {
                    b.truncate(opts_start + 3);
                    for _ in 0..i % 4 {
                        b.extend_from_slice(&[94, 3, 1, 2, 1]);
                    }
                    b.extend_from_slice(&[60, 255]);
                    b.extend(std::iter::repeat_n(b'P', i % 40));
                }
                // An option cut before its length byte, after well-formed ones.
                4 => {
                    b.truncate(opts_start + 3);
                    for _ in 0..i % 5 {
                        b.extend_from_slice(&[60, 3, b'a', b'b', b'c']);
                    }
                    b.push(97);
                }
                // Option 53 of the wrong size.
                _ => {
                    b[opts_start + 1] = 2 + (i % 3) as u8;
                }
            }
            b
        })
        .collect()
}

#[test]
fn a_thousand_malformed_datagrams_are_counted_and_a_discover_after_them_answered() {
    let Some(pair) = NetPair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ours = start_ours(&pair, Arc::new(registry()), false, false);
    let bad = malformed(1000);
    // Batches of 50, alternately broadcast (read by the wildcard socket)
    // and sent to our address (read by the reply socket), each followed by
    // a probe DISCOVER to the same place that must be answered.
    let batches: Vec<Value> = bad
        .chunks(50)
        .enumerate()
        .map(|(i, chunk)| {
            let to = if i % 2 == 0 {
                "255.255.255.255"
            } else {
                "10.77.0.1"
            };
            let xid = 0x0070_0be0 + i as u32;
            let probe = pi_request(1, xid, PI4_MAC, b"RPi4", PI4_SERIAL);
            json!({
                "to": to,
                "packets": chunk.iter().map(|b| hex(b)).collect::<Vec<_>>(),
                "probe": {"xid": xid, "hex": hex(&probe)},
            })
        })
        .collect();
    let n_batches = batches.len();
    let good = pi_request(1, 0x600d_0001, PI5_MAC, b"RPi5", PI5_SERIAL);
    let replies = client(
        &pair,
        dir.path(),
        json!({
            "wait": 60,
            "quiet": 0,
            "batches": batches,
            "requests": [{"xid": 0x600d_0001u32, "hex": hex(&good), "answer": true}],
        }),
    );
    assert!(
        reply_for(&replies, 0x600d_0001).is_some(),
        "the DISCOVER after the malformed burst got no answer"
    );
    assert_eq!(ours.stats.malformed.load(Ordering::Relaxed), 1000);
    assert_eq!(ours.stats.ignored.load(Ordering::Relaxed), 0);
    assert_eq!(
        replies.len(),
        n_batches + 1,
        "each probe and the DISCOVER answered"
    );
    assert!(ours.stats.answered.load(Ordering::Relaxed) > n_batches as u64);
    assert_eq!(ours.stats.send_failed.load(Ordering::Relaxed), 0);
}

/// Runs `f` on a thread inside the pair's server namespace.
fn in_server_ns<R: Send + 'static>(pair: &NetPair, f: impl FnOnce() -> R + Send + 'static) -> R {
    let ns_path = format!("/var/run/netns/{}", pair.server_ns);
    std::thread::spawn(move || {
        let ns = File::open(&ns_path).expect("opening the server namespace");
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("joining the server namespace");
        f()
    })
    .join()
    .expect("the namespace thread")
}

#[test]
fn bind_errors_say_what_is_missing() {
    let Some(pair) = NetPair::new() else { return };
    // Without privilege (this thread only: rustix changes one thread's
    // uid, which drops its capabilities) port 67 is refused, and the error
    // says what would allow it.
    let unprivileged = in_server_ns(&pair, || {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(65534))
            .expect("dropping root on this thread");
        ProxyDhcp::bind(SERVER_IP, 67, None)
            .err()
            .map(|e| e.to_string())
    });
    let msg = unprivileged.expect("an unprivileged bind of port 67 succeeded");
    assert!(
        msg.contains("67/udp")
            && msg.contains("CAP_NET_BIND_SERVICE")
            && msg.contains("--port-base"),
        "{msg}"
    );
    // A port another program holds (without SO_REUSEADDR) is named as in use.
    let in_use = in_server_ns(&pair, || {
        let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let msg = ProxyDhcp::bind(SERVER_IP, port, None)
            .err()
            .map(|e| e.to_string());
        (port, msg)
    });
    let (port, msg) = in_use;
    let msg = msg.expect("binding a held port succeeded");
    assert!(
        msg.contains(&format!("10.77.0.1:{port}")) && msg.contains("in use"),
        "{msg}"
    );
    // An interface that does not exist is named.
    let msg = in_server_ns(&pair, || {
        ProxyDhcp::bind(SERVER_IP, 0, Some("nosuch0"))
            .err()
            .map(|e| e.to_string())
    })
    .expect("binding to a missing interface succeeded");
    assert!(msg.contains("\"nosuch0\""), "{msg}");
    let msg = ProxyDhcp::bind(Ipv4Addr::UNSPECIFIED, 0, None)
        .err()
        .map(|e| e.to_string());
    assert!(msg.is_some_and(|m| m.contains("0.0.0.0")));
}

/// The whole `serve` command inside the server namespace, on the real
/// ports: a scripted Pi 4 whose serial is in the profile gets the proxy
/// offer naming the server, and the status API counts the answer.
#[test]
fn serve_answers_a_profile_pi_in_a_namespace_and_counts_it() {
    let Some(pair) = NetPair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let profile = crate::netboot_serve::netboot_profile(
        dir.path(),
        &crate::util::fixture("ubuntu-raspi.img"),
        "pi4",
        "10.77.0.21/24, gateway: 10.77.0.254, interface: eth0",
        &format!("{PI4_SERIAL:08x}"),
    );
    let exe = assert_cmd::cargo::cargo_bin("homelab-image");
    let log = dir.path().join("serve.log");
    let mut serve = Command::new("ip")
        .env("PATH", path_with_sbin())
        .env("HOME", dir.path())
        .args(["netns", "exec", &pair.server_ns])
        .arg(&exe)
        .arg("--profile")
        .arg(&profile)
        .args(["serve", "--address", &SERVER_IP.to_string(), "--out"])
        .arg(dir.path().join("out"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let serve = Kill(&mut serve);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("serving pi4")
    {
        assert!(
            std::time::Instant::now() < deadline && serve.0.try_wait().unwrap().is_none(),
            "serve did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pi4 = pi_request(1, 0x2653_0339, PI4_MAC, b"RPi4", PI4_SERIAL);
    let replies = client(
        &pair,
        dir.path(),
        json!({"wait": 15, "quiet": 1, "requests": [{"xid": 0x2653_0339u32, "hex": hex(&pi4), "answer": true}]}),
    );
    let reply = reply_for(&replies, 0x2653_0339).expect("no offer from serve");
    let parsed = parse_reply(&unhex(reply["hex"].as_str().unwrap()));
    let menu = parsed
        .options
        .iter()
        .find(|(code, _)| *code == 43)
        .map(|(_, v)| v.clone());
    let menu = menu.expect("no option 43");
    assert!(
        menu.windows(17).any(|w| w == b"Raspberry Pi Boot"),
        "{menu:?}"
    );
    let server_id = parsed
        .options
        .iter()
        .find(|(code, _)| *code == 54)
        .map(|(_, v)| v.clone());
    assert_eq!(server_id, Some(SERVER_IP.octets().to_vec()));
    let api = Command::new("ip")
        .env("PATH", path_with_sbin())
        .args(["netns", "exec", &pair.server_ns, "curl", "-sS"])
        .arg(format!("http://{SERVER_IP}/api/nodes"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&api.stdout).unwrap();
    assert_eq!(v[0]["dhcp"]["requests"], 1, "{v}");
    assert_eq!(v[0]["dhcp"]["last_what"], "DISCOVER", "{v}");
}
