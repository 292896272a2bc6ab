//! `serve` as a user runs it, over loopback with `--port-base`: the boot
//! files a Pi fetches by TFTP come from the FAT inside the node's disk
//! (the cached base with the node's files laid on, no `.img` needed) and
//! must equal, byte for byte, what `build` puts in the node's image as
//! mtools reads it; `cmdline.txt` is served rewritten for an NBD root;
//! requests outside a node's prefix are refused; SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, fixture, run_ok};

const SERIAL: &str = "abcd1234";

/// A profile with one netbooted node over `base`.
fn profile(dir: &Path, base: &Path) -> PathBuf {
    netboot_profile(
        dir,
        base,
        "pi1",
        "127.0.0.21/8, gateway: 127.0.0.1, interface: eth0, mac: \"dc:a6:32:01:02:03\"",
        SERIAL,
    )
}

/// A profile with one netbooted Raspberry Pi 4 `node` over `base`, its
/// `network:` being `address: NETWORK` and its serial `serial`.
pub fn netboot_profile(
    dir: &Path,
    base: &Path,
    node: &str,
    network: &str,
    serial: &str,
) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(
        &p,
        format!(
            "defaults:
  image: {{os: ubuntu-24.04, path: {}}}
  board: rpi4
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
nodes:
  - hostname: {node}
    network: {{address: {network}}}
    netboot: {{serial: \"{serial}\", disk_size: 2GiB}}
",
            base.display()
        ),
    )
    .unwrap();
    p
}

/// A port base whose four ports (UDP for DHCP and TFTP, TCP for NBD and
/// HTTP) are free on 127.0.0.1 right now.
pub fn free_port_base() -> u16 {
    // Tests of one run start servers at once: each call takes its own
    // stride, so two cannot pick the same base before either binds.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16).wrapping_add(call.wrapping_mul(211)); // as: any bits will do
    for i in 0..200u16 {
        let base = 20000 + (seed.wrapping_add(i.wrapping_mul(97)) % 30000);
        let free = UdpSocket::bind(("127.0.0.1", base + 67)).is_ok()
            && UdpSocket::bind(("127.0.0.1", base + 69)).is_ok()
            && TcpListener::bind(("127.0.0.1", base + 80)).is_ok()
            && base
                .checked_add(10809)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port base");
}

/// A running `serve`, killed when dropped.
pub struct Serving {
    pub child: Child,
    pub base: u16,
    pub log: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on 127.0.0.1 and waits for its "serving" line.
pub fn start_serve(dir: &Path, profile: &Path, extra: &[&str]) -> Serving {
    let base = free_port_base();
    let log = dir.join("serve.log");
    let mut child = bin()
        .arg("--profile")
        .arg(profile)
        .args(["serve", "--address", "127.0.0.1", "--port-base"])
        .arg(base.to_string())
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra)
        .env("HOME", dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("serving ") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
            let _ = std::fs::write(&log2, &all);
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!(
            "serve did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    Serving { child, base, log }
}

fn curl(base: u16, path: &str, extra: &[&str], out: &Path) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(extra)
        .arg(format!("tftp://127.0.0.1:{}/{path}", base + 69))
        .arg("-o")
        .arg(out)
        .output()
        .expect("run curl")
}

/// Every file of the FAT at partition offset `at` of `image`, by path.
fn fat_files(image: &Path, at: u64) -> Vec<String> {
    let spec = format!("{}@@{at}", image.display());
    let out = run_ok(Command::new("mdir").args(["-/", "-b", "-i", &spec, "::/"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("::/").to_string())
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect()
}

fn mcopy(image: &Path, at: u64, path: &str, out: &Path) {
    let spec = format!("{}@@{at}", image.display());
    run_ok(
        Command::new("mcopy")
            .args(["-n", "-o", "-i", &spec])
            .arg(format!("::/{path}"))
            .arg(out),
    );
}

struct Setup {
    dir: tempfile::TempDir,
    image: PathBuf,
    profile: PathBuf,
    fat_at: u64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(dir.path(), &fixture("ubuntu-raspi.img"));
    let out = dir.path().join("out");
    run_ok(
        bin()
            .arg("--profile")
            .arg(&profile)
            .args(["build", "--node", "pi1", "--out"])
            .arg(&out)
            .env("HOME", dir.path()),
    );
    let image = out.join("pi1.img");
    let dump = run_ok(Command::new("sfdisk").arg("-J").arg(&image));
    let v: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    let start = v["partitiontable"]["partitions"][0]["start"]
        .as_u64()
        .unwrap();
    Setup {
        fat_at: start * 512,
        image,
        profile,
        dir,
    }
}

#[test]
fn every_boot_file_served_by_serial_equals_the_built_images_fat() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &[]);
    let files = fat_files(&s.image, s.fat_at);
    for must in [
        "start4.elf",
        "config.txt",
        "vmlinuz",
        "initrd.img",
        "cmdline.txt",
    ] {
        assert!(files.iter().any(|f| f == must), "{must} not in {files:?}");
    }
    let want = s.dir.path().join("want");
    let got = s.dir.path().join("got");
    let mut compared = 0;
    for f in files.iter().filter(|f| *f != "cmdline.txt") {
        mcopy(&s.image, s.fat_at, f, &want);
        for blksize in ["512", "1468", "8192"] {
            let _ = std::fs::remove_file(&got);
            let out = curl(
                serving.base,
                &format!("{SERIAL}/{f}"),
                &["--tftp-blksize", blksize],
                &got,
            );
            assert!(
                out.status.success(),
                "{f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                std::fs::read(&got).unwrap(),
                std::fs::read(&want).unwrap(),
                "{f}"
            );
        }
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} files compared");
    // Case does not matter on a FAT, and a Pi may ask either way.
    let _ = std::fs::remove_file(&got);
    let out = curl(
        serving.base,
        &format!("{}/CONFIG.TXT", SERIAL.to_uppercase()),
        &[],
        &got,
    );
    assert!(out.status.success());
    mcopy(&s.image, s.fat_at, "config.txt", &want);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
    // With TFTP_PREFIX=2 the Pi asks under its MAC.
    let _ = std::fs::remove_file(&got);
    let out = curl(serving.base, "dc-a6-32-01-02-03/config.txt", &[], &got);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
    // tftp-hpa (plain RFC 1350, 512-byte blocks) fetches the kernel too.
    let _ = std::fs::remove_file(&got);
    let hpa = Command::new("tftp")
        .args([
            "127.0.0.1",
            &(serving.base + 69).to_string(),
            "-m",
            "binary",
            "-c",
            "get",
        ])
        .arg(format!("{SERIAL}/vmlinuz"))
        .arg(&got)
        .output()
        .expect("run tftp");
    assert!(
        hpa.status.success(),
        "{}",
        String::from_utf8_lossy(&hpa.stderr)
    );
    mcopy(&s.image, s.fat_at, "vmlinuz", &want);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
}

#[test]
fn cmdline_is_served_rewritten_for_an_nbd_root_at_this_server() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &[]);
    let got = s.dir.path().join("cmdline");
    let out = curl(serving.base, &format!("{SERIAL}/cmdline.txt"), &[], &got);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&got).unwrap();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let nbd = format!("nbdroot=127.0.0.1:{}/pi1", serving.base + 10809);
    for want in [
        nbd.as_str(),
        "root=/dev/nbd0p2",
        "ip=127.0.0.21::127.0.0.1:255.0.0.0:pi1:eth0:off",
        "ds=nocloud",
        "rootwait",
    ] {
        assert_eq!(
            tokens.iter().filter(|t| **t == want).count(),
            1,
            "{want} in {text:?}"
        );
    }
    assert_eq!(
        tokens.iter().filter(|t| t.starts_with("root=")).count(),
        1,
        "{text:?}"
    );
    // The image's own line is what was edited: every other token kept.
    let want = s.dir.path().join("want");
    mcopy(&s.image, s.fat_at, "cmdline.txt", &want);
    let built = std::fs::read_to_string(&want).unwrap();
    for t in built
        .split_whitespace()
        .filter(|t| !t.starts_with("nbdroot="))
    {
        assert!(
            tokens.contains(&t),
            "{t} of the built image missing in {text:?}"
        );
    }
}

