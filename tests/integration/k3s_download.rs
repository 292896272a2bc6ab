//! The k3s download path (`source::k3s`) against the loopback server: a
//! release's binary is fetched only with its `sha256sum-<arch>.txt` (written
//! here by the real `sha256sum`), verified, cached by its SHA-256 and found
//! again without the network; every refusal (wrong checksum, a body cut
//! short, no checksum file, no line for the asset, something that is not a
//! checksum file, no such binary) leaves neither a blob nor a record. The
//! `cache` commands list, verify and prune these downloads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use homelab_image::k3s::{K3sArch, K3sVersion};
use homelab_image::source::fingerprint::Quick;
use homelab_image::source::http::{HttpOptions, Url};
use homelab_image::source::k3s::{
    K3sArtifact, K3sAsset, K3sFetchError, cached_k3s, ensure_k3s, entries,
};
use homelab_image::source::{Cache, Progress, Sha256};

use crate::http_server::{Route, Server};
use crate::util::{bin, garbage};

const VERSION: &str = "v1.31.4+k3s1";
/// The release's directory in a URL (`+` escaped, as upstream's are).
const DIR: &str = "/v1.31.4%2Bk3s1";

fn version() -> K3sVersion {
    K3sVersion::parse(VERSION).unwrap()
}

/// A stand-in for the k3s binary: 3 MiB and a bit, not a multiple of any
/// chunk size.
fn fake_k3s() -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01\x00".to_vec();
    b.extend(garbage((3 << 20) + 4321, 0x6b35));
    b
}

/// What `sha256sum` prints for `files` (name, bytes), written and hashed
/// in `dir`: the checksum file as upstream makes it.
fn sha256sum(dir: &Path, files: &[(&str, &[u8])]) -> Vec<u8> {
    let work = dir.join("sums");
    std::fs::create_dir_all(&work).unwrap();
    for (name, bytes) in files {
        std::fs::write(work.join(name), bytes).unwrap();
    }
    let out = Command::new("sha256sum")
        .args(files.iter().map(|(n, _)| *n))
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum failed");
    out.stdout
}

fn opts(mirror: &str) -> HttpOptions {
    HttpOptions {
        mirror: Some(Url::parse(mirror).unwrap()),
        retries: 1,
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(10),
        ..HttpOptions::default()
    }
}

fn fetch(
    cache: &Cache,
    server: &Server,
    arch: K3sArch,
    asset: K3sAsset,
) -> Result<K3sArtifact, K3sFetchError> {
    ensure_k3s(
        cache,
        &opts(&server.base),
        &version(),
        arch,
        asset,
        &Progress::quiet(),
    )
}

/// Serves the fake binary and a checksum file listing it (and an air-gap
/// tarball) as `release` of arm64; returns the binary.
fn serve_release(server: &Server, dir: &Path, prefix: &str) -> Vec<u8> {
    let bin = fake_k3s();
    let sums = sha256sum(
        dir,
        &[
            ("k3s-airgap-images-arm64.tar.zst", b"(\xb5/\xfd not really"),
            ("k3s-arm64", &bin),
        ],
    );
    server.file(&format!("{prefix}{DIR}/sha256sum-arm64.txt"), sums);
    server.file(&format!("{prefix}{DIR}/k3s-arm64"), bin.clone());
    bin
}

/// Every file under `dir` (relative paths), sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(
                files_under(&p)
                    .into_iter()
                    .map(|f| format!("{}/{f}", e.file_name().to_string_lossy())),
            );
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// Neither a blob nor a k3s record in the cache (locks and `.part` files
/// aside).
fn assert_nothing_cached(root: &Path) {
    let blobs = files_under(&root.join("blobs"));
    let records = files_under(&root.join("k3s"));
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
    assert!(records.is_empty(), "records left: {records:?}");
    let cache = Cache::open(root).unwrap();
    assert!(cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary).is_none());
    assert!(entries(&cache).is_empty());
}

fn parts(root: &Path) -> Vec<String> {
    files_under(&root.join("downloads"))
}

