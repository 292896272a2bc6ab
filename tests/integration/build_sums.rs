//! What makes a warm build fast (issue 13 §7), judged by its results: the
//! bmap range sums kept beside a cached base give byte-identical bmaps to
//! sums taken from scratch (bmaptool checks every range against the image
//! too), a damaged sums file is ignored and written again, and the
//! whole-image `.sha256` is written only with `--sha256`, a stale one
//! removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build::profile;
use crate::util::{bin, fixture, run_ok};

/// A raw copy of the Ubuntu fixture and the same as `.xz` (a compressed
/// local base goes through the image cache). 32 MiB of bytes past its
/// partitions (mapped: outside every partition) give it bmap ranges that
/// no node touches; the fixture's own few MiB in use all lie in the grid
/// cells a node's files reach.
pub(crate) fn bases(dir: &Path) -> (PathBuf, PathBuf) {
    let raw = dir.join("base.img");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(fixture("ubuntu-raspi.img"))
            .arg(&raw),
    );
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&raw).unwrap();
        f.write_all(&crate::ext4_support::bytes(32 << 20, 11))
            .unwrap();
    }
    run_ok(Command::new("xz").args(["-0", "-T2", "-k"]).arg(&raw));
    (raw, dir.join("base.img.xz"))
}

fn build(p: &Path, cache: &Path, args: &[&str]) -> Output {
    bin()
        .env("HOMELAB_CACHE_DIR", cache)
        .arg("--profile")
        .arg(p)
        .args(["-v", "build"])
        .args(args)
        .output()
        .unwrap()
}

fn build_ok(p: &Path, cache: &Path, args: &[&str]) -> String {
    let out = build(p, cache, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed:\n{err}");
    err
}

/// The range sums files in the cache.
fn sums_files(cache: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(cache.join("images")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ranges"))
        .collect();
    v.sort();
    v
}

/// (ranges, hashed, known) from the `-v` log line of `node`.
fn hashed(err: &str, node: &str) -> (u64, u64, u64) {
    let line = err
        .lines()
        .find(|l| l.contains(&format!("{node}: ")) && l.contains(" bmap ranges, "))
        .unwrap_or_else(|| panic!("no range count for {node} in:\n{err}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let n = nums.len();
    (nums[n - 3], nums[n - 2], nums[n - 1])
}

fn same(a: &Path, b: &Path) {
    run_ok(Command::new("cmp").arg(a).arg(b));
}

/// bmaptool reads every mapped range of the image and checks its sum.
fn bmaptool_accepts(img: &Path, tmp: &Path) {
    let copy = tmp.join("bmaptool-copy.img");
    let _ = std::fs::remove_file(&copy);
    run_ok(
        Command::new("bmaptool")
            .arg("copy")
            .arg("--bmap")
            .arg(format!("{}.bmap", img.display()))
            .arg(img)
            .arg(&copy),
    );
    crate::bmap_dirty::assert_mapped_ranges_equal(img, &copy);
    let _ = std::fs::remove_file(&copy);
}

#[test]
fn a_cached_base_keeps_its_range_sums_and_builds_using_them_write_the_same_bmaps() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, xz) = bases(tmp.path());
    let cache = tmp.path().join("cache");
    let from_raw = profile(tmp.path(), "pi4-microcloud.yaml", &raw);
    let raw_out = tmp.path().join("raw");
    // A raw base used in place: every sum taken, nothing kept anywhere.
    for node in ["pi1", "pi2"] {
        let o = raw_out.to_str().unwrap();
        build_ok(&from_raw, &cache, &["--node", node, "--out", o]);
    }
    assert!(sums_files(&cache).is_empty(), "a raw base got a sums file");
    // The same profile and state directory, the base now from the cache.
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &xz);
    let cold = tmp.path().join("cold");
    let err = build_ok(
        &p,
        &cache,
        &["--node", "pi1", "--out", cold.to_str().unwrap()],
    );
    let (ranges, _, known) = hashed(&err, "pi1");
    assert_eq!(known, 0, "sums known before any were kept:\n{err}");
    let kept = sums_files(&cache);
    assert_eq!(kept.len(), 1, "{kept:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o644, 0, "sums file mode {mode:o}");
    let first = std::fs::read(&kept[0]).unwrap();
    // A second run takes the untouched ranges' sums from the file and
    // hashes only what the node changed: the same bmap to the byte.
    let warm = tmp.path().join("warm");
    let err = build_ok(
        &p,
        &cache,
        &["--node", "pi1", "--out", warm.to_str().unwrap()],
    );
    let (again, hashed_now, known) = hashed(&err, "pi1");
    assert_eq!(again, ranges);
    assert!(known > 0 && hashed_now < ranges / 2, "{err}");
    for f in ["pi1.img", "pi1.img.bmap"] {
        same(&cold.join(f), &warm.join(f));
        same(&raw_out.join(f), &warm.join(f));
    }
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        first,
        "rewritten needlessly"
    );
    bmaptool_accepts(&warm.join("pi1.img"), tmp.path());
    // Another node's map differs where its files are: it uses the sums
    // kept by pi1's build where its ranges are the same, and its bmap is
    // the one taken from scratch.
    let err = build_ok(
        &p,
        &cache,
        &["--node", "pi2", "--out", warm.to_str().unwrap()],
    );
    assert!(hashed(&err, "pi2").2 > 0, "{err}");
    for f in ["pi2.img", "pi2.img.bmap"] {
        same(&raw_out.join(f), &warm.join(f));
    }
    bmaptool_accepts(&warm.join("pi2.img"), tmp.path());
    // Pruning the entry takes its sums with it.
    let pruned = bin()
        .env("HOMELAB_CACHE_DIR", &cache)
        .args(["cache", "prune", "--all"])
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    assert!(sums_files(&cache).is_empty(), "{:?}", sums_files(&cache));
}

#[test]
fn a_damaged_range_sums_file_is_ignored_and_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, xz) = bases(tmp.path());
    let cache = tmp.path().join("cache");
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &xz);
    let good_out = tmp.path().join("good");
    build_ok(
        &p,
        &cache,
        &["--node", "pi1", "--out", good_out.to_str().unwrap()],
    );
    let kept = sums_files(&cache);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let good = std::fs::read_to_string(&kept[0]).unwrap();
    // A sum line: `FIRST LAST SHA256`, the third of the file.
    let line = good.lines().nth(2).unwrap();
    let sum = line.rsplit(' ').next().unwrap();
    let flipped = format!(
        "{}{}",
        if sum.starts_with('0') { '1' } else { '0' },
        &sum[1..]
    );
    let damaged = [
        ("truncated", good[..good.len() / 2].to_owned()),
        ("a sum edited by hand", good.replacen(sum, &flipped, 1)),
        ("not text", "\u{0}\u{ff}".repeat(100)),
    ];
    for (i, (what, text)) in damaged.iter().enumerate() {
        std::fs::write(&kept[0], text).unwrap();
        let out = tmp.path().join(format!("out{i}"));
        let err = build_ok(
            &p,
            &cache,
            &["--node", "pi1", "--out", out.to_str().unwrap()],
        );
        assert!(
            err.contains("ignoring the range sums") && err.contains(kept[0].to_str().unwrap()),
            "{what}: no warning naming the file:\n{err}"
        );
        assert_eq!(hashed(&err, "pi1").2, 0, "{what}: sums were trusted");
        same(&good_out.join("pi1.img.bmap"), &out.join("pi1.img.bmap"));
        assert_eq!(
            std::fs::read_to_string(&kept[0]).unwrap(),
            good,
            "{what}: not written again"
        );
    }
}