#[test]
fn requests_outside_a_served_prefix_are_refused_and_logged() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &[]);
    let got = s.dir.path().join("got");
    for path in [
        "deadbeef/config.txt",
        "config.txt",
        &format!("{SERIAL}/no-such-file"),
        &format!("{SERIAL}/overlays"),
    ] {
        let _ = std::fs::remove_file(&got);
        let out = curl(serving.base, path, &[], &got);
        assert!(!out.status.success(), "{path} was served");
        assert!(
            std::fs::metadata(&got).map_or(0, |m| m.len()) == 0,
            "{path}: bytes written"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&serving.log).unwrap_or_default();
        if log.contains("\"deadbeef\" is no served node's serial or MAC")
            && log.contains("no serial or MAC prefix")
        {
            break;
        }
        assert!(Instant::now() < deadline, "refusals not logged:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_stops_serve_cleanly() {
    let s = setup();
    let mut serving = start_serve(s.dir.path(), &s.profile, &[]);
    let pid = serving.child.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = serving.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(&serving.log).unwrap();
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn a_privileged_port_without_the_right_says_how_to_get_it() {
    // Only meaningful for a user who may not bind port 69: run as nobody.
    let s = setup();
    if Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("skipped: no setpriv");
        return;
    }
    let exe = assert_cmd::cargo::cargo_bin("homelab-image");
    std::fs::set_permissions(
        s.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .arg("--profile")
        .arg(&s.profile)
        .args(["serve", "--address", "127.0.0.1", "--out"])
        .arg(s.dir.path().join("out2"))
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root or CAP_NET_BIND_SERVICE"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn hundred_concurrent_transfers_from_the_image_are_identical() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &[]);
    let names = [
        "vmlinuz",
        "initrd.img",
        "start4.elf",
        "config.txt",
        "bcm2711-rpi-4-b.dtb",
    ];
    let want: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let p = s.dir.path().join(format!("want-{n}"));
            mcopy(&s.image, s.fat_at, n, &p);
            std::fs::read(p).unwrap()
        })
        .collect();
    let children: Vec<(usize, PathBuf, Child)> = (0..100)
        .map(|i| {
            let out = s.dir.path().join(format!("got-{i}"));
            let child = Command::new("curl")
                .args(["-sS", "--max-time", "120", "--tftp-blksize", "1468"])
                .arg(format!(
                    "tftp://127.0.0.1:{}/{SERIAL}/{}",
                    serving.base + 69,
                    names[i % names.len()]
                ))
                .arg("-o")
                .arg(&out)
                .stderr(Stdio::piped())
                .spawn()
                .expect("start curl");
            (i, out, child)
        })
        .collect();
    for (i, out, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "transfer {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            want[i % names.len()],
            "transfer {i}"
        );
    }
}

