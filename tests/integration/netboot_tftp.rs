//! The TFTP server of `netboot` against real clients over loopback: curl's
//! `tftp://` (options: blksize, tsize) and tftp-hpa (plain RFC 1350), plus a
//! scripted client for what those cannot do on purpose (abort after the
//! tsize probe, never acknowledge, send garbage). Bytes are compared with
//! the served files; the server binds 127.0.0.1 on an ephemeral port.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use homelab_image::netboot::tftp::{Config, DirFiles, Server, Stats};

use crate::util::garbage;

/// A server on its own thread and runtime, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stats: Arc<Stats>,
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

fn start(root: &Path, config: Config) -> Running {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let files = Arc::new(DirFiles::new(root).expect("the served directory"));
    let server = rt
        .block_on(Server::bind("127.0.0.1:0".parse().unwrap(), files, config))
        .expect("binding 127.0.0.1:0");
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let task = tokio::spawn(server.run());
            let _ = rx.await;
            task.abort();
        });
    });
    Running {
        addr,
        stats,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// A served root with `name` holding `len` pseudo-random bytes, and a
/// `secret` file beside the root (the traversal target).
fn served(dir: &Path, files: &[(&str, usize)]) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (i, (name, len)) in files.iter().enumerate() {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, garbage(*len, 0x7f7f + i as u64)).unwrap();
    }
    std::fs::write(dir.join("secret"), b"not for tftp clients\n").unwrap();
    root
}

fn curl(addr: SocketAddr, path: &str, extra: &[&str], out: &Path) -> Output {
    Command::new("curl")
        .args(["-sS", "--path-as-is", "--max-time", "120"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(format!("tftp://{addr}/{path}"))
        .output()
        .expect("running curl")
}

/// tftp-hpa: `-m octet` unless `mode` says otherwise.
fn tftp_hpa(addr: SocketAddr, mode: &str, path: &str, out: &Path) -> Output {
    Command::new("tftp")
        .args(["-m", mode, &addr.ip().to_string(), &addr.port().to_string()])
        .arg("-c")
        .arg("get")
        .arg(path)
        .arg(out)
        .output()
        .expect("running tftp (tftp-hpa)")
}

fn same_bytes(got: &Path, want: &Path) {
    let g = std::fs::read(got).unwrap_or_default();
    let w = std::fs::read(want).unwrap();
    assert_eq!(g.len(), w.len(), "{} has the wrong length", got.display());
    assert!(g == w, "{} differs from {}", got.display(), want.display());
}

fn no_bytes(out: &Path) {
    let len = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "{} received bytes", out.display());
}

/// 33 MiB + a partial block: 67,587 blocks of 512, past the 65,535 a
/// 16-bit block number holds.
const ROLLOVER_LEN: usize = 33 * 1024 * 1024 + 1234;

#[test]
fn curl_fetch_past_block_number_rollover_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("big/initrd.img", ROLLOVER_LEN)]);
    let s = start(&root, Config::default());
    let out = dir.path().join("got");
    let o = curl(s.addr, "big/initrd.img", &["--tftp-blksize", "512"], &out);
    assert!(
        o.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    same_bytes(&out, &root.join("big/initrd.img"));
    assert_eq!(s.stats.completed.load(Ordering::Relaxed), 1);
}

#[test]
fn tftp_hpa_fetch_past_block_number_rollover_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("vmlinuz", ROLLOVER_LEN)]);
    let s = start(&root, Config::default());
    let out = dir.path().join("got");
    let o = tftp_hpa(s.addr, "octet", "vmlinuz", &out);
    assert!(o.status.success(), "tftp: {o:?}");
    same_bytes(&out, &root.join("vmlinuz"));
}

