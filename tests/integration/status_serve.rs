//! `status` reading a running `serve` (`serve --status-only` on loopback,
//! the profile's `status_url` pointing at it) instead of the nodes: what
//! the first-boot scripts reported, posted here with each node's token as
//! the scripts do; `--serve URL`; `--watch` until a node fails, on a pipe
//! and on a terminal.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::status_cmd::{KEYS, profile, stderr, stdout};
use crate::util::{bin, run_ok};

/// `serve --status-only` on loopback, with the profile's `status_url`
/// pointing at it; killed on drop.
struct StatusServer(Child);

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post_report(port: u16, node: &str, token: &str, state: &str, detail: &str) {
    let out = run_ok(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--retry", "20", "--retry-connrefused", "--retry-delay", "1"])
            .args(["-H", "Content-Type: application/json", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg("-d")
            .arg(serde_json::json!({"state": state, "detail": detail}).to_string())
            .arg(format!("http://127.0.0.1:{port}/api/nodes/{node}/status")),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
}

#[test]
fn status_reads_what_the_nodes_reported_to_serve_without_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = crate::netboot_serve::free_port_base();
    let port = base + 80;
    profile(dir, &format!("  status_url: http://127.0.0.1:{port}\n"));
    run_ok(bin().current_dir(dir).args([
        "-q",
        "--profile",
        "homelab.yaml",
        "build",
        "--node",
        "pi1",
    ]));
    let _server = StatusServer(
        bin()
            .current_dir(dir)
            .args(["-q", "--profile", "homelab.yaml", "serve", "--status-only"])
            .args(["--address", "127.0.0.1", "--port-base", &base.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let token = |node: &str| {
        std::fs::read_to_string(dir.join(format!(".homelab-state/nodes/{node}/status-token")))
            .unwrap()
            .trim()
            .to_owned()
    };
    // What pi1's first-boot script reports on a second, successful try.
    for (state, detail) in [
        ("running", "attempt 1 of 5"),
        ("running", "attempt 2 of 5"),
        ("done", "first boot finished"),
    ] {
        post_report(port, "pi1", &token("pi1"), state, detail);
    }
    post_report(port, "pi2", &token("pi2"), "running", "attempt 1 of 5");
    // pi3 has not reported. No node is asked over SSH (none is reachable
    // from here, and the test must not try): the server answers for all.
    let out = bin()
        .current_dir(dir)
        .args(["--profile", "homelab.yaml", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = v.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{v:#}");
    for n in nodes {
        let mut keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, KEYS, "{n:#}");
        assert_eq!(n["via"], "serve", "{n:#}");
        // What only SSH can tell is null, not guessed.
        for key in ["reachable", "cloud_init", "cluster"] {
            assert_eq!(n[key], Value::Null, "{key}: {n:#}");
        }
    }
    assert_eq!(nodes[0]["state"], "done");
    assert_eq!(nodes[0]["attempt"], 2);
    assert_eq!(nodes[0]["reason"], "first boot finished");
    assert!(
        nodes[0]["updated"]
            .as_str()
            .is_some_and(|u| u.len() == 20 && u.ends_with('Z') && u.as_bytes()[10] == b'T'),
        "{v:#}"
    );
    assert_eq!(nodes[0]["error"], Value::Null, "{v:#}");
    assert_eq!(nodes[1]["state"], "running");
    assert_eq!(nodes[1]["attempt"], 1);
    assert_eq!(nodes[2]["state"], Value::Null);
    assert_eq!(nodes[2]["error"], "no first-boot report yet");

    // The table says where the rows came from; --watch follows the server
    // until pi2 fails.
    let out = bin()
        .current_dir(dir)
        .args(["--profile", "homelab.yaml", "status"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("pi1 ") && l.contains("(serve)") && l.contains(" done ")),
        "{text}"
    );
    let mut watch = bin()
        .current_dir(dir)
        .args([
            "--profile",
            "homelab.yaml",
            "status",
            "--watch",
            "--interval",
            "1",
        ])
        .args(["--node", "pi1", "--node", "pi2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "--watch ended with pi2 running"
    );
    post_report(
        port,
        "pi2",
        &token("pi2"),
        "failed",
        "microcloud preseed failed",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "--watch did not end after pi2 failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = watch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: pi2: the first boot failed (attempt 1): microcloud preseed failed"
    );
    // On a pipe, the first round is the table and later rounds only what
    // changed: pi2's row.
    let text = stdout(&out);
    assert_eq!(text.matches("NODE  ADDRESS").count(), 1, "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pi2 ") && last.contains("failed"),
        "{text}"
    );

    // On a terminal (script(1) gives it one) the table is redrawn from
    // the top of a cleared screen, with when it was asked.
    let exe = bin().get_program().to_owned();
    let out = run_ok(
        Command::new("script")
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .args(["-qec"])
            .arg(format!(
                "{} --profile homelab.yaml status --watch --node pi1",
                exe.to_str().unwrap()
            ))
            .arg("/dev/null"),
    );
    let screen = stdout(&out);
    assert!(
        screen.starts_with("\x1b[H\x1b[2JNODE  ADDRESS"),
        "{screen:?}"
    );
    assert!(
        screen.contains("asked at ") && screen.contains("again every 5 s"),
        "{screen:?}"
    );

    // --serve names the server to read; one that does not answer is
    // each node's error, and nothing is asked over SSH instead.
    let serve = |url: &str| {
        let out = bin()
            .current_dir(dir)
            .args([
                "--profile",
                "homelab.yaml",
                "status",
                "--json",
                "--serve",
                url,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = serve(&format!("http://127.0.0.1:{port}"));
    assert_eq!(v[0]["state"], "done", "{v:#}");
    let v = serve("http://127.0.0.1:1");
    for n in v.as_array().unwrap() {
        assert_eq!(n["via"], "serve", "{n:#}");
        assert_eq!(n["state"], Value::Null, "{n:#}");
        assert!(
            n["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("status server http://127.0.0.1:1: GET ")),
            "{n:#}"
        );
    }
}