#[test]
fn a_file_past_block_number_rollover_is_served_whole_from_the_fat() {
    // 33 MiB at 512-byte blocks is 67584 blocks: the block number wraps.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.img");
    std::fs::copy(fixture("ubuntu-raspi.img"), &base).unwrap();
    let big = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..(33u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    run_ok(bin().arg("cp").arg(&base).arg("1").arg(&big).arg("/"));
    let profile = profile(dir.path(), &base);
    let serving = start_serve(dir.path(), &profile, &[]);
    let got = dir.path().join("got");
    let out = curl(
        serving.base,
        &format!("{SERIAL}/big.bin"),
        &["--max-time", "300"],
        &got,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&got).unwrap() == bytes,
        "the served bytes differ"
    );
}

/// `qemu-img convert` of the node's export into `out` (raw).
fn convert(base: u16, out: &Path) -> std::process::Output {
    Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(format!("nbd://127.0.0.1:{}/pi1", base + 10809))
        .arg(out)
        .output()
        .expect("run qemu-img")
}

/// `qemu-io -c WRITE` on the export at `url`, which must succeed.
fn qemu_io_write(url: &str, write: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", write, url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-io -r -c "read -P …"` on the export at `url`: the pattern must
/// be there.
fn qemu_io_read_back(url: &str, read: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-r", "-c", read, url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Pattern verification failed"),
        "{text}"
    );
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn the_nbd_export_is_the_built_image_then_zeros_to_disk_size() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &["--any"]);
    let got = s.dir.path().join("export.raw");
    let out = convert(serving.base, &got);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read(&s.image).unwrap();
    let meta = std::fs::metadata(&got).unwrap();
    assert_eq!(meta.len(), 2 << 30, "the export is netboot.disk_size");
    let mut head = vec![0u8; want.len()];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&got).unwrap(), &mut head, 0)
        .unwrap();
    assert!(
        head == want,
        "the export's first bytes differ from build's pi1.img"
    );
    // Past the image: zeros (qemu-img writes none, so the file has no
    // data there).
    let tail = run_ok(
        Command::new("qemu-img")
            .args(["map", "--output=json", "-f", "raw"])
            .arg(&got),
    );
    let map: serde_json::Value = serde_json::from_slice(&tail.stdout).unwrap();
    for ext in map.as_array().unwrap() {
        let start = ext["start"].as_u64().unwrap();
        if ext["data"].as_bool() == Some(true) {
            assert!(
                start < want.len() as u64,
                "data past the image at {start}: {ext}"
            );
        }
    }
}

