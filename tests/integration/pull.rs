//! `pull` against a loopback HTTP server that serves generated images,
//! checksum files and signatures made by gpg: the happy paths (Ubuntu and
//! Armbian catalog entries through `--mirror`, URLs), and every way a
//! download can go wrong.

use std::time::{Duration, Instant};

use crate::http_server::{Route, Server};
use crate::pull_support::{
    assert_is_fake_image, entries, fake_image, keys, ok, pull, pull_loud, sha, stderr, xz_image,
};
use crate::util::{assert_fails, bin};

const UBUNTU_DIR: &str = "/releases/24.04/release/";
const UBUNTU_IMG: &str = "ubuntu-24.04.2-preinstalled-server-arm64+raspi.img.xz";
const ARMBIAN_IMG: &str = "Armbian_25.8.1_Rpi4b_noble_current_6.12.41_minimal.img.xz";

/// An Ubuntu release directory: SHA256SUMS listing an older point release,
/// an ISO and the image, signed (binary, like cdimage's) by `signer`.
fn ubuntu_server(signer: &str, tamper: bool) -> (Server, Vec<u8>, Vec<u8>) {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let mut sums = format!(
        "{} *ubuntu-24.04.1-preinstalled-server-arm64+raspi.img.xz\n\
         {} *ubuntu-24.04.2-live-server-arm64.iso\n\
         {} *{UBUNTU_IMG}\n",
        "1".repeat(64),
        "2".repeat(64),
        sha(&xz)
    )
    .into_bytes();
    let sig = keys().sign(signer, &sums, false);
    if tamper {
        sums[0] = b'3';
    }
    server.file(&format!("{UBUNTU_DIR}SHA256SUMS"), sums.clone());
    server.file(&format!("{UBUNTU_DIR}SHA256SUMS.gpg"), sig.clone());
    server.file(&format!("{UBUNTU_DIR}{UBUNTU_IMG}"), xz);
    (server, sums, sig)
}

fn trusted() -> String {
    keys().trusted_pub.to_str().unwrap().to_owned()
}

#[test]
fn ubuntu_catalog_image_is_verified_decompressed_and_cached() {
    let (server, sums, sig) = ubuntu_server("trusted", false);
    assert!(keys().gpg_verifies(&sig, &sums), "gpg disagrees");
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "ubuntu-24.04-raspi",
        "--mirror",
        &server.base,
        "--trusted-key",
        &trusted(),
    ];
    let out = pull_loud(cache.path(), &args);
    let path = ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("checksums signed by trusted <trusted@example.invalid>"),
        "{err}"
    );
    assert!(
        err.contains(&format!("sha256 {} matches", sha(xz_image()))),
        "{err}"
    );
    assert!(
        err.contains("(xz, 12 blocks, ") && err.contains(" thread"),
        "{err}"
    );
    assert!(path.starts_with(cache.path().join("images")));
    assert_is_fake_image(&path);
    let image_path = format!("{UBUNTU_DIR}{UBUNTU_IMG}");
    assert_eq!(server.served(&image_path), xz_image().len() as u64);

    // Cached: the same path, and the image is not fetched again.
    let again = pull(cache.path(), &args);
    assert_eq!(ok(&again), path);
    assert_eq!(server.served(&image_path), xz_image().len() as u64);

    // Offline: the newest cached release of the entry is used, with a warning.
    let offline = pull_loud(
        cache.path(),
        &[
            "ubuntu-24.04-raspi",
            "--mirror",
            "http://127.0.0.1:9",
            "--retries",
            "0",
        ],
    );
    assert_eq!(ok(&offline), path);
    assert!(
        stderr(&offline).contains("cannot look up the newest ubuntu-24.04-raspi"),
        "{}",
        stderr(&offline)
    );
    // A host that does not resolve (a machine with no network): the cached
    // release at once, not after the retries.
    let started = std::time::Instant::now();
    let unreachable = pull_loud(
        cache.path(),
        &[
            "ubuntu-24.04-raspi",
            "--mirror",
            "http://homelab-image-test.invalid",
        ],
    );
    assert_eq!(ok(&unreachable), path);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr(&unreachable).contains("cannot reach homelab-image-test.invalid"),
        "{}",
        stderr(&unreachable)
    );

    let list = bin()
        .arg("cache")
        .arg("list")
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&sha(fake_image())[..12]), "{list}");
    assert!(
        list.contains(&format!("ubuntu-24.04-raspi ({UBUNTU_IMG})")),
        "{list}"
    );

    // prune drops the compressed copy (the image is what builds use) …
    assert_eq!(entries(cache.path(), "blobs").len(), 1);
    let prune = |extra: &[&str]| {
        bin()
            .args(["cache", "prune"])
            .args(extra)
            .arg("--cache-dir")
            .arg(cache.path())
            .output()
            .unwrap()
    };
    let out = prune(&[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("removed 1 file"));
    assert!(entries(cache.path(), "blobs").is_empty());
    assert!(path.exists());
    // … and --all the image.
    assert!(prune(&["--all"]).status.success());
    assert!(!path.exists());
    assert!(entries(cache.path(), "images").is_empty());
}

