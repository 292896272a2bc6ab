//! The NBD server of `netboot` and the per-node `Delta` it serves, against
//! real clients over loopback: libnbd's `nbdinfo` (list, describe),
//! `qemu-img convert` (whole-disk reads) and `qemu-io` (writes, pattern
//! checks), plus a scripted client for what those never send on purpose
//! (bad flags, garbage, oversized and out-of-range requests, silence). The
//! lower layer is a file of patterned bytes that must never change; the
//! server binds 127.0.0.1 on an ephemeral port.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use homelab_image::netboot::delta::{Delta, DeltaError, DeltaSpec};
use homelab_image::netboot::disk::Disk;
use homelab_image::netboot::nbd::proto;
use homelab_image::netboot::nbd::{Config, ProfileExports, Server, Stats};
use homelab_image::netboot::registry::{NodeId, Registry};

use crate::util::{garbage, run_ok, stdout_of};

/// 4 MiB and three sectors: not a whole number of the delta's 4 KiB blocks.
const SIZE: usize = 4 * 1024 * 1024 + 1536;

/// A server on its own thread and runtime, stopped (and its deltas flushed
/// and unlocked) when dropped.
struct Running {
    addr: SocketAddr,
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Running {
    fn url(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.addr)
    }
}

/// A lower layer of patterned, non-zero bytes.
fn lower_file(dir: &Path) -> PathBuf {
    let p = dir.join("lower.img");
    std::fs::write(&p, garbage(SIZE, 0x00c0_ffee)).unwrap();
    p
}

fn delta(
    deltas: &Path,
    node: &str,
    lower: &Path,
    identity: &str,
    reset: bool,
) -> Result<Delta, DeltaError> {
    let file = std::fs::File::open(lower).unwrap();
    Delta::open(DeltaSpec {
        dir: deltas,
        node,
        lower: Arc::new(file),
        size: SIZE as u64,
        identity,
        reset,
    })
}

/// Serves pi1 (address 127.0.0.1: the tests' own) and pi2 (10.0.0.22:
/// never the tests'), each a delta over `lower`.
fn start(deltas: &Path, lower: &Path, identity: &str, config: Config) -> Running {
    start_with(deltas, lower, identity, config, false)
}

/// `start`, with `any` as `serve --any` sets it.
fn start_with(deltas: &Path, lower: &Path, identity: &str, config: Config, any: bool) -> Running {
    let registry = Arc::new(Registry::new(vec![
        NodeId {
            name: "pi1".into(),
            serial: None,
            mac: None,
            address: Some(Ipv4Addr::LOCALHOST),
        },
        NodeId {
            name: "pi2".into(),
            serial: None,
            mac: None,
            address: Some(Ipv4Addr::new(10, 0, 0, 22)),
        },
    ]));
    let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
    for node in ["pi1", "pi2"] {
        let d = delta(deltas, node, lower, identity, false).expect("the delta opens");
        disks.insert(node.into(), Arc::new(d));
    }
    let exports = Arc::new(ProfileExports::new(disks, Arc::clone(&registry), any));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = rt
        .block_on(Server::bind(Ipv4Addr::LOCALHOST.into(), 0, config))
        .expect("binding 127.0.0.1:0");
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let reg = Arc::clone(&registry);
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let task = tokio::spawn(server.run(exports, reg));
            let _ = rx.await;
            task.abort();
            let _ = task.await;
        });
        drop(rt);
    });
    Running {
        addr,
        stats,
        registry,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// A client tool under a time limit, so a server bug fails the test
/// instead of hanging it.
fn tool(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.arg("120").arg(name).args(args);
    c
}

fn qemu_io(url: &str, commands: &[&str]) -> Output {
    let mut args = vec!["-f", "raw"];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(url);
    let out = run_ok(&mut tool("qemu-io", &args));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("failed") && !text.contains("error"),
        "qemu-io {commands:?}:\n{text}"
    );
    out
}

/// Reads the whole export with `qemu-img convert`.
fn convert(url: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join("out.raw");
    let _ = std::fs::remove_file(&out);
    run_ok(&mut tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            url,
            out.to_str().unwrap(),
        ],
    ));
    std::fs::read(&out).unwrap()
}

