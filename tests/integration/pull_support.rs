//! Inputs for the `pull` tests: a small fake disk image with data, text and
//! zero runs; its xz (multi-block, by the real `xz -T2`), gzip and zstd
//! forms; and OpenPGP keys made by `gpg` in a private GNUPGHOME, which also
//! makes gpg the independent judge of the signatures we accept.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use homelab_image::source::Sha256;

use crate::util::{bin, garbage, run_ok};

/// 6 MiB: random blocks, zero runs (which must become holes) and text.
pub fn fake_image() -> &'static [u8] {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let mut img = Vec::with_capacity(6 << 20);
        let text: Vec<u8> = (0..)
            .flat_map(|i: u32| format!("line {i} of a compressible file\n").into_bytes())
            .take(256 << 10)
            .collect();
        for i in 0..8u64 {
            img.extend_from_slice(&garbage(256 << 10, 0x5eed + i));
            img.resize(img.len() + (384 << 10), 0);
            img.extend_from_slice(&text);
            // A partial block of zeros followed by data: not a hole.
            img.resize(img.len() + 1000, 0);
            img.extend_from_slice(&garbage(3096, 7 + i));
        }
        img.resize(6 << 20, 0);
        img
    })
}

pub fn sha(data: &[u8]) -> String {
    Sha256::of(data).to_string()
}

/// `data` compressed by the named tool: "xz" (multi-block), "gz", "zst".
pub fn compress(data: &[u8], kind: &str) -> Vec<u8> {
    let mut cmd = match kind {
        "xz" => {
            let mut c = Command::new("xz");
            c.args(["-T2", "--block-size=512KiB", "-0", "-c"]);
            c
        }
        "xz1" => {
            let mut c = Command::new("xz");
            c.args(["-T1", "-0", "-c"]);
            c
        }
        "gz" => {
            let mut c = Command::new("gzip");
            c.args(["-c", "-n"]);
            c
        }
        "zst" => {
            let mut c = Command::new("zstd");
            c.args(["-q", "-c"]);
            c
        }
        other => panic!("unknown compression {other}"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {kind} (scripts/test installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{kind} failed");
    out.stdout
}

pub fn xz_image() -> &'static [u8] {
    static XZ: OnceLock<Vec<u8>> = OnceLock::new();
    XZ.get_or_init(|| compress(fake_image(), "xz"))
}

/// A gpg home with three keys: `trusted` (exported to `trusted.asc`, given
/// to the binary with --trusted-key), `stranger`, and `subkeyed` (signs
/// with a subkey; exported to `subkeyed.asc`).
pub struct Keys {
    pub home: PathBuf,
    pub trusted_pub: PathBuf,
    /// "subkeyed": a certify-only primary key with a signing subkey.
    pub subkeyed_pub: PathBuf,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "gnupg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&home).unwrap();
        let mut perms = std::fs::metadata(&home).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(&home, perms).unwrap();
        for uid in [
            "trusted <trusted@example.invalid>",
            "stranger <stranger@example.invalid>",
        ] {
            gpg(&home, &["--quick-gen-key", uid, "ed25519", "sign", "never"]);
        }
        let trusted_pub = home.join("trusted.asc");
        let out = gpg(&home, &["--armor", "--export", "trusted@example.invalid"]);
        std::fs::write(&trusted_pub, out).unwrap();
        // A key that cannot sign itself and signs with a bound subkey.
        gpg(
            &home,
            &[
                "--quick-gen-key",
                "subkeyed <sub@example.invalid>",
                "ed25519",
                "cert",
                "never",
            ],
        );
        let listing = String::from_utf8(gpg(
            &home,
            &["--with-colons", "--list-keys", "sub@example.invalid"],
        ))
        .unwrap();
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| f.len() == 40))
            .expect("fingerprint of the subkeyed key")
            .to_owned();
        gpg(
            &home,
            &["--quick-add-key", &fpr, "ed25519", "sign", "never"],
        );
        let subkeyed_pub = home.join("subkeyed.asc");
        let out = gpg(&home, &["--armor", "--export", "sub@example.invalid"]);
        std::fs::write(&subkeyed_pub, out).unwrap();
        kill_agent(&home);
        Keys {
            home,
            trusted_pub,
            subkeyed_pub,
        }
    })
}

impl Keys {
    /// A detached signature over `data` by `who` ("trusted", "stranger",
    /// "subkeyed").
    pub fn sign(&self, who: &str, data: &[u8], armor: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("data");
        std::fs::write(&input, data).unwrap();
        let out = dir.path().join("data.sig");
        let mut args = vec!["--local-user", who, "--detach-sign", "--output"];
        let out_s = out.to_str().unwrap().to_owned();
        args.push(&out_s);
        if armor {
            args.push("--armor");
        }
        let in_s = input.to_str().unwrap().to_owned();
        args.push(&in_s);
        // One signer at a time: each signature ends by killing the home's
        // agent, which would cut off another test thread's gpg mid-sign.
        static SIGNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = SIGNING.lock().unwrap_or_else(|e| e.into_inner());
        gpg(&self.home, &args);
        kill_agent(&self.home);
        std::fs::read(out).unwrap()
    }

    /// Whether gpg itself accepts `sig` over `data` (with both keys known).
    pub fn gpg_verifies(&self, sig: &[u8], data: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d"), data).unwrap();
        std::fs::write(dir.path().join("d.sig"), sig).unwrap();
        Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--verify"])
            .arg(dir.path().join("d.sig"))
            .arg(dir.path().join("d"))
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    run_ok(
        Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args),
    )
    .stdout
}

/// gpg starts an agent per home; do not leave them behind.
fn kill_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .output();
}

/// `pull -q`: only errors on stderr.
pub fn pull(cache: &Path, args: &[&str]) -> Output {
    pull_loud(cache, &[&["-q"], args].concat())
}

/// `pull` with its narrative on stderr.
pub fn pull_loud(cache: &Path, args: &[&str]) -> Output {
    bin()
        .env_remove("HOMELAB_MIRROR")
        .args(["pull", "--retry-delay", "0", "--read-timeout", "5"])
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("spawning homelab-image")
}

pub fn ok(out: &Output) -> PathBuf {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}");
    PathBuf::from(lines[0])
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Files in a cache subdirectory (`images`, `blobs`, `downloads`).
pub fn entries(cache: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join(sub))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The image is the fake image, sparse, and named and described by its hash.
pub fn assert_is_fake_image(path: &Path) {
    let want = fake_image();
    let got = std::fs::read(path).unwrap();
    assert!(
        got == want,
        "{} differs from the source image",
        path.display()
    );
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}.img", sha(want))
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["sha256"], sha(want));
    assert_eq!(meta["size"], want.len() as u64);
    // Holes: only 4 KiB blocks with data are allocated.
    let data_blocks = want
        .chunks(4096)
        .filter(|b| b.iter().any(|&x| x != 0))
        .count() as u64;
    let allocated = std::fs::metadata(path).unwrap().blocks() * 512;
    assert!(
        allocated <= data_blocks * 4096 + (64 << 10),
        "allocated {allocated} for {data_blocks} data blocks"
    );
    assert!(allocated < want.len() as u64 / 2 + (1 << 20));
    assert_eq!(meta["data_bytes"], data_blocks * 4096);
}

/// Writes `bytes` to `dir/name` and returns the path as a string.
pub fn local(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_owned()
}
