//! Shared test helpers: the fixture directory, running our binary and the
//! oracle tools, and small image surgery for bad-input tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory holding the generated fixture images. `scripts/test` makes
/// them once and sets `HOMELAB_FIXTURES`; otherwise the first test to ask
/// runs `scripts/make-fixtures` into cargo's target tmpdir.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HOMELAB_FIXTURES") {
            return PathBuf::from(dir);
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-fixtures");
        let out = Command::new(&script)
            .arg(&dir)
            .output()
            .expect("running scripts/make-fixtures");
        assert!(
            out.status.success(),
            "scripts/make-fixtures failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A fixture image by file name.
pub fn fixture(name: &str) -> PathBuf {
    let p = fixtures().join(name);
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// The committed 4096-byte-sector GPT image, decompressed into a tmpdir.
pub fn gpt4k(dir: &Path) -> PathBuf {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/committed/gpt-4k.img.gz");
    let out = dir.join("gpt-4k.img");
    let bytes = run_ok(Command::new("gzip").arg("-dc").arg(&gz)).stdout;
    std::fs::write(&out, bytes).unwrap();
    out
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_homelab-image"));
    c.env_remove("HOMELAB_PROFILE").env("NO_COLOR", "1");
    c
}

/// Runs our binary with `args` and returns its output, whatever the status.
pub fn hi(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawning homelab-image")
}

/// Runs our binary, asserting success, and returns stdout.
pub fn hi_ok(args: &[&str]) -> String {
    let out = hi(args);
    assert!(
        out.status.success(),
        "homelab-image {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs an oracle tool, asserting that it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} (is it installed? scripts/test installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// Asserts our binary failed with `code`, printed exactly one line of error
/// on stderr containing every one of `needles`, and did not panic.
pub fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}, stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "panic:\n{stderr}");
    if code == 1 {
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "more than one line:\n{stderr}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

/// A writable copy of a fixture in `dir`.
pub fn copy_fixture(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(name);
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(fixture(name))
            .arg(&dst),
    );
    dst
}

/// Overwrites bytes of `path` at `offset`.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Deterministic pseudo-random bytes (xorshift), for "garbage" inputs.
pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `sfdisk --json IMAGE` parsed.
pub fn sfdisk_json(image: &Path) -> serde_json::Value {
    let out = stdout_of(Command::new("sfdisk").arg("--json").arg(image));
    serde_json::from_str(&out).expect("sfdisk JSON")
}

/// `blkid -p -O OFFSET IMAGE` as KEY → value.
pub fn blkid_at(image: &Path, offset: u64) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", "-O", &offset.to_string()])
        .arg(image)
        .output()
        .expect("running blkid");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Copies the filesystem of a partition out of an image (for debugfs,
/// e2fsck and fsck.fat, which want a whole device).
pub fn extract_partition(image: &Path, start: u64, len: u64, dst: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut out = std::fs::File::create(dst).unwrap();
    std::io::copy(&mut f.take(len), &mut out).unwrap();
}

/// Partition `n`'s (start, size) in bytes according to our inspect JSON.
pub fn our_partition(image: &Path, n: u64) -> (u64, u64) {
    let json: serde_json::Value =
        serde_json::from_str(&hi_ok(&["inspect", "--json", image.to_str().unwrap()])).unwrap();
    let p = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == n)
        .unwrap_or_else(|| panic!("no partition {n}"));
    (
        p["start_bytes"].as_u64().unwrap(),
        p["size_bytes"].as_u64().unwrap(),
    )
}

/// A copy of the example profile `profiles/EXAMPLE` in `dir` whose nodes
/// all use `base` as image, with `image.os` replaced by `os` if given.
pub fn example_profile(
    dir: &std::path::Path,
    example: &str,
    os: Option<&str>,
    base: &std::path::Path,
) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("profiles")
        .join(example);
    let text = std::fs::read_to_string(src).unwrap();
    let os_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("os: "))
        .unwrap();
    let indent = &os_line[..os_line.len() - os_line.trim_start().len()];
    let os_text = os.map_or_else(|| os_line.to_owned(), |os| format!("{indent}os: {os}"));
    let text = text.replacen(
        os_line,
        &format!("{os_text}\n{indent}path: {}", base.display()),
        1,
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).unwrap();
    p
}