/// Waits up to 10 s for `f` (server-side effects land just after a
/// client exits).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nbdinfo_lists_the_exports_and_describes_size_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let list = |s: &Running| -> Vec<String> {
        let out = stdout_of(&mut tool(
            "nbdinfo",
            &["--list", "--json", &format!("nbd://{}", s.addr)],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("nbdinfo --json");
        v["exports"]
            .as_array()
            .expect("an exports array")
            .iter()
            .filter_map(|e| e["export-name"].as_str().map(str::to_owned))
            .collect()
    };
    let deltas = tmp.path().join("deltas");
    {
        // --any: every export for everyone.
        let s = start_with(&deltas, &lower, "id-1", Config::default(), true);
        assert_eq!(list(&s), ["pi1", "pi2"]);
    }
    // Without it a client is listed only the exports it may open: pi1
    // (address 127.0.0.1), not pi2 (10.0.0.22).
    let s = start(&deltas, &lower, "id-1", Config::default());
    assert_eq!(list(&s), ["pi1"]);

    let info = stdout_of(&mut tool("nbdinfo", &["--json", &s.url("pi1")]));
    let v: serde_json::Value = serde_json::from_str(&info).expect("nbdinfo --json");
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "pi1", "{info}");
    assert_eq!(e["export-size"], SIZE as u64, "{info}");
    // Exactly what we implement: writable, FLUSH, FUA, TRIM; nothing else.
    assert_eq!(e["is_read_only"], false, "{info}");
    assert_eq!(e["can_flush"], true, "{info}");
    assert_eq!(e["can_fua"], true, "{info}");
    assert_eq!(e["can_trim"], true, "{info}");
    assert_eq!(e["can_zero"], false, "{info}");
    assert_eq!(e["can_multi_conn"], false, "{info}");
    assert_eq!(e["block_size_maximum"], proto_max(), "{info}");
}

fn proto_max() -> u64 {
    u64::from(homelab_image::netboot::nbd::MAX_REQUEST)
}

#[test]
fn qemu_img_convert_reproduces_the_lower_image_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let s = start(
        &tmp.path().join("deltas"),
        &lower,
        "id-1",
        Config::default(),
    );
    let got = convert(&s.url("pi1"), tmp.path());
    assert!(
        got == std::fs::read(&lower).unwrap(),
        "the export differs from its lower layer"
    );
    // The registry saw the node read its disk from its address.
    eventually("the registry to count the bytes", || {
        let v = s.registry.snapshot();
        v[0].nbd.bytes_served >= SIZE as u64
    });
    let v = &s.registry.snapshot()[0];
    assert!(v.nbd.requests >= 1, "{v:?}");
    assert_eq!(v.seen_at, vec!["127.0.0.1".to_string()]);
    assert!(s.stats.bytes_read.load(Ordering::Relaxed) >= SIZE as u64);
}

#[test]
fn qemu_io_writes_land_in_the_delta_survive_a_restart_and_never_touch_the_lower_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let before = std::fs::read(&lower).unwrap();
    let deltas = tmp.path().join("deltas");
    let mut expected = before.clone();
    let tail = SIZE - 1000;
    {
        let s = start(&deltas, &lower, "id-1", Config::default());
        let url = s.url("pi1");
        qemu_io(
            &url,
            &[
                "write -P 0x5a 1M 64k",
                // Unaligned: read-modify-write of two partial blocks.
                "write -P 0xa5 4097 5000",
                // Into the short last block, to the end of the disk.
                &format!("write -P 0x3c {tail} 1000"),
                "flush",
            ],
        );
        expected[1 << 20..(1 << 20) + 65536].fill(0x5a);
        expected[4097..4097 + 5000].fill(0xa5);
        expected[tail..].fill(0x3c);
        let out = qemu_io(
            &url,
            &[
                "read -P 0x5a 1M 64k",
                "read -P 0xa5 4097 5000",
                &format!("read -P 0x3c {tail} 1000"),
            ],
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("read 65536/65536 bytes"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            convert(&url, tmp.path()) == expected,
            "the export lacks the writes"
        );
        assert!(s.stats.bytes_written.load(Ordering::Relaxed) >= 65536 + 5000 + 1000);
    }
    // The writes are in pi1's delta file, at their own offsets.
    let data = std::fs::read(deltas.join("pi1.delta")).unwrap();
    assert_eq!(data.len(), SIZE);
    assert!(data[1 << 20..(1 << 20) + 65536].iter().all(|&b| b == 0x5a));
    assert_eq!(
        &data[4096..4097],
        &before[4096..4097],
        "the partial block was not merged"
    );
    // A new server on the same delta directory serves the same disk.
    let s = start(&deltas, &lower, "id-1", Config::default());
    assert!(
        convert(&s.url("pi1"), tmp.path()) == expected,
        "the writes did not survive a restart"
    );
    drop(s);
    // pi2 shares the lower file but none of pi1's writes.
    assert!(
        std::fs::read(deltas.join("pi2.delta"))
            .unwrap()
            .iter()
            .all(|&b| b == 0),
        "pi1's writes reached pi2's delta"
    );
    assert!(
        std::fs::read(&lower).unwrap() == before,
        "the lower file changed"
    );
}

