//! The cache does not trust itself: a cached image changed behind its back
//! is noticed on use (size, time stamp, sampled blocks) and made again;
//! `cache verify` re-hashes whole images; unreadable metadata is listed as
//! damaged; URL passwords are masked wherever they are printed or stored,
//! and the cache is private (directories 0700, metadata 0600).

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::http_server::Server;
use crate::pull_support::{
    assert_is_fake_image, entries, fake_image, local, ok, pull, pull_loud, sha, stderr, xz_image,
};
use crate::util::{assert_fails, bin};

/// A cache holding the fake image, pulled from a local raw file; returns
/// the source path and the cached image.
fn cached(dir: &Path) -> (String, PathBuf) {
    let src = local(dir, "base.img", fake_image());
    let img = ok(&pull(&dir.join("cache"), &[&src]));
    assert_is_fake_image(&img);
    (src, img)
}

fn cache_cmd(cache: &Path, args: &[&str]) -> Output {
    bin()
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Flips the byte at `offset` of `path`; with `keep_time`, puts the
/// modification time back as it was.
fn flip(path: &Path, offset: u64, keep_time: bool) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let when = f.metadata().unwrap().modified().unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], offset).unwrap();
    if keep_time {
        f.set_modified(when).unwrap();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_modified_cached_image_is_noticed_on_use_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (src, img) = cached(dir.path());
    // Between the sampled blocks (the first 64 KiB, then one 4 KiB block
    // every ~95 KiB of this image), through the file system: the time
    // stamp moves, the full re-hash that follows finds the change.
    flip(&img, (64 << 10) + 3 * 4096 + 17, false);
    let out = pull_loud(&dir.path().join("cache"), &[&src]);
    assert_eq!(ok(&out), img);
    let err = stderr(&out);
    assert!(err.contains("re-checking the cached image"), "{err}");
    assert!(
        err.contains("is damaged (its content hashes to sha256 "),
        "{err}"
    );
    assert!(err.contains("making it again"), "{err}");
    assert_is_fake_image(&img);
    // Made again, it is trusted again without a re-hash.
    let out = pull_loud(&dir.path().join("cache"), &[&src]);
    assert_eq!(ok(&out), img);
    assert!(!stderr(&out).contains("re-checking"), "{}", stderr(&out));
}

#[test]
fn an_edit_in_a_sampled_block_is_noticed_even_with_its_time_stamp_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let (src, img) = cached(dir.path());
    flip(&img, 446, true);
    let out = pull_loud(&dir.path().join("cache"), &[&src]);
    assert_eq!(ok(&out), img);
    assert!(
        stderr(&out).contains("its sampled blocks differ from when it was cached"),
        "{}",
        stderr(&out)
    );
    assert_is_fake_image(&img);
}

#[test]
fn a_truncated_cached_image_is_noticed_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (src, img) = cached(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let out = pull_loud(&dir.path().join("cache"), &[&src]);
    assert_eq!(ok(&out), img);
    assert!(
        stderr(&out).contains(&format!(
            "it is 1048576 bytes long, not the {} cached",
            fake_image().len()
        )),
        "{}",
        stderr(&out)
    );
    assert_is_fake_image(&img);
}

#[test]
fn cache_verify_rehashes_names_a_damaged_image_and_removes_it_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (_, img) = cached(dir.path());
    let good = cache_cmd(&cache, &["verify"]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(stdout(&good).starts_with("ok "), "{}", stdout(&good));

    // An edit between the sampled blocks with the time stamp put back: the
    // cheap check cannot see it, the full re-hash does.
    flip(&img, (64 << 10) + 3 * 4096 + 17, true);
    let out = cache_cmd(&cache, &["verify"]);
    assert_fails(
        &out,
        1,
        &[
            "1 damaged cached image: ",
            &img.display().to_string(),
            "its content hashes to sha256",
            &format!("not the {} it was cached as", sha(fake_image())),
            "`homelab-image cache verify --remove` deletes it",
        ],
    );
    assert!(stdout(&out).starts_with("DAMAGED "), "{}", stdout(&out));
    assert!(img.exists(), "verify without --remove deleted the image");

    // By hash prefix, and with --remove.
    let short = &sha(fake_image())[..12];
    let none = cache_cmd(&cache, &["verify", "0000000000"]);
    assert_fails(
        &none,
        1,
        &["no cached image's SHA-256 starts with 0000000000"],
    );
    let out = cache_cmd(&cache, &["verify", short, "--remove"]);
    assert_fails(
        &out,
        1,
        &["1 damaged cached image, removed", "makes it again"],
    );
    assert!(!img.exists());
    assert!(
        entries(&cache, "images").is_empty(),
        "{:?}",
        entries(&cache, "images")
    );
    assert!(
        entries(&cache, "index").is_empty(),
        "{:?}",
        entries(&cache, "index")
    );
}