#[test]
fn curl_blksize_1468_and_8192_are_negotiated_and_identical() {
    let dir = tempfile::tempdir().unwrap();
    // One file ends mid-block, one on a block boundary for each size (the
    // last DATA is then empty).
    let root = served(
        dir.path(),
        &[("odd.bin", 3 * 1024 * 1024 + 77), ("even.bin", 1468 * 8192)],
    );
    let s = start(&root, Config::default());
    for blksize in ["1468", "8192"] {
        for name in ["odd.bin", "even.bin"] {
            let out = dir.path().join(format!("{name}.{blksize}"));
            let o = curl(s.addr, name, &["--tftp-blksize", blksize], &out);
            assert!(o.status.success(), "curl {name} {blksize}: {o:?}");
            same_bytes(&out, &root.join(name));
        }
    }
    assert_eq!(s.stats.completed.load(Ordering::Relaxed), 4);
}

#[test]
fn unknown_file_is_error_1_with_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("config.txt", 100)]);
    let s = start(&root, Config::default());
    let out = dir.path().join("got");
    let o = curl(s.addr, "abcd1234/start4.elf", &[], &out);
    // curl: 68 = CURLE_TFTP_NOTFOUND, the mapping of TFTP error 1.
    assert_eq!(o.status.code(), Some(68), "curl: {o:?}");
    no_bytes(&out);
    let out2 = dir.path().join("got2");
    let o = tftp_hpa(s.addr, "octet", "nope", &out2);
    let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Error code 1"), "tftp-hpa said: {text}");
    no_bytes(&out2);
}

#[test]
fn traversal_and_absolute_paths_are_access_violations_with_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("config.txt", 100)]);
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
    let s = start(&root, Config::default());
    for (i, path) in ["../secret", "a/../../secret", "link"].iter().enumerate() {
        let out = dir.path().join(format!("curl{i}"));
        let o = curl(s.addr, path, &[], &out);
        // curl: 69 = CURLE_TFTP_PERM, the mapping of TFTP error 2.
        assert_eq!(o.status.code(), Some(69), "curl {path}: {o:?}");
        no_bytes(&out);
    }
    let secret = dir.path().join("secret");
    for (i, path) in [secret.to_str().unwrap(), "../secret"].iter().enumerate() {
        let out = dir.path().join(format!("hpa{i}"));
        let o = tftp_hpa(s.addr, "octet", path, &out);
        let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
        assert!(text.contains("Error code 2"), "tftp-hpa {path}: {text}");
        no_bytes(&out);
    }
    // The server counts a refusal after sending it: the client can see
    // the error first (seen on a loaded machine), so wait a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.stats.refused.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(s.stats.refused.load(Ordering::Relaxed), 5);
    assert_eq!(s.stats.bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn netascii_mode_is_refused_with_error_4() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("config.txt", 100)]);
    let s = start(&root, Config::default());
    let out = dir.path().join("got");
    let o = tftp_hpa(s.addr, "netascii", "config.txt", &out);
    let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Error code 4"), "tftp-hpa said: {text}");
    no_bytes(&out);
}

/// A scripted client socket with a bounded wait.
fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [name, "octet"]
        .iter()
        .chain(options.iter().flat_map(|(a, b)| [a, b]))
    {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

fn recv(c: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70000];
    let (n, from) = c.recv_from(&mut buf).expect("an answer from the server");
    buf.truncate(n);
    (buf, from)
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tsize_probe_aborted_with_error_frees_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("start4.elf", 2_228_224)]);
    // One session at a time: a session the abort did not free would make
    // the next request "server busy".
    let config = Config {
        max_sessions: 1,
        ..Config::default()
    };
    let s = start(&root, config);
    for _ in 0..3 {
        let c = client();
        c.send_to(
            &rrq("start4.elf", &[("tsize", "0"), ("blksize", "1468")]),
            s.addr,
        )
        .unwrap();
        let (oack, tid) = recv(&c);
        assert_eq!(
            oack, b"\x00\x06tsize\x002228224\x00blksize\x001468\x00",
            "OACK"
        );
        assert_ne!(tid, s.addr, "the transfer runs on its own port");
        // The Pi's probe: abort after learning the size.
        c.send_to(b"\x00\x05\x00\x08probe done\x00", tid).unwrap();
    }
    wait_for("three abandoned transfers", || {
        s.stats.abandoned.load(Ordering::Relaxed) == 3
    });
    assert_eq!(
        s.stats.refused.load(Ordering::Relaxed),
        0,
        "a request was refused as busy"
    );
    let out = dir.path().join("got");
    let o = curl(s.addr, "start4.elf", &["--tftp-blksize", "1468"], &out);
    assert!(o.status.success(), "curl after the probes: {o:?}");
    same_bytes(&out, &root.join("start4.elf"));
}

