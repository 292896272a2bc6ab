//! Ubuntu cloud images in the catalog: a loopback server plays
//! cloud-images.ubuntu.com (a series index listing several
//! `release-<serial>/` builds, each with `SHA256SUMS` signed by a gpg test
//! key given with `--trusted-key`, and a qcow2 that `qemu-img` made from a
//! fixture). `pull` must take the newest serial, verify it and decode the
//! qcow2 to the fixture's exact bytes (judged with cmp); every refusal
//! names the URL and the cause and leaves nothing in the cache. `images`
//! lists the entries, and a `board: vm` profile resolves to them by arch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::http_server::{Route, Server};
use crate::pull_support::{entries, keys, ok, pull, pull_loud, sha, stderr};
use crate::util::{assert_fails, bin, fixture, hi_ok, run_ok};

const SERIES: &str = "/releases/noble/";
const NEWEST: &str = "release-20250201.1";
const IMG: &str = "ubuntu-24.04-server-cloudimg-amd64.img";
const ENTRY: &str = "ubuntu-24.04-cloud-amd64";

/// The source disk image every test serves as a qcow2.
fn source_image() -> PathBuf {
    fixture("gpt-4k.img")
}

/// `qemu-img convert -c -O qcow2` of the source (zlib-compressed clusters,
/// as Ubuntu publishes), made once per test run.
fn qcow2() -> &'static [u8] {
    static Q: OnceLock<Vec<u8>> = OnceLock::new();
    Q.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cloud.qcow2");
        run_ok(
            Command::new("qemu-img")
                .args(["convert", "-c", "-O", "qcow2"])
                .arg(source_image())
                .arg(&out),
        );
        std::fs::read(out).unwrap()
    })
}

/// An Apache-style index of the series directory with these subdirectories.
fn index(dirs: &[&str]) -> Vec<u8> {
    let mut html = String::from(
        "<html><head><title>Index of /releases/noble</title></head><body>\n\
         <a href=\"?C=N;O=D\">Name</a>\n<a href=\"/releases/\">Parent Directory</a>\n",
    );
    for d in dirs {
        html.push_str(&format!("<a href=\"{d}/\">{d}/</a>\n"));
    }
    html.push_str("</body></html>\n");
    html.into_bytes()
}

/// How a served release differs from a good one.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// SHA256SUMS altered after it was signed.
    TamperedSums,
    /// Signed by a key nobody trusts.
    Stranger,
    /// SHA256SUMS lists another hash for the image.
    WrongHash,
    /// SHA256SUMS has no line for the image.
    NoLine,
}

/// A server with the series index (older builds listed too, and in no
/// particular order) and the newest build's files.
fn cloud_server(fault: Fault) -> Server {
    let server = Server::start();
    server.file(
        SERIES,
        index(&["release-20250201", NEWEST, "release-20250110", "release"]),
    );
    let image = qcow2().to_vec();
    let image_sha = match fault {
        Fault::WrongHash => "4".repeat(64),
        _ => sha(&image),
    };
    let mut sums = format!(
        "{} *ubuntu-24.04-server-cloudimg-amd64.manifest\n\
         {} *ubuntu-24.04-server-cloudimg-arm64.img\n",
        "1".repeat(64),
        "2".repeat(64),
    );
    if fault != Fault::NoLine {
        sums.push_str(&format!("{image_sha} *{IMG}\n"));
    }
    let mut sums = sums.into_bytes();
    let signer = if fault == Fault::Stranger {
        "stranger"
    } else {
        "trusted"
    };
    let sig = keys().sign(signer, &sums, false);
    if fault == Fault::TamperedSums {
        sums[0] = b'3';
    }
    let dir = format!("{SERIES}{NEWEST}/");
    server.file(&format!("{dir}SHA256SUMS"), sums);
    server.file(&format!("{dir}SHA256SUMS.gpg"), sig);
    server.file(&format!("{dir}{IMG}"), image);
    server
}

fn trusted() -> String {
    keys().trusted_pub.to_str().unwrap().to_owned()
}