#[test]
fn the_export_is_refused_to_an_address_that_is_not_the_nodes() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &[]);
    let out = Command::new("nbdinfo")
        .arg(format!("nbd://127.0.0.1:{}/pi1", serving.base + 10809))
        .output()
        .expect("run nbdinfo");
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn writes_land_in_the_delta_survive_a_restart_and_never_touch_the_base() {
    let s = setup();
    let base = fixture("ubuntu-raspi.img");
    let before = sha256(&base);
    let serving = start_serve(s.dir.path(), &s.profile, &["--any"]);
    let url = format!("nbd://127.0.0.1:{}/pi1", serving.base + 10809);
    // Into the root partition's first block and far past the image.
    for (pattern, at) in [("0x5a", "50M"), ("0xa5", "1G")] {
        qemu_io_write(&url, &format!("write -P {pattern} {at} 64k"));
    }
    drop(serving);
    let delta = s.dir.path().join("out/netboot/pi1.delta");
    let meta = std::fs::metadata(&delta).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let mut block = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&delta).unwrap(),
        &mut block,
        1 << 30,
    )
    .unwrap();
    assert!(
        block.iter().all(|&b| b == 0xa5),
        "the write is not in the delta"
    );

    let serving = start_serve(s.dir.path(), &s.profile, &["--any"]);
    let url = format!("nbd://127.0.0.1:{}/pi1", serving.base + 10809);
    for (pattern, at) in [("0x5a", "50M"), ("0xa5", "1G")] {
        qemu_io_read_back(&url, &format!("read -P {pattern} {at} 64k"));
    }
    drop(serving);
    assert_eq!(sha256(&base), before, "the base image changed");
}

#[test]
fn a_changed_profile_refuses_the_old_delta_until_reset() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &["--any"]);
    let url = format!("nbd://127.0.0.1:{}/pi1", serving.base + 10809);
    qemu_io_write(&url, "write -P 0x5a 1G 4k");
    drop(serving);
    // A new timezone changes the node's files, and so its disk.
    let text = std::fs::read_to_string(&s.profile).unwrap();
    std::fs::write(
        &s.profile,
        text.replace(
            "  board: rpi4\n",
            "  board: rpi4\n  timezone: Europe/Paris\n",
        ),
    )
    .unwrap();
    let out = bin()
        .arg("--profile")
        .arg(&s.profile)
        .args(["serve", "--address", "127.0.0.1", "--port-base"])
        .arg(free_port_base().to_string())
        .arg("--out")
        .arg(s.dir.path().join("out"))
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pi1") && err.contains("--reset"), "{err}");
    let serving = start_serve(s.dir.path(), &s.profile, &["--any", "--reset", "pi1"]);
    let url = format!("nbd://127.0.0.1:{}/pi1", serving.base + 10809);
    qemu_io_read_back(&url, "read -P 0 1G 4k");
}