#[test]
fn an_image_with_unreadable_metadata_is_listed_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (_, img) = cached(dir.path());
    std::fs::write(img.with_extension("json"), b"{\"sha256\": \"trunc").unwrap();
    let out = cache_cmd(&cache, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    let short = &sha(fake_image())[..12];
    let row = list
        .lines()
        .find(|l| l.starts_with(short))
        .unwrap_or_else(|| panic!("{short} is not listed:\n{list}"));
    assert!(row.contains("DAMAGED: its metadata "), "{row}");
    assert!(row.contains(".json is not valid"), "{row}");
    assert!(
        list.contains("1 damaged: `homelab-image cache verify --remove`"),
        "{list}"
    );
    let out = cache_cmd(&cache, &["verify"]);
    assert_fails(&out, 1, &["1 damaged cached image", ".json is not valid"]);
}

#[test]
fn url_passwords_are_masked_in_messages_listings_and_metadata() {
    let server = Server::start();
    server.file("/img.xz", xz_image().to_vec());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let with_password = |path: &str| server.url(path).replace("http://", "http://alice:hunter2@");
    let masked = |path: &str| server.url(path).replace("http://", "http://alice:***@");

    let out = pull_loud(
        &cache,
        &[&with_password("/img.xz"), "--sha256", &sha(xz_image())],
    );
    let img = ok(&out);
    assert!(
        stderr(&out).contains(&format!("downloading {}", masked("/img.xz"))),
        "{}",
        stderr(&out)
    );
    let json = std::fs::read_to_string(img.with_extension("json")).unwrap();
    assert!(json.contains(&masked("/img.xz")), "{json}");
    let list = stdout(&cache_cmd(&cache, &["list"]));
    assert!(list.contains(&masked("/img.xz")), "{list}");

    let out = pull(
        &cache,
        &[
            &with_password("/nothing.img.xz"),
            "--sha256",
            &"0".repeat(64),
        ],
    );
    assert_fails(
        &out,
        1,
        &[&format!("GET {}: HTTP 404", masked("/nothing.img.xz"))],
    );

    // Nothing the runs printed or stored holds the password.
    let mut stored = String::new();
    for sub in ["images", "index"] {
        for name in entries(&cache, sub).iter().filter(|n| n.ends_with(".json")) {
            stored.push_str(&std::fs::read_to_string(cache.join(sub).join(name)).unwrap());
        }
    }
    for text in [stderr(&out), json, list, stored] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[test]
fn the_cache_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (_, img) = cached(dir.path());
    assert_eq!(mode(&cache), 0o700);
    for sub in ["images", "index", "blobs", "downloads", "locks"] {
        assert_eq!(mode(&cache.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&img.with_extension("json")), 0o600);
    for name in entries(&cache, "index") {
        assert_eq!(mode(&cache.join("index").join(&name)), 0o600, "{name}");
    }
}

#[test]
fn metadata_of_older_versions_is_made_private_masked_and_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (src, img) = cached(dir.path());
    // As an older version left it: no fingerprint, a password, 0644, in
    // world-readable directories.
    let meta_path = img.with_extension("json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("fingerprint");
    meta["url"] = "https://alice:hunter2@example.org/base.img".into();
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    std::fs::set_permissions(&meta_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    for d in [cache.clone(), cache.join("images")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let list = stdout(&cache_cmd(&cache, &["list"]));
    assert!(
        list.contains("unverified: it was cached without a fingerprint"),
        "{list}"
    );
    assert_eq!(mode(&meta_path), 0o600);
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join("images")), 0o700);
    let stored = std::fs::read_to_string(&meta_path).unwrap();
    assert!(!stored.contains("hunter2"), "{stored}");
    assert!(stored.contains("alice:***@example.org"), "{stored}");

    // The first use re-hashes it and records a fingerprint.
    let out = pull_loud(&cache, &[&src]);
    assert_eq!(ok(&out), img);
    assert!(
        stderr(&out).contains("re-checking the cached image"),
        "{}",
        stderr(&out)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert!(meta["fingerprint"]["samples"].is_string(), "{meta}");
    let list = stdout(&cache_cmd(&cache, &["list"]));
    assert!(!list.contains("unverified"), "{list}");
}