#[test]
fn unacknowledged_block_is_resent_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("fixup4.dat", 5000)]);
    let config = Config {
        retransmit: Duration::from_millis(100),
        max_tries: 4,
        ..Config::default()
    };
    let s = start(&root, config);
    let c = client();
    c.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    c.send_to(&rrq("fixup4.dat", &[]), s.addr).unwrap();
    let mut copies = 0;
    let mut buf = [0u8; 1024];
    while let Ok((n, _)) = c.recv_from(&mut buf) {
        assert_eq!(&buf[..4], b"\x00\x03\x00\x01", "only DATA 1 is sent");
        assert_eq!(n, 516);
        copies += 1;
        assert!(copies <= 4, "more sends than max_tries");
    }
    assert_eq!(copies, 4, "DATA 1 sent max_tries times");
    wait_for("the silent transfer to be abandoned", || {
        s.stats.abandoned.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn malformed_datagrams_are_counted_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("config.txt", 4321)]);
    let s = start(&root, Config::default());
    let c = client();
    let junk = garbage(1000 * 40, 99);
    let mut sent = 0u64;
    for (i, chunk) in junk.chunks(40).enumerate() {
        let mut d = chunk[..i % 40].to_vec();
        // Opcodes 1/2 (requests) would be valid or open sessions: make the
        // first byte non-zero so every datagram is an unknown opcode or short.
        if let Some(b) = d.first_mut() {
            *b |= 0x80;
        }
        c.send_to(&d, s.addr).unwrap();
        sent += 1;
        // In batches of 50, so that none is lost to a full socket buffer
        // and the count must match.
        if sent.is_multiple_of(50) {
            wait_for("every datagram to be counted", || {
                s.stats.malformed.load(Ordering::Relaxed) == sent
            });
        }
    }
    assert_eq!(sent, 1000);
    let out = dir.path().join("got");
    let o = curl(s.addr, "config.txt", &[], &out);
    assert!(o.status.success(), "curl after the junk: {o:?}");
    same_bytes(&out, &root.join("config.txt"));
}

#[test]
fn duplicate_ack_is_not_answered_with_a_second_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("dtb", 2000)]);
    let s = start(&root, Config::default());
    let c = client();
    c.send_to(&rrq("dtb", &[]), s.addr).unwrap();
    let (d1, tid) = recv(&c);
    assert_eq!(&d1[..4], b"\x00\x03\x00\x01");
    // ACK 1 twice: answering both would send DATA 2 twice and, from then
    // on, every block twice (the Sorcerer's Apprentice).
    c.send_to(b"\x00\x04\x00\x01", tid).unwrap();
    c.send_to(b"\x00\x04\x00\x01", tid).unwrap();
    let (d2, _) = recv(&c);
    assert_eq!(&d2[..4], b"\x00\x03\x00\x02");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 600];
    assert!(
        c.recv_from(&mut buf).is_err(),
        "a second DATA 2 answered the duplicate ACK"
    );
}

