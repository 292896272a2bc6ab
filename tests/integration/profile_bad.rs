//! Malformed profiles through the real binary: every one exits 1 with
//! file:line:column or node + field in its message, and nothing panics.
//! The committed cases and their expected fragments are listed in
//! tests/profiles/bad/INDEX; the large or binary ones are generated here.

use std::path::Path;

use crate::profile_support::{bin, repo, tempdir};

/// Runs `check` on `path`; asserts exit 1, `fragment` in stderr, no panic.
fn assert_refused(path: &Path, fragment: &str) {
    let out = bin()
        .arg("--profile")
        .arg(path)
        .arg("check")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
    assert!(
        stderr.contains(fragment),
        "{}: {fragment:?} not in:\n{stderr}",
        path.display()
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn every_committed_malformed_profile_is_refused() {
    let dir = repo().join("tests/profiles/bad");
    let index = std::fs::read_to_string(dir.join("INDEX")).expect("INDEX");
    let cases: Vec<(&str, &str)> = index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("file<TAB>fragment"))
        .collect();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let on_disk = std::fs::read_dir(&dir).expect("dir").filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
    });
    assert_eq!(
        on_disk.count(),
        cases.len(),
        "every fixture is listed in INDEX"
    );
    for (file, fragment) in cases {
        assert_refused(&dir.join(file), fragment);
    }
}

#[test]
fn binary_garbage_is_refused_with_a_position() {
    let dir = tempdir();
    let path = dir.path().join("garbage.yaml");
    // Deterministic bytes that are not UTF-8 (0xff never is).
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| u8::try_from((i * 7919 + 13) % 256).unwrap_or(0xff))
        .collect();
    std::fs::write(&path, bytes).expect("write");
    assert_refused(&path, "garbage.yaml:1:");
    let nul = dir.path().join("nul.yaml");
    std::fs::write(&nul, b"nodes:\n  - hostname: pi\0x\n").expect("write");
    assert_refused(&nul, "nul.yaml:2:");
}

#[test]
fn a_50_mb_profile_is_refused_quickly() {
    let dir = tempdir();
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(50 * 1024 * 1024).expect("sparse 50 MB file");
    let start = std::time::Instant::now();
    assert_refused(&path, "huge.yaml:1:1: profile is 52428800 bytes");
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let dir = tempdir();
    let path = dir.path().join("deep.yaml");
    let depth = 100_000;
    std::fs::write(
        &path,
        format!("nodes: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    )
    .expect("write");
    assert_refused(&path, "deep.yaml:1:");
}

#[test]
fn an_alias_bomb_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("bomb.yaml");
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("nodes: *a11\n");
    std::fs::write(&path, text).expect("write");
    assert_refused(&path, "bomb.yaml:");
}

#[test]
fn a_missing_profile_names_the_file() {
    let dir = tempdir();
    assert_refused(&dir.path().join("nope.yaml"), "no such profile");
}