/// The whole chain, as a user sees it (`{:#}` of anyhow).
fn chain(e: K3sFetchError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

#[test]
fn a_verified_binary_is_cached_by_its_sha256_and_found_again_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    let cache = Cache::open(&root).unwrap();

    let got = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    let sha = Sha256::of(&bin);
    assert_eq!(got.sha256, sha);
    assert_eq!(got.len, bin.len() as u64);
    assert_eq!(got.path, root.join("blobs").join(format!("{sha}.k3s")));
    assert_eq!(std::fs::read(&got.path).unwrap(), bin);
    assert_eq!(
        files_under(&root.join("k3s")),
        ["v1.31.4+k3s1_arm64_binary.json"]
    );
    assert!(parts(&root).is_empty(), "{:?}", parts(&root));
    let sums_path = format!("{DIR}/sha256sum-arm64.txt");
    let bin_path = format!("{DIR}/k3s-arm64");
    assert_eq!(server.hits(&sums_path).len(), 1);
    assert_eq!(server.hits(&bin_path).len(), 1);

    // The next call, and a lookup, need no request at all.
    let again = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    assert_eq!(again, got);
    let offline = cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary).unwrap();
    assert_eq!(offline, got);
    assert_eq!(server.hits(&sums_path).len(), 1);
    assert_eq!(server.hits(&bin_path).len(), 1);
    // Nor a reachable server: nothing listens on port 1.
    let offline = ensure_k3s(
        &cache,
        &opts("http://127.0.0.1:1"),
        &version(),
        K3sArch::Arm64,
        K3sAsset::Binary,
        &Progress::quiet(),
    )
    .unwrap();
    assert_eq!(offline, got);
    // Another release, architecture or asset is not that one.
    let other = K3sVersion::parse("v1.31.5+k3s1").unwrap();
    assert!(cached_k3s(&cache, &other, K3sArch::Arm64, K3sAsset::Binary).is_none());
    assert!(cached_k3s(&cache, &version(), K3sArch::Amd64, K3sAsset::Binary).is_none());
    assert!(cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::AirgapImages).is_none());
}

#[test]
fn two_runs_at_once_download_the_binary_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    let bin_path = format!("{DIR}/k3s-arm64");
    // Slow enough (about 1 s) for the second run to arrive mid-transfer.
    server.route(
        &bin_path,
        Route {
            body: bin.clone(),
            chunk_delay: Some(Duration::from_millis(20)),
            ..Route::default()
        },
    );
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let root = root.clone();
            let base = server.base.clone();
            std::thread::spawn(move || {
                let cache = Cache::open(&root).unwrap();
                ensure_k3s(
                    &cache,
                    &opts(&base),
                    &version(),
                    K3sArch::Arm64,
                    K3sAsset::Binary,
                    &Progress::quiet(),
                )
                .unwrap()
            })
        })
        .collect();
    let got: Vec<K3sArtifact> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(got[0], got[1]);
    assert_eq!(std::fs::read(&got[0].path).unwrap(), bin);
    assert_eq!(server.hits(&bin_path).len(), 1);
}

#[test]
fn a_blob_whose_time_moved_is_rehashed_and_kept_only_if_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    serve_release(&server, dir.path(), "");
    let cache = Cache::open(&root).unwrap();
    let got = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    let record = root.join("k3s/v1.31.4+k3s1_arm64_binary.json");
    let before = std::fs::read(&record).unwrap();

    // Copied without -p: same bytes, another time. Re-hashed, kept, and
    // given the new time so the next use is cheap again.
    let f = std::fs::File::options()
        .write(true)
        .open(&got.path)
        .unwrap();
    let later = f.metadata().unwrap().modified().unwrap() + Duration::from_secs(3600);
    f.set_modified(later).unwrap();
    drop(f);
    assert_eq!(
        cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary),
        Some(got.clone())
    );
    assert_ne!(std::fs::read(&record).unwrap(), before);
    assert_eq!(entries(&cache)[0].health, Quick::Intact);

    // A byte changed (the time moves with it): the samples or the re-hash
    // see it, and the blob is not used.
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::options()
        .write(true)
        .open(&got.path)
        .unwrap();
    f.write_all_at(b"Z", 70_000).unwrap();
    drop(f);
    assert!(cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary).is_none());
    assert_eq!(server.hits(&format!("{DIR}/k3s-arm64")).len(), 1);
}

