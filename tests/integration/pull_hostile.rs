//! `pull` against servers that misbehave without end: each reply cut short,
//! a range answered from the wrong byte or with the wrong size, every range
//! ignored, bytes dripped, a redirect to `file://`. Whatever the failure,
//! `--retries N` allows at most N+1 requests for the file, and the error
//! counts what went wrong. A run that does not end is killed, so a test
//! fails rather than hangs.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::http_server::{Route, Server};
use crate::pull_support::{sha, stderr, xz_image};
use crate::util::{assert_fails, bin};

/// Longer than any bounded run here takes; a run still going is killed.
const LIMIT: Duration = Duration::from_secs(45);

/// Runs `cmd`, killing it after `LIMIT`; returns its output and whether it
/// ended by itself.
fn run_bounded(cmd: &mut Command) -> (Output, bool) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning homelab-image");
    let started = Instant::now();
    let ended = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (child.wait_with_output().unwrap(), ended)
}

/// `pull URL --sha256 …` of `path` on `server` with `--retries retries`
/// and `--read-timeout read_timeout`, then checks that it failed by itself
/// and made at most retries + 1 requests. Returns stderr.
fn pull_gives_up(server: &Server, path: &str, retries: u32, read_timeout: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let (out, ended) = run_bounded(
        bin()
            .args([
                "pull",
                "-q",
                "--retry-delay",
                "0",
                "--read-timeout",
                read_timeout,
            ])
            .arg("--retries")
            .arg(retries.to_string())
            .arg("--cache-dir")
            .arg(cache.path())
            .arg(server.url(path))
            .args(["--sha256", &sha(xz_image())]),
    );
    let requests = server.hits(path).len();
    assert!(
        ended,
        "still running after {LIMIT:?} and {requests} requests:\n{}",
        stderr(&out)
    );
    assert!(
        requests <= retries as usize + 1,
        "{requests} requests with --retries {retries}:\n{}",
        stderr(&out)
    );
    assert_fails(
        &out,
        1,
        &[
            &server.url(path),
            &format!(
                "gave up after {} failed attempt{}",
                retries + 1,
                if retries == 0 { "" } else { "s" }
            ),
        ],
    );
    stderr(&out)
}

#[test]
fn a_server_that_cuts_every_reply_short_is_given_up_on_within_the_retry_budget() {
    let server = Server::start();
    server.route(
        "/img.xz",
        Route {
            body: xz_image().to_vec(),
            reply_limit: Some(4096),
            ..Route::default()
        },
    );
    let err = pull_gives_up(&server, "/img.xz", 2, "5");
    assert!(err.contains("(3 cut short)"), "{err}");
    // Each reply brought new bytes: progress does not refill the budget.
    let hits = server.hits("/img.xz");
    assert_eq!(hits[1].range.as_deref(), Some("bytes=4096-"), "{hits:?}");
    assert_eq!(hits[2].range.as_deref(), Some("bytes=8192-"), "{hits:?}");
}

#[test]
fn a_range_answered_from_the_wrong_start_counts_against_the_retry_budget() {
    let server = Server::start();
    server.route(
        "/img.xz",
        Route {
            body: xz_image().to_vec(),
            reply_limit: Some(4096),
            range_skew: 100,
            ..Route::default()
        },
    );
    let err = pull_gives_up(&server, "/img.xz", 2, "5");
    assert!(
        err.contains("2 cut short, 1 a range from the wrong start"),
        "{err}"
    );
    let hits = server.hits("/img.xz");
    assert_eq!(hits[1].status, 206, "{hits:?}");
    // It started over rather than splice the wrong bytes on.
    assert_eq!(hits[2].range, None, "{hits:?}");
}

#[test]
fn a_range_answered_with_the_wrong_total_counts_against_the_retry_budget() {
    let server = Server::start();
    server.route(
        "/img.xz",
        Route {
            body: xz_image().to_vec(),
            reply_limit: Some(4096),
            total_skew: 1,
            ..Route::default()
        },
    );
    let err = pull_gives_up(&server, "/img.xz", 2, "5");
    assert!(
        err.contains("2 cut short, 1 a range with the wrong total size"),
        "{err}"
    );
    let hits = server.hits("/img.xz");
    assert_eq!(hits[2].range, None, "{hits:?}");
}

#[test]
fn a_server_that_ignores_ranges_and_cuts_every_reply_is_given_up_on() {
    let server = Server::start();
    server.route(
        "/img.xz",
        Route {
            body: xz_image().to_vec(),
            reply_limit: Some(4096),
            ignore_range: true,
            ..Route::default()
        },
    );
    let err = pull_gives_up(&server, "/img.xz", 3, "5");
    assert!(err.contains("(4 cut short)"), "{err}");
    assert!(
        server.hits("/img.xz").iter().all(|h| h.status == 200),
        "{:?}",
        server.hits("/img.xz")
    );
}

#[test]
fn a_server_that_drips_bytes_is_given_up_on_as_too_slow() {
    let server = Server::start();
    server.route(
        "/img.xz",
        Route {
            body: xz_image().to_vec(),
            chunk_size: Some(64),
            chunk_delay: Some(Duration::from_millis(20)),
            ..Route::default()
        },
    );
    // 3 KiB/s never starves a 0.5 s read timeout, but is far below the
    // floor of 16 KiB per read timeout.
    let started = Instant::now();
    let err = pull_gives_up(&server, "/img.xz", 1, "0.5");
    assert!(err.contains("(2 too slow)"), "{err}");
    assert!(err.contains("--read-timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_redirect_to_a_file_url_is_refused_naming_the_scheme() {
    let server = Server::start();
    for (path, to, shown, scheme) in [
        (
            "/r.img.xz",
            "file:///etc/passwd",
            "file:///etc/passwd",
            "file",
        ),
        (
            "/f.img.xz",
            "ftp://bob:pw1234@127.0.0.1/x.img.xz",
            "ftp://bob:***@127.0.0.1/x.img.xz",
            "ftp",
        ),
    ] {
        server.route(
            path,
            Route {
                redirect: Some(to.to_owned()),
                ..Route::default()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let out = bin()
            .args(["pull", "-q", "--retry-delay", "0", "--cache-dir"])
            .arg(cache.path())
            .arg(server.url(path))
            .args(["--sha256", &"0".repeat(64)])
            .output()
            .unwrap();
        assert_fails(
            &out,
            1,
            &[
                &format!("GET {}: the server redirects to {shown}", server.url(path)),
                &format!("scheme ({scheme}) is refused"),
                "only http and https redirects are followed",
            ],
        );
        let err = stderr(&out);
        assert!(!err.contains("302"), "{err}");
        assert!(!err.contains("pw1234"), "{err}");
        // Refused, not retried.
        assert_eq!(server.hits(path).len(), 1);
    }
}