fn armbian_server(signer: &str) -> Server {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let archive = format!("/rpi4b/archive/{ARMBIAN_IMG}");
    server.route(
        "/rpi4b/Noble_current_minimal.sha",
        Route {
            redirect: Some(format!("{}.sha", server.url(&archive))),
            ..Route::default()
        },
    );
    server.file(
        &format!("{archive}.sha"),
        format!("{} {ARMBIAN_IMG}\n", sha(&xz)).into_bytes(),
    );
    server.file(&format!("{archive}.asc"), keys().sign(signer, &xz, true));
    server.file(&archive, xz);
    server
}

#[test]
fn armbian_catalog_image_follows_the_redirect_and_checks_the_image_signature() {
    let server = armbian_server("trusted");
    let cache = tempfile::tempdir().unwrap();
    let out = bin()
        .env("HOMELAB_MIRROR", &server.base)
        .args([
            "pull",
            "armbian-rpi4b",
            "--retry-delay",
            "0",
            "--trusted-key",
        ])
        .arg(trusted())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let path = ok(&out);
    assert!(
        stderr(&out).contains("good signature by trusted"),
        "{}",
        stderr(&out)
    );
    assert_is_fake_image(&path);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["catalog"], "armbian-rpi4b");
    assert_eq!(meta["file_name"], ARMBIAN_IMG);
    assert_eq!(
        meta["url"],
        server.url(&format!("/rpi4b/archive/{ARMBIAN_IMG}"))
    );
}

#[test]
fn armbian_image_signed_by_another_key_is_deleted() {
    let server = armbian_server("stranger");
    let cache = tempfile::tempdir().unwrap();
    let out = pull(
        cache.path(),
        &[
            "armbian-rpi4b",
            "--mirror",
            &server.base,
            "--trusted-key",
            &trusted(),
        ],
    );
    assert_fails(
        &out,
        1,
        &[
            "pulling armbian-rpi4b: deleted the download: the signature http://",
            ".img.xz.asc: signed by key",
            "not a trusted key",
        ],
    );
    for sub in ["downloads", "blobs", "images"] {
        assert!(entries(cache.path(), sub).is_empty(), "{sub}");
    }
}

#[test]
fn interrupted_transfer_resumes_where_it_stopped() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let half = xz.len() as u64 / 2;
    server.route(
        "/img.xz",
        Route {
            body: xz.clone(),
            cut_at: Some(half),
            cuts: 1,
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let out = pull(
        cache.path(),
        &[&server.url("/img.xz"), "--sha256", &sha(&xz)],
    );
    assert_is_fake_image(&ok(&out));
    let hits = server.hits("/img.xz");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].body_bytes, half);
    assert_eq!(
        hits[1].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(hits[1].status, 206);
    // No byte was fetched twice.
    assert_eq!(server.served("/img.xz"), xz.len() as u64);
}