#[test]
fn a_blob_cut_short_on_disk_is_not_found_and_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    let cache = Cache::open(&root).unwrap();
    let got = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&got.path)
        .unwrap();
    f.set_len(got.len - 1).unwrap();
    drop(f);
    assert!(cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary).is_none());
    let again = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    assert_eq!(std::fs::read(&again.path).unwrap(), bin);
    assert_eq!(server.hits(&format!("{DIR}/k3s-arm64")).len(), 2);
}

#[test]
fn a_wrong_checksum_is_refused_with_both_hashes_and_nothing_cached() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    // The checksum file is for another build of the binary.
    let mut other = bin.clone();
    other[1000] ^= 1;
    let sums = sha256sum(dir.path(), &[("k3s-arm64", &other)]);
    server.file(&format!("{DIR}/sha256sum-arm64.txt"), sums);
    let cache = Cache::open(&root).unwrap();

    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    assert!(matches!(err, K3sFetchError::Mismatch(_)), "{err:?}");
    let msg = chain(err);
    assert!(
        msg.contains(&format!("expected sha256 {}", Sha256::of(&other))),
        "{msg}"
    );
    assert!(msg.contains(&format!("got {}", Sha256::of(&bin))), "{msg}");
    assert!(msg.contains(VERSION) && msg.contains("arm64"), "{msg}");
    assert!(
        msg.contains(&format!("{}{DIR}/k3s-arm64", server.base)),
        "{msg}"
    );
    assert!(msg.contains("the download was deleted"), "{msg}");
    assert_nothing_cached(&root);
    assert!(parts(&root).is_empty(), "{:?}", parts(&root));
}

#[test]
fn a_binary_cut_short_every_time_is_refused_kept_as_part_and_resumed_only_to_a_full_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    let bin_path = format!("{DIR}/k3s-arm64");
    server.route(
        &bin_path,
        Route {
            body: bin.clone(),
            reply_limit: Some(512 << 10),
            ..Route::default()
        },
    );
    let cache = Cache::open(&root).unwrap();

    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    assert!(matches!(err, K3sFetchError::Download { .. }), "{err:?}");
    let msg = chain(err);
    assert!(
        msg.contains(&format!("downloading k3s {VERSION} k3s-arm64 for arm64")),
        "{msg}"
    );
    assert!(msg.contains("cut short"), "{msg}");
    assert_nothing_cached(&root);
    // What arrived (two replies of 512 KiB: the first try and one retry)
    // waits, under the hash it must reach, for the next run.
    let sha = Sha256::of(&bin);
    assert_eq!(parts(&root), [format!("{sha}.part")]);
    assert_eq!(
        std::fs::read(root.join("downloads").join(format!("{sha}.part"))).unwrap(),
        bin[..1 << 20]
    );

    // Fixed: the next run resumes from the cut and publishes only a whole,
    // matching file.
    server.file(&bin_path, bin.clone());
    let got = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), bin);
    let last = server.hits(&bin_path).pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=1048576-"));
    assert!(parts(&root).is_empty());
}

#[test]
fn a_truncated_copy_on_the_server_is_refused_and_deleted() {
    // A mirror holding a short copy sends it whole (its own Content-Length):
    // only the hash can tell.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    server.file(&format!("{DIR}/k3s-arm64"), bin[..bin.len() / 2].to_vec());
    let cache = Cache::open(&root).unwrap();
    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    let msg = chain(err);
    assert!(
        msg.contains(&format!("in {} bytes", bin.len() / 2)),
        "{msg}"
    );
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert_nothing_cached(&root);
    assert!(parts(&root).is_empty(), "{:?}", parts(&root));
}