fn http_get(base: u16, path: &str) -> String {
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .arg(format!("http://127.0.0.1:{}{path}", base + 80)),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_api_shows_what_each_protocol_served_the_node() {
    let s = setup();
    let serving = start_serve(s.dir.path(), &s.profile, &["--any"]);
    let got = s.dir.path().join("got");
    assert!(
        curl(serving.base, &format!("{SERIAL}/config.txt"), &[], &got)
            .status
            .success()
    );
    let out = convert(serving.base, &s.dir.path().join("export.raw"));
    assert!(out.status.success());
    // Counters reach the registry when a transfer or session ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&http_get(serving.base, "/api/nodes")).unwrap();
        let node = &v[0];
        assert_eq!(node["name"], "pi1");
        assert_eq!(node["serial"], SERIAL);
        let tftp = node["tftp"]["bytes_served"].as_u64().unwrap_or(0);
        let nbd = node["nbd"]["bytes_served"].as_u64().unwrap_or(0);
        if tftp == std::fs::metadata(&got).unwrap().len() && nbd >= 2 << 30 {
            assert_eq!(node["tftp"]["last_what"], "config.txt");
            break;
        }
        assert!(Instant::now() < deadline, "counters not updated: {node}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = http_get(serving.base, "/");
    assert!(page.contains("data-node=\"pi1\""), "{page}");
}

#[test]
fn status_only_takes_the_reports_of_sd_card_nodes_with_their_token() {
    let s = setup();
    let text = std::fs::read_to_string(&s.profile).unwrap();
    let base = free_port_base();
    let with_url = text.replace(
        "  board: rpi4\n",
        &format!(
            "  board: rpi4\n  status_url: http://127.0.0.1:{}\n",
            base + 80
        ),
    );
    std::fs::write(&s.profile, with_url).unwrap();
    // `build` makes the node's token.
    run_ok(
        bin()
            .arg("--profile")
            .arg(&s.profile)
            .args(["build", "--node", "pi1", "--out"])
            .arg(s.dir.path().join("out"))
            .env("HOME", s.dir.path()),
    );
    let token_file = s.dir.path().join(".homelab-state/nodes/pi1/status-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let mut child = bin()
        .arg("--profile")
        .arg(&s.profile)
        .args([
            "serve",
            "--status-only",
            "--address",
            "127.0.0.1",
            "--port-base",
        ])
        .arg(base.to_string())
        .env("HOME", s.dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/api/nodes/pi1/status", base + 80);
    let post = |auth: &str| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--retry",
                "20",
                "--retry-connrefused",
                "--retry-delay",
                "1",
            ])
            .args(["-H", "Content-Type: application/json", "-H"])
            .arg(format!("Authorization: Bearer {auth}"))
            .args(["-d", r#"{"state":"done","detail":"joined"}"#])
            .arg(&url)
            .output()
            .unwrap()
    };
    let bad = post("0000");
    let good = post(token.trim());
    let v: serde_json::Value = serde_json::from_str(&http_get(base, "/api/nodes")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "401");
    assert_eq!(String::from_utf8_lossy(&good.stdout), "204");
    assert_eq!(v[0]["state"], "done", "{v}");
}

#[test]
fn a_node_whose_initramfs_lacks_nbd_client_is_refused_naming_what_is_missing() {
    // A 22.04-like initrd: a real gzip cpio with no NBD pieces.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.img");
    std::fs::copy(fixture("ubuntu-raspi.img"), &base).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
    std::fs::write(tree.join("usr/sbin/busybox"), "\x7fELF").unwrap();
    let initrd = dir.path().join("initrd.img");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . | cpio --quiet -o -H newc | gzip -n > {}",
        tree.display(),
        initrd.display()
    )));
    run_ok(bin().arg("rm").arg(&base).arg("1").arg("/initrd.img"));
    run_ok(bin().arg("cp").arg(&base).arg("1").arg(&initrd).arg("/"));
    let profile = profile(dir.path(), &base);
    let out = bin()
        .arg("--profile")
        .arg(&profile)
        .args(["serve", "--address", "127.0.0.1", "--port-base"])
        .arg(free_port_base().to_string())
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "pi1",
        "initrd.img",
        "nbd-client",
        "scripts/local-top/nbd",
        "nbd kernel module",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_disk_size_below_the_image_is_refused_naming_the_size_to_give() {
    // A 1.5 GiB image (the fixture, then zeros) over a 1 GiB disk_size.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.img");
    std::fs::copy(fixture("ubuntu-raspi.img"), &base).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .unwrap()
        .set_len(3 << 29)
        .unwrap();
    let p = profile(dir.path(), &base);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("disk_size: 2GiB", "disk_size: 1GiB")).unwrap();
    let out = bin()
        .arg("--profile")
        .arg(&p)
        .args(["serve", "--address", "127.0.0.1", "--port-base"])
        .arg(free_port_base().to_string())
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("node pi1: netboot.disk_size is 1GiB but the image is 1610612736 bytes")
            && err.contains("raise disk_size to at least 1.5 GiB"),
        "{err}"
    );
}