#[test]
fn sessions_are_bounded_in_count_and_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("initrd.img", 1024 * 1024)]);
    let config = Config {
        max_sessions: 1,
        session_limit: Duration::from_millis(600),
        ..Config::default()
    };
    let s = start(&root, config);
    let slow = client();
    slow.send_to(&rrq("initrd.img", &[]), s.addr).unwrap();
    let (first, tid) = recv(&slow);
    assert_eq!(&first[..4], b"\x00\x03\x00\x01");
    // While that transfer lives, a second request is turned away.
    let other = client();
    other.send_to(&rrq("initrd.img", &[]), s.addr).unwrap();
    let (busy, from) = recv(&other);
    assert_eq!(from, s.addr);
    assert_eq!(&busy[..4], b"\x00\x05\x00\x00", "not ERROR 0: {busy:?}");
    // A client that acknowledges every block, slowly, is still cut off by
    // the session deadline: 2048 blocks at 50 ms would take 100 s.
    let started = Instant::now();
    let mut block = 1u16;
    slow.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 600];
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let ack = [0, 4, block.to_be_bytes()[0], block.to_be_bytes()[1]];
        slow.send_to(&ack, tid).unwrap();
        match slow.recv_from(&mut buf) {
            Ok(_) => block = block.wrapping_add(1),
            Err(_) => break,
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no deadline");
    }
    assert!(
        block < 100,
        "{block} blocks went out past a 600 ms deadline"
    );
    wait_for("the slow transfer to be abandoned", || {
        s.stats.abandoned.load(Ordering::Relaxed) == 1
    });
    // The freed slot serves the next client.
    let out = dir.path().join("got");
    let o = curl(s.addr, "initrd.img", &["--tftp-blksize", "8192"], &out);
    assert!(o.status.success(), "curl after the deadline: {o:?}");
}

#[test]
fn oack_names_only_accepted_options_with_granted_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(dir.path(), &[("cmdline.txt", 300)]);
    let config = Config {
        max_blksize: 1024,
        ..Config::default()
    };
    let s = start(&root, config);
    let ask = |opts: &[(&str, &str)]| {
        let c = client();
        c.send_to(&rrq("cmdline.txt", opts), s.addr).unwrap();
        let (answer, tid) = recv(&c);
        c.send_to(b"\x00\x05\x00\x00done\x00", tid).unwrap();
        answer
    };
    // blksize above the server's bound is lowered; timeout is echoed; an
    // unknown option and an out-of-range blksize are left out.
    assert_eq!(
        ask(&[("BLKSIZE", "1468"), ("timeout", "3"), ("windowsize", "4")]),
        b"\x00\x06blksize\x001024\x00timeout\x003\x00"
    );
    assert_eq!(
        ask(&[("blksize", "70000"), ("tsize", "0")]),
        b"\x00\x06tsize\x00300\x00"
    );
    // No accepted option: no OACK, straight to DATA 1 (RFC 2347).
    let plain = ask(&[("blksize", "7"), ("timeout", "0")]);
    assert_eq!(&plain[..4], b"\x00\x03\x00\x01");
    assert_eq!(plain.len(), 4 + 300);
}

#[test]
fn hundred_concurrent_curl_transfers_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let root = served(
        dir.path(),
        &[("abcd1234/start4.elf", 700_001), ("fixup4.dat", 5_447)],
    );
    let s = start(&root, Config::default());
    let mut children = Vec::new();
    for i in 0..100 {
        let name = if i % 2 == 0 {
            "abcd1234/start4.elf"
        } else {
            "fixup4.dat"
        };
        let out = dir.path().join(format!("got{i}"));
        let child = Command::new("curl")
            .args(["-sS", "--max-time", "120", "--tftp-blksize", "1468", "-o"])
            .arg(&out)
            .arg(format!("tftp://{}/{name}", s.addr))
            .spawn()
            .expect("running curl");
        children.push((child, out, name));
    }
    for (mut child, out, name) in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "curl for {}: {status}", out.display());
        same_bytes(&out, &root.join(name));
    }
    assert_eq!(s.stats.completed.load(Ordering::Relaxed), 100);
    assert_eq!(s.stats.refused.load(Ordering::Relaxed), 0);
}