#[test]
fn a_missing_checksum_file_refuses_the_binary_unfetched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    server.file(&format!("{DIR}/k3s-arm64"), fake_k3s());
    let cache = Cache::open(&root).unwrap();
    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    assert!(
        matches!(err, K3sFetchError::NoChecksumFile { .. }),
        "{err:?}"
    );
    let msg = chain(err);
    assert!(
        msg.contains("refusing an unverified k3s v1.31.4+k3s1 binary for arm64"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}{DIR}/sha256sum-arm64.txt", server.base)),
        "{msg}"
    );
    assert!(server.hits(&format!("{DIR}/k3s-arm64")).is_empty());
    assert_nothing_cached(&root);
    assert!(parts(&root).is_empty());
}

#[test]
fn a_checksum_file_without_the_assets_line_refuses_it_unfetched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "");
    // `k3s-arm64.sig` is another file, however alike its name.
    let sums = sha256sum(
        dir.path(),
        &[
            ("k3s-airgap-images-arm64.tar.zst", b"x"),
            ("k3s-arm64.sig", &bin),
        ],
    );
    server.file(&format!("{DIR}/sha256sum-arm64.txt"), sums);
    let cache = Cache::open(&root).unwrap();
    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    let msg = chain(err);
    assert!(
        msg.contains(&format!(
            "refusing k3s {VERSION} k3s-arm64 for arm64: the checksum file {}{DIR}/sha256sum-arm64.txt lists no k3s-arm64",
            server.base
        )),
        "{msg}"
    );
    assert!(server.hits(&format!("{DIR}/k3s-arm64")).is_empty());
    assert_nothing_cached(&root);
}

#[test]
fn what_is_not_a_checksum_file_is_refused_and_one_past_the_cap_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    serve_release(&server, dir.path(), "");
    let sums_path = format!("{DIR}/sha256sum-arm64.txt");
    let big: Vec<u8> = std::iter::repeat_n(b"0123456789abcdef\n".as_slice(), 1 << 16)
        .flatten()
        .copied()
        .collect();
    for (i, (body, needle)) in [
        (
            b"<html><body>Sign in to the Wi-Fi</body></html>\n".to_vec(),
            "is not a checksum file: line 1: the checksum is not 64 hexadecimal digits",
        ),
        (big, "is not a checksum file: it is larger than 65536 bytes"),
    ]
    .into_iter()
    .enumerate()
    {
        let root = dir.path().join(format!("cache{i}"));
        server.file(&sums_path, body);
        let cache = Cache::open(&root).unwrap();
        let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
        let msg = chain(err);
        assert!(msg.contains(needle), "{msg}");
        assert!(msg.contains(&sums_path), "{msg}");
        assert_nothing_cached(&root);
    }
    assert!(server.hits(&format!("{DIR}/k3s-arm64")).is_empty());
}

#[test]
fn a_binary_the_release_does_not_have_is_named_as_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    // The checksum file lists the binary, but the mirror lacks it.
    let bin = fake_k3s();
    let sums = sha256sum(dir.path(), &[("k3s-arm64", &bin)]);
    server.file(&format!("{DIR}/sha256sum-arm64.txt"), sums);
    let root = dir.path().join("cache");
    let cache = Cache::open(&root).unwrap();
    let err = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap_err();
    assert!(matches!(err, K3sFetchError::NotPublished { .. }), "{err:?}");
    let msg = chain(err);
    assert!(
        msg.contains(&format!(
            "k3s {VERSION} publishes no binary for arm64 ({}{DIR}/k3s-arm64: HTTP 404)",
            server.base
        )),
        "{msg}"
    );
    assert_nothing_cached(&root);
    assert!(parts(&root).is_empty(), "{:?}", parts(&root));

    // s390x stopped with v1.28.4+k3s1: its checksum file's 404 says so.
    let err = fetch(&cache, &server, K3sArch::S390x, K3sAsset::Binary).unwrap_err();
    let msg = chain(err);
    assert!(
        msg.starts_with(&format!("k3s {VERSION} publishes no binary for s390x")),
        "{msg}"
    );
    assert_nothing_cached(&root);
}