#[test]
fn the_image_sha256_and_xz_files_come_only_with_their_flags_and_stale_ones_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        &fixture("ubuntu-raspi.img"),
    );
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let r = build(&p, &cache, args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        serde_json::from_slice(&r.stdout).unwrap()
    };
    let with = json(&["--sha256", "--json", "--node", "pi1", "--out", o]);
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("pi1.img.sha256")
            .current_dir(&out),
    );
    let said = with[0]["sha256"].as_str().unwrap().to_owned();
    let file = std::fs::read_to_string(out.join("pi1.img.sha256")).unwrap();
    assert_eq!(file, format!("{said}  pi1.img\n"));
    // Without the flag: no whole-image pass, `null` in JSON, and the
    // older build's checksum file is gone rather than left beside an
    // image it may not match.
    let without = json(&["--json", "--node", "pi1", "--out", o]);
    assert!(without[0]["sha256"].is_null(), "{without}");
    assert!(!out.join("pi1.img.sha256").exists(), "stale .sha256 left");
    assert!(out.join("pi1.img.bmap").exists());
    // The text report names no digest it did not take.
    let r = build(&p, &cache, &["--node", "pi1", "--out", o]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success() && !text.contains("sha256"), "{text}");
    // The same for a compressed image: made with --compress, removed by a
    // build without it.
    build_ok(
        &p,
        &cache,
        &["--compress", "xz", "--node", "pi1", "--out", o],
    );
    assert!(out.join("pi1.img.xz").exists());
    build_ok(&p, &cache, &["--node", "pi1", "--out", o]);
    assert!(!out.join("pi1.img.xz").exists(), "stale .xz left");
}