#[test]
fn a_changed_identity_is_refused_and_reset_starts_from_the_lower_image() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let deltas = tmp.path().join("deltas");
    {
        let s = start(&deltas, &lower, "base-a", Config::default());
        qemu_io(&s.url("pi1"), &["write -P 0x77 0 8k"]);
    }
    let e = delta(&deltas, "pi1", &lower, "base-b", false)
        .err()
        .expect("a refusal");
    let msg = e.to_string();
    assert!(
        msg.contains("pi1.id") && msg.contains("serve --reset pi1"),
        "{msg}"
    );
    // The refusal kept the old writes: the old identity still serves them.
    let d = delta(&deltas, "pi1", &lower, "base-a", false).unwrap();
    let mut first = vec![0u8; 8192];
    d.read_at(&mut first, 0).unwrap();
    assert!(first.iter().all(|&b| b == 0x77));
    drop(d);
    // Reset under the new identity: the writes are gone.
    for node in ["pi1", "pi2"] {
        drop(delta(&deltas, node, &lower, "base-b", true).unwrap());
    }
    let s = start(&deltas, &lower, "base-b", Config::default());
    assert!(convert(&s.url("pi1"), tmp.path()) == std::fs::read(&lower).unwrap());
}

#[test]
fn an_export_is_refused_to_an_address_that_is_not_its_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let s = start(&tmp.path().join("deltas"), &lower, "id", Config::default());
    let out = tool("nbdinfo", &[&s.url("pi2")]).output().unwrap();
    assert!(!out.status.success(), "pi2 was served to 127.0.0.1");
    let refused = s.stats.refused.load(Ordering::Relaxed);
    assert!(refused >= 1);
    // What the refusal says (libnbd does not print it): POLICY, with why.
    let mut c = Raw::connect(s.addr);
    let mut d = 3u32.to_be_bytes().to_vec();
    d.extend_from_slice(b"pi2");
    d.extend_from_slice(&0u16.to_be_bytes());
    c.option(proto::OPT_GO, &d);
    let (kind, why) = c.reply();
    let why = String::from_utf8_lossy(&why);
    assert_eq!(kind, proto::REP_ERR_POLICY, "{why}");
    assert!(why.contains("127.0.0.1") && why.contains("--any"), "{why}");
    drop(c);
    // NBD_OPT_EXPORT_NAME cannot carry an error: the server hangs up.
    let mut c = Raw::connect(s.addr);
    c.option(proto::OPT_EXPORT_NAME, b"pi2");
    assert!(c.closed(), "EXPORT_NAME pi2 was answered");
    eventually("the EXPORT_NAME refusal to be counted", || {
        s.stats.refused.load(Ordering::Relaxed) == refused + 2
    });
    // An unknown export is refused as unknown.
    let out = tool("nbdinfo", &[&s.url("pi9")]).output().unwrap();
    assert!(!out.status.success());
    // pi1's own address is served.
    run_ok(&mut tool("nbdinfo", &[&s.url("pi1")]));
}

/// A scripted client speaking just enough NBD to misbehave precisely.
struct Raw {
    s: TcpStream,
}

impl Raw {
    /// Connects and reads the greeting.
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = Raw { s };
        let g = r.read(18);
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        r
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    fn send(&mut self, b: &[u8]) {
        // The server may already have hung up: the test then sees EOF.
        let _ = self.s.write_all(b);
    }

    /// Client flags (fixed newstyle, no zeroes) then an option.
    fn option(&mut self, option: u32, data: &[u8]) {
        let mut m = 3u32.to_be_bytes().to_vec();
        m.extend_from_slice(b"IHAVEOPT");
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.send(&m);
    }

    /// One option reply: (type, data).
    fn reply(&mut self) -> (u32, Vec<u8>) {
        let h = self.read(20);
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        (kind, self.read(len as usize))
    }

    /// Completes NBD_OPT_GO for `name`.
    fn go(addr: SocketAddr, name: &str) -> Raw {
        let mut r = Raw::connect(addr);
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        r.option(proto::OPT_GO, &d);
        loop {
            let (kind, _) = r.reply();
            if kind == proto::REP_ACK {
                return r;
            }
            assert_eq!(kind, proto::REP_INFO, "GO {name} refused");
        }
    }