fn pull_entry(cache: &Path, server: &Server, loud: bool) -> std::process::Output {
    let args = [ENTRY, "--mirror", &server.base, "--trusted-key", &trusted()];
    if loud {
        pull_loud(cache, &args)
    } else {
        pull(cache, &args)
    }
}

fn assert_nothing_cached(cache: &Path) {
    for sub in ["images", "blobs", "downloads", "index"] {
        let left: Vec<String> = entries(cache, sub)
            .into_iter()
            .filter(|n| !n.starts_with('.') && !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{sub}/ holds {left:?}");
    }
}

#[test]
fn cloud_entry_resolves_to_the_newest_serial_and_decodes_the_qcow2() {
    let server = cloud_server(Fault::None);
    let cache = tempfile::tempdir().unwrap();
    let out = pull_entry(cache.path(), &server, true);
    let path = ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{ENTRY}: newest serial 20250201.1 ({}{SERIES}{NEWEST}/)",
            server.base
        )),
        "{err}"
    );
    assert!(
        err.contains("checksums signed by trusted <trusted@example.invalid>"),
        "{err}"
    );
    assert!(err.contains("(qcow2)"), "{err}");
    crate::qcow2_read::cmp(&path, &source_image());
    // Only the newest build was read.
    assert_eq!(
        server
            .hits(&format!("{SERIES}release-20250201/SHA256SUMS"))
            .len(),
        0
    );
    assert_eq!(
        server.served(&format!("{SERIES}{NEWEST}/{IMG}")),
        qcow2().len() as u64
    );

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["catalog"], ENTRY);
    assert_eq!(meta["serial"], "20250201.1");
    assert_eq!(meta["file_name"], IMG);
    assert_eq!(meta["format"], "qcow2");
    assert_eq!(meta["compressed_sha256"], sha(qcow2()));

    let list = |json: bool| {
        let mut c = bin();
        c.args(["cache", "list", "--cache-dir"]).arg(cache.path());
        if json {
            c.arg("--json");
        }
        String::from_utf8(run_ok(&mut c).stdout).unwrap()
    };
    let text = list(false);
    assert!(
        text.contains(&format!("{ENTRY} ({IMG}, serial 20250201.1)")),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    assert_eq!(json["images"][0]["serial"], "20250201.1", "{json}");

    // Offline, the cached build is used and named with its serial.
    let offline = pull_loud(
        cache.path(),
        &[ENTRY, "--mirror", "http://127.0.0.1:9", "--retries", "0"],
    );
    assert_eq!(ok(&offline), path);
    assert!(
        stderr(&offline).contains(&format!("using the cached {IMG}, serial 20250201.1")),
        "{}",
        stderr(&offline)
    );
}

#[test]
fn cloud_refusals_name_the_url_and_cause_and_cache_nothing() {
    let cases: [(Fault, &[&str]); 4] = [
        (
            Fault::TamperedSums,
            &[
                "pulling ubuntu-24.04-cloud-amd64",
                "release-20250201.1/SHA256SUMS.gpg",
                "BAD signature by",
            ],
        ),
        (
            Fault::Stranger,
            &[
                "release-20250201.1/SHA256SUMS.gpg",
                "which is not a trusted key for this image",
            ],
        ),
        (
            Fault::WrongHash,
            &[
                &format!("release-20250201.1/{IMG}: checksum mismatch: expected sha256 4444"),
                "(the download was deleted)",
            ],
        ),
        (
            Fault::NoLine,
            &[&format!(
                "release-20250201.1/SHA256SUMS lists no (single) checksum for {IMG}"
            )],
        ),
    ];
    for (fault, needles) in cases {
        let server = cloud_server(fault);
        let cache = tempfile::tempdir().unwrap();
        let out = pull_entry(cache.path(), &server, false);
        assert_fails(&out, 1, needles);
        assert!(stderr(&out).contains(&server.base), "{}", stderr(&out));
        assert_nothing_cached(cache.path());
    }
}