#[test]
fn a_server_that_ignores_range_is_read_from_the_start() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let half = xz.len() as u64 / 2;
    server.route(
        "/img.xz",
        Route {
            body: xz.clone(),
            cut_at: Some(half),
            cuts: 1,
            ignore_range: true,
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let out = pull_loud(
        cache.path(),
        &[&server.url("/img.xz"), "--sha256", &sha(&xz)],
    );
    assert_is_fake_image(&ok(&out));
    assert!(
        stderr(&out).contains("ignored the range request"),
        "{}",
        stderr(&out)
    );
    let hits = server.hits("/img.xz");
    assert_eq!(hits[1].status, 200);
    assert_eq!(server.served("/img.xz"), half + xz.len() as u64);
}

#[test]
fn a_failed_run_leaves_a_part_file_the_next_run_resumes() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let third = xz.len() as u64 / 3;
    server.route(
        "/img.xz",
        Route {
            body: xz.clone(),
            cut_at: Some(third),
            cuts: 1,
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/img.xz");
    let digest = sha(&xz);
    let out = pull(cache.path(), &[&url, "--sha256", &digest, "--retries", "0"]);
    assert_fails(
        &out,
        1,
        &[
            "GET http://",
            "/img.xz",
            "gave up after 1 failed attempt (1 cut short);",
            "stopped at byte",
        ],
    );
    let part = cache
        .path()
        .join("downloads")
        .join(format!("{digest}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), third);

    let out = pull_loud(cache.path(), &[&url, "--sha256", &digest]);
    assert_is_fake_image(&ok(&out));
    assert!(
        stderr(&out).contains("resuming img.xz at"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.served("/img.xz"), xz.len() as u64);
    assert!(!part.exists());
}

#[test]
fn not_found_is_an_error_naming_the_url() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/missing.img.xz");
    let out = pull(cache.path(), &[&url, "--sha256", &"0".repeat(64)]);
    assert_fails(&out, 1, &[&format!("GET {url}: HTTP 404 Not Found")]);
    // A 404 is final: no retries.
    assert_eq!(server.hits("/missing.img.xz").len(), 1);
    let out = pull(
        cache.path(),
        &["ubuntu-22.04-raspi", "--mirror", &server.base],
    );
    assert_fails(
        &out,
        1,
        &[
            "pulling ubuntu-22.04-raspi",
            "/releases/22.04/release/SHA256SUMS: HTTP 404",
        ],
    );
    assert!(entries(cache.path(), "images").is_empty());
}

#[test]
fn a_wrong_checksum_caches_nothing() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    server.file("/img.xz", xz.clone());
    let cache = tempfile::tempdir().unwrap();
    let wrong = sha(b"something else");
    let out = pull(cache.path(), &[&server.url("/img.xz"), "--sha256", &wrong]);
    assert_fails(
        &out,
        1,
        &[
            "checksum mismatch",
            &format!("expected sha256 {wrong}, got {}", sha(&xz)),
            "(the download was deleted)",
        ],
    );
    for sub in ["downloads", "blobs", "images", "index"] {
        assert!(
            entries(cache.path(), sub).is_empty(),
            "{sub}: {:?}",
            entries(cache.path(), sub)
        );
    }
}

#[test]
fn bad_or_untrusted_signatures_are_refused_before_downloading() {
    let image = format!("{UBUNTU_DIR}{UBUNTU_IMG}");
    // The checksums were altered after signing: gpg and we both say BAD.
    let (server, sums, sig) = ubuntu_server("trusted", true);
    assert!(!keys().gpg_verifies(&sig, &sums));
    let cache = tempfile::tempdir().unwrap();
    let out = pull(
        cache.path(),
        &[
            "ubuntu-24.04-raspi",
            "--mirror",
            &server.base,
            "--trusted-key",
            &trusted(),
        ],
    );
    assert_fails(
        &out,
        1,
        &["signature", "SHA256SUMS.gpg", "BAD signature by"],
    );
    assert_eq!(server.served(&image), 0);

    // Signed by a key nobody trusts.
    let (server, _, _) = ubuntu_server("stranger", false);
    let out = pull(
        cache.path(),
        &[
            "ubuntu-24.04-raspi",
            "--mirror",
            &server.base,
            "--trusted-key",
            &trusted(),
        ],
    );
    assert_fails(&out, 1, &["not a trusted key", "--trusted-key FILE"]);

    // The test key is not pinned: without --trusted-key, refused too.
    let (server, _, _) = ubuntu_server("trusted", false);
    let out = pull(
        cache.path(),
        &["ubuntu-24.04-raspi", "--mirror", &server.base],
    );
    assert_fails(&out, 1, &["not a trusted key"]);
    assert_eq!(server.served(&image), 0);
    assert!(entries(cache.path(), "images").is_empty());

    // Only an explicit flag skips the check, and it says so.
    let out = pull(
        cache.path(),
        &[
            "ubuntu-24.04-raspi",
            "--mirror",
            &server.base,
            "--insecure-skip-signature",
        ],
    );
    assert_is_fake_image(&ok(&out));
    assert!(stderr(&out).contains("--insecure-skip-signature"));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ok(&out).with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["signature"], "skipped (--insecure-skip-signature)");
}

#[test]
fn checksum_files_for_urls_must_be_signed() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let sums = format!("{}  img.xz\n", sha(&xz)).into_bytes();
    server.file("/d/img.xz", xz);
    server.file("/d/SUMS", sums.clone());
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/d/img.xz");
    let sums_url = server.url("/d/SUMS");
    let out = pull(cache.path(), &[&url, "--checksums", &sums_url]);
    assert_fails(
        &out,
        1,
        &[
            "no signature for",
            "SUMS.gpg",
            "SUMS.asc",
            "--signature URL",
        ],
    );
    server.file("/d/SUMS.asc", keys().sign("trusted", &sums, true));
    let out = pull(
        cache.path(),
        &[&url, "--checksums", &sums_url, "--trusted-key", &trusted()],
    );
    assert_is_fake_image(&ok(&out));
}

#[test]
fn two_concurrent_pulls_download_once() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    server.route(
        "/img.xz",
        Route {
            body: xz.clone(),
            chunk_delay: Some(Duration::from_millis(15)),
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let spawn = || {
        bin()
            .args(["pull", "--retry-delay", "0"])
            .arg(server.url("/img.xz"))
            .args(["--sha256", &sha(&xz)])
            .arg("--cache-dir")
            .arg(cache.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (pa, pb) = (ok(&a), ok(&b));
    assert_eq!(pa, pb);
    assert_is_fake_image(&pa);
    assert_eq!(server.served("/img.xz"), xz.len() as u64);
    let waited = [&a, &b]
        .iter()
        .filter(|o| stderr(o).contains("waiting for another homelab-image run"))
        .count();
    assert_eq!(waited, 1, "{}\n---\n{}", stderr(&a), stderr(&b));
}

#[test]
fn a_silent_server_times_out() {
    let server = Server::start();
    server.route(
        "/slow.img.xz",
        Route {
            stall: true,
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = bin()
        .args([
            "pull",
            "-q",
            "--retry-delay",
            "0",
            "--retries",
            "1",
            "--read-timeout",
            "0.3",
        ])
        .arg(server.url("/slow.img.xz"))
        .args(["--sha256", &"0".repeat(64)])
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        &[
            "/slow.img.xz",
            "gave up after 2 failed attempts",
            "timed out",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.hits("/slow.img.xz").len(), 2);
}

#[test]
fn a_signature_by_a_bound_subkey_counts_for_its_key() {
    let server = Server::start();
    let xz = xz_image().to_vec();
    let sums = format!("{} *img.xz\n", sha(&xz)).into_bytes();
    let sig = keys().sign("subkeyed", &sums, false);
    assert!(keys().gpg_verifies(&sig, &sums));
    server.file("/s/img.xz", xz);
    server.file("/s/SHA256SUMS", sums);
    server.file("/s/SHA256SUMS.gpg", sig);
    let cache = tempfile::tempdir().unwrap();
    let out = pull_loud(
        cache.path(),
        &[
            &server.url("/s/img.xz"),
            "--checksums",
            &server.url("/s/SHA256SUMS"),
            "--trusted-key",
            keys().subkeyed_pub.to_str().unwrap(),
        ],
    );
    assert_is_fake_image(&ok(&out));
    assert!(stderr(&out).contains("checksums signed by subkeyed <sub@example.invalid>"));
    // The primary key's owner is who vouches; without the key, refused.
    let out = pull(
        cache.path(),
        &[
            &server.url("/s/img.xz"),
            "--checksums",
            &server.url("/s/SHA256SUMS"),
        ],
    );
    assert_fails(&out, 1, &["SHA256SUMS.gpg", "not a trusted key"]);
}