    fn request(&mut self, kind: u16, handle: u64, offset: u64, length: u32, data: &[u8]) {
        let mut m = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&handle.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(data);
        self.send(&m);
    }

    /// A simple reply: (error, handle).
    fn simple(&mut self) -> (u32, u64) {
        let h = self.read(16);
        assert_eq!(h[..4], proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    /// Whether the server closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

#[test]
fn malformed_handshakes_garbage_and_oversized_requests_are_counted_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let low = std::fs::read(&lower).unwrap();
    let config = Config {
        handshake_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let s = start(&tmp.path().join("deltas"), &lower, "id", config);
    let malformed = |s: &Running| s.stats.malformed.load(Ordering::Relaxed);

    // Unknown client flags.
    let mut c = Raw::connect(s.addr);
    c.send(&0xffff_fff0u32.to_be_bytes());
    assert!(c.closed());
    // Fixed newstyle, then an option without its magic.
    let mut c = Raw::connect(s.addr);
    c.send(&3u32.to_be_bytes());
    c.send(&garbage(64, 1));
    assert!(c.closed());
    // An option announcing 4 GiB of data.
    let mut c = Raw::connect(s.addr);
    let mut m = 3u32.to_be_bytes().to_vec();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&m);
    assert!(c.closed());
    // Fifty clients of pure garbage.
    for seed in 0..50 {
        let mut c = Raw::connect(s.addr);
        c.send(&garbage(300, 100 + seed));
        assert!(c.closed());
    }
    eventually("the malformed clients to be counted", || {
        malformed(&s) >= 53
    });

    // Silence: the handshake deadline lets it go.
    let mut c = Raw::connect(s.addr);
    let t = Instant::now();
    assert!(c.closed());
    assert!(t.elapsed() < Duration::from_secs(5));
    eventually("the timeout to be counted", || {
        s.stats.timeouts.load(Ordering::Relaxed) == 1
    });

    // Options we do not implement get ERR_UNSUP and the session goes on.
    let mut c = Raw::connect(s.addr);
    c.option(8, &[]); // NBD_OPT_STRUCTURED_REPLY
    assert_eq!(c.reply().0, proto::REP_ERR_UNSUP);
    c.send(b"IHAVEOPT");
    c.send(&proto::OPT_LIST.to_be_bytes());
    c.send(&4u32.to_be_bytes());
    c.send(b"junk");
    assert_eq!(c.reply().0, proto::REP_ERR_INVALID, "LIST with data");

    // Transmission: bad requests get error replies and the stream stays
    // in step.
    let mut c = Raw::go(s.addr, "pi1");
    c.request(proto::CMD_READ, 1, 0, 64 << 20, &[]);
    assert_eq!(c.simple(), (proto::EINVAL, 1), "an oversized READ");
    c.request(proto::CMD_READ, 2, SIZE as u64 - 10, 11, &[]);
    assert_eq!(c.simple(), (proto::EINVAL, 2), "a READ past the end");
    c.request(proto::CMD_READ, 3, u64::MAX - 1, 4096, &[]);
    assert_eq!(c.simple(), (proto::EINVAL, 3), "a READ whose end overflows");
    c.request(proto::CMD_WRITE, 4, SIZE as u64 - 100, 512, &[0x99; 512]);
    assert_eq!(c.simple(), (proto::ENOSPC, 4), "a WRITE past the end");
    c.request(6, 5, 0, 4096, &[]); // NBD_CMD_WRITE_ZEROES, never advertised
    assert_eq!(c.simple(), (proto::EINVAL, 5));
    c.request(proto::CMD_TRIM, 6, SIZE as u64, 1, &[]);
    assert_eq!(c.simple(), (proto::EINVAL, 6), "a TRIM past the end");
    c.request(proto::CMD_READ, 7, SIZE as u64 - 4096, 4096, &[]);
    assert_eq!(c.simple(), (0, 7));
    assert!(
        c.read(4096) == low[SIZE - 4096..],
        "the refused WRITE changed the disk"
    );
    // A WRITE too large to take: the server hangs up.
    c.request(proto::CMD_WRITE, 8, 0, 64 << 20, &[0; 1024]);
    assert!(c.closed(), "an oversized WRITE was not dropped");
    // A request without its magic.
    let mut c = Raw::go(s.addr, "pi1");
    c.send(&garbage(28, 9));
    assert!(c.closed());
    eventually("the dropped sessions to be counted", || malformed(&s) >= 55);
    assert_eq!(s.stats.oversized.load(Ordering::Relaxed), 2);
    assert!(s.stats.error_replies.load(Ordering::Relaxed) >= 6);

    // Still serving, and the disk is untouched.
    assert!(convert(&s.url("pi1"), tmp.path()) == low);
}

#[test]
fn connections_past_the_limit_are_closed_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let s = start(&tmp.path().join("deltas"), &lower, "id", config);
    let _a = Raw::go(s.addr, "pi1");
    let _b = Raw::connect(s.addr);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 18];
    assert!(
        matches!(c.read(&mut b), Ok(0) | Err(_)),
        "a third client was greeted"
    );
    assert_eq!(s.stats.busy.load(Ordering::Relaxed), 1);
    drop((_a, _b));
    // The slots come back when the sessions end.
    eventually("a slot to free up", || {
        tool("nbdinfo", &[&s.url("pi1")])
            .output()
            .unwrap()
            .status
            .success()
    });
}