#[test]
fn cloud_index_without_a_release_or_too_large_is_refused() {
    let series_url = |s: &Server| format!("{}{SERIES}", s.base);
    // No release-<serial>/ directory: only the `release` link, a file and
    // malformed serials.
    let server = cloud_server(Fault::None);
    server.file(
        SERIES,
        index(&[
            "release",
            "release-2025020",
            "release-20250201.x",
            "current",
        ]),
    );
    let cache = tempfile::tempdir().unwrap();
    let out = pull_entry(cache.path(), &server, false);
    assert_fails(
        &out,
        1,
        &[&format!(
            "{} lists no release-YYYYMMDD[.N]/ directory",
            series_url(&server)
        )],
    );
    assert_nothing_cached(cache.path());

    // An index past 1 MiB is not read to its end (what the server counts
    // includes what the kernel buffered before the client hung up).
    let server = cloud_server(Fault::None);
    let mut huge = index(&[NEWEST]);
    huge.resize(64 << 20, b' ');
    server.route(
        SERIES,
        Route {
            body: huge,
            ..Route::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let out = pull_entry(cache.path(), &server, false);
    assert_fails(
        &out,
        1,
        &[
            &format!("GET {}", series_url(&server)),
            "larger than 1048576 bytes",
        ],
    );
    assert!(
        server.served(SERIES) < 32 << 20,
        "{}",
        server.served(SERIES)
    );
    assert_nothing_cached(cache.path());
}

#[test]
fn images_lists_the_cloud_entries() {
    let text = hi_ok(&["images"]);
    for (name, os, arch) in [
        ("ubuntu-26.04-cloud-amd64", "ubuntu-26.04", "amd64"),
        ("ubuntu-26.04-cloud-arm64", "ubuntu-26.04", "arm64"),
        ("ubuntu-24.04-cloud-amd64", "ubuntu-24.04", "amd64"),
        ("ubuntu-24.04-cloud-arm64", "ubuntu-24.04", "arm64"),
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [name, os, arch, "vm", "cloud-images.ubuntu.com"],
            "{line}"
        );
    }
    assert!(text.contains("release-YYYYMMDD[.N]"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&hi_ok(&["images", "--json"])).unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ubuntu-24.04-cloud-arm64")
        .unwrap();
    assert_eq!(row["arch"], "arm64");
    assert_eq!(
        row["from"],
        "https://cloud-images.ubuntu.com/releases/noble/"
    );
    assert_eq!(row["boards"], serde_json::json!(["vm"]));
}

#[test]
fn a_vm_profile_defaults_to_the_cloud_image_of_its_arch() {
    let key =
        std::fs::read_to_string(crate::profile_support::repo().join("profiles/single-lxd.yaml"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("- ssh-rsa ")
                    .map(|k| format!("ssh-rsa {k}"))
            })
            .expect("an SSH key in single-lxd.yaml");
    let dir = tempfile::tempdir().unwrap();
    for (arch, entry) in [
        (None, "ubuntu-24.04-cloud-amd64"),
        (Some("amd64"), "ubuntu-24.04-cloud-amd64"),
        (Some("arm64"), "ubuntu-24.04-cloud-arm64"),
    ] {
        let arch_line = arch.map_or(String::new(), |a| format!("    arch: {a}\n"));
        let profile = dir.path().join("vm.yaml");
        std::fs::write(
            &profile,
            format!(
                "nodes:\n  - hostname: vm1\n    image:\n      os: ubuntu-24.04\n    board: vm\n\
                 {arch_line}    network:\n      address: 10.0.10.5/24\n      gateway: 10.0.10.1\n\
                 \x20     dns: [10.0.10.1]\n    users:\n      - name: ops\n        ssh_keys:\n\
                 \x20         - {key}\n"
            ),
        )
        .unwrap();
        let out = bin()
            .arg("check")
            .arg("--profile")
            .arg(&profile)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--json")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(report["errors"], 0, "{report}");
        let not_checked = report["nodes"][0]["not_checked"].as_str().unwrap();
        assert!(
            not_checked.starts_with(&format!("{entry} is not in the cache")),
            "{arch:?}: {not_checked}"
        );
    }
}