#[test]
fn a_mirror_replaces_the_releases_download_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let bin = serve_release(&server, dir.path(), "/k3s");
    let root = dir.path().join("cache");
    let cache = Cache::open(&root).unwrap();
    let got = ensure_k3s(
        &cache,
        &opts(&format!("{}/k3s/", server.base)),
        &version(),
        K3sArch::Arm64,
        K3sAsset::Binary,
        &Progress::quiet(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), bin);
    assert_eq!(
        server.hits(&format!("/k3s{DIR}/sha256sum-arm64.txt")).len(),
        1
    );
    assert_eq!(server.hits(&format!("/k3s{DIR}/k3s-arm64")).len(), 1);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("k3s/v1.31.4+k3s1_arm64_binary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["url"],
        format!("{}/k3s{DIR}/k3s-arm64", server.base).as_str()
    );
}

fn cache_cmd(root: &Path, args: &[&str]) -> Output {
    bin()
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(root)
        .output()
        .unwrap()
}

/// A cache holding the fake binary; returns it and its path.
fn cached_binary(dir: &Path) -> (PathBuf, K3sArtifact) {
    let root = dir.join("cache");
    let server = Server::start();
    serve_release(&server, dir, "");
    let cache = Cache::open(&root).unwrap();
    let got = fetch(&cache, &server, K3sArch::Arm64, K3sAsset::Binary).unwrap();
    (root, got)
}

#[test]
fn cache_list_shows_k3s_downloads_with_release_and_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let (root, got) = cached_binary(dir.path());
    let out = cache_cmd(&root, &["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("k3s-arm64"))
        .unwrap_or_else(|| panic!("{text}"));
    for needle in [got.sha256.short().as_str(), VERSION, "arm64"] {
        assert!(line.contains(needle), "{line}");
    }

    let out = cache_cmd(&root, &["list", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k3s = v["k3s"].as_array().unwrap();
    assert_eq!(k3s.len(), 1, "{v}");
    assert_eq!(k3s[0]["version"], VERSION);
    assert_eq!(k3s[0]["arch"], "arm64");
    assert_eq!(k3s[0]["asset"], "binary");
    assert_eq!(k3s[0]["file_name"], "k3s-arm64");
    assert_eq!(k3s[0]["sha256"], got.sha256.to_string().as_str());
    assert_eq!(k3s[0]["size"], got.len);
    assert_eq!(k3s[0]["path"], got.path.to_str().unwrap());
    assert_eq!(k3s[0]["health"], "intact");
    assert_eq!(v["images"].as_array().unwrap().len(), 0);
}

#[test]
fn cache_prune_keeps_k3s_downloads_and_prune_all_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (root, got) = cached_binary(dir.path());
    let cache = Cache::open(&root).unwrap();
    let out = cache_cmd(&root, &["prune"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        cached_k3s(&cache, &version(), K3sArch::Arm64, K3sAsset::Binary),
        Some(got.clone())
    );
    let out = cache_cmd(&root, &["prune", "--all"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!got.path.exists());
    assert_nothing_cached(&root);
}

#[test]
fn cache_prune_drops_a_record_whose_blob_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (root, got) = cached_binary(dir.path());
    std::fs::remove_file(&got.path).unwrap();
    let out = cache_cmd(&root, &["prune"]);
    assert!(out.status.success(), "{out:?}");
    assert_nothing_cached(&root);
}

#[test]
fn cache_verify_rehashes_k3s_downloads_and_removes_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let (root, got) = cached_binary(dir.path());
    let out = cache_cmd(&root, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("ok       {}", got.path.display())),
        "{text}"
    );

    // A byte changed in place, time stamp and all: only a re-hash sees it.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&got.path)
        .unwrap();
    let when = f.metadata().unwrap().modified().unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"X", 2 << 20).unwrap();
    f.set_modified(when).unwrap();
    drop(f);
    let prefix = got.sha256.to_string()[..12].to_owned();
    let out = cache_cmd(&root, &["verify", &prefix, "--remove"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("DAMAGED  {}", got.path.display())),
        "{text}"
    );
    assert!(text.contains("hashes to sha256"), "{text}");
    assert_nothing_cached(&root);
}