#[test]
fn a_client_that_stalls_mid_request_is_dropped_and_its_buffer_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let low = std::fs::read(&lower).unwrap();
    // Room for one 1 MiB buffer at a time, and a short I/O limit.
    let config = Config {
        max_request: 1 << 20,
        buffer_budget: 1 << 20,
        io_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let s = start(&tmp.path().join("deltas"), &lower, "id", config);
    // A WRITE whose data stops coming holds the whole budget...
    let mut stalled = Raw::go(s.addr, "pi1");
    stalled.request(proto::CMD_WRITE, 1, 0, 1 << 20, &[0xab; 100]);
    std::thread::sleep(Duration::from_millis(200));
    // ...so this READ waits for it, and gets it when the I/O limit drops
    // the stalled client.
    let mut reader = Raw::go(s.addr, "pi1");
    let t = Instant::now();
    reader.request(proto::CMD_READ, 2, 0, 1 << 20, &[]);
    assert_eq!(reader.simple(), (0, 2));
    assert!(reader.read(1 << 20) == low[..1 << 20]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(stalled.closed(), "the stalled client was kept");
    // Half a request header, then silence: the same limit.
    let mut half = Raw::go(s.addr, "pi1");
    half.send(&proto::REQUEST_MAGIC.to_be_bytes());
    assert!(half.closed());
    // No request at all: the idle limit.
    let t = Instant::now();
    assert!(reader.closed());
    assert!(t.elapsed() < Duration::from_secs(5));
    eventually("three timeouts", || {
        s.stats.timeouts.load(Ordering::Relaxed) == 3
    });
    // None of the partial write reached the disk.
    assert!(convert(&s.url("pi1"), tmp.path()) == low);
}

#[test]
fn export_name_enters_transmission_and_abort_is_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = lower_file(tmp.path());
    let low = std::fs::read(&lower).unwrap();
    let s = start(&tmp.path().join("deltas"), &lower, "id", Config::default());
    // The old way in (nbd-client's fallback): size, flags, and, without
    // NO_ZEROES, 124 zero bytes.
    for (client_flags, zeroes) in [(1u32, 124), (3, 0)] {
        let mut c = Raw::connect(s.addr);
        let mut m = client_flags.to_be_bytes().to_vec();
        m.extend_from_slice(b"IHAVEOPT");
        m.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
        m.extend_from_slice(&3u32.to_be_bytes());
        m.extend_from_slice(b"pi1");
        c.send(&m);
        let head = c.read(10 + zeroes);
        assert_eq!(head[..8], (SIZE as u64).to_be_bytes());
        assert_eq!(head[8..10], proto::TRANSMISSION_FLAGS.to_be_bytes());
        assert!(head[10..].iter().all(|&b| b == 0));
        c.request(proto::CMD_READ, 42, 512, 1024, &[]);
        assert_eq!(c.simple(), (0, 42));
        assert!(c.read(1024) == low[512..1536]);
        c.request(proto::CMD_DISC, 43, 0, 0, &[]);
        assert!(c.closed(), "DISC did not close");
    }
    let mut c = Raw::connect(s.addr);
    c.option(proto::OPT_ABORT, &[]);
    assert_eq!(c.reply().0, proto::REP_ACK);
    assert!(c.closed());
    assert_eq!(s.stats.malformed.load(Ordering::Relaxed), 0);
}
