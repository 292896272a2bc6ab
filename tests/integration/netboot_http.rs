//! The HTTP status server of `netboot` against real clients over loopback:
//! curl for the API (shape, tokens, limits), raw sockets for the connection
//! bounds, and headless Chromium for the page (its DOM after the script
//! ran, a screenshot, and a reported detail that tries to inject markup).
//! The server binds 127.0.0.1 on an ephemeral port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use homelab_image::netboot::http::{Config, Stats, StatusServer, Tokens};
use homelab_image::netboot::registry::{NodeId, Protocol, Registry};
use homelab_image::profile::net::MacAddr;
use homelab_image::profile::netboot::PiSerial;

pub const TOKEN1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TOKEN2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// A status server on its own thread and runtime, stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// pi1 (serial, MAC, address) and pi2 (address only).
pub fn nodes() -> Vec<NodeId> {
    vec![
        NodeId {
            name: "pi1".into(),
            serial: Some(PiSerial::parse("abcd1234").unwrap()),
            mac: Some(MacAddr::parse("dc:a6:32:01:02:03").unwrap()),
            address: Some(Ipv4Addr::new(10, 0, 10, 11)),
        },
        NodeId {
            name: "pi2".into(),
            serial: None,
            mac: None,
            address: Some(Ipv4Addr::new(10, 0, 10, 12)),
        },
    ]
}

pub fn start_with(nodes: Vec<NodeId>, tokens: Tokens, config: Config) -> Running {
    start_on_port(0, nodes, tokens, config)
}

/// A server on 127.0.0.1:`port` (0: any free port).
pub fn start_on_port(port: u16, nodes: Vec<NodeId>, tokens: Tokens, config: Config) -> Running {
    let registry = Arc::new(Registry::new(nodes));
    let server = StatusServer::bind_with(Ipv4Addr::LOCALHOST.into(), port, config)
        .expect("binding 127.0.0.1");
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let reg = Arc::clone(&registry);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let task = tokio::spawn(server.run(reg, tokens));
            let _ = rx.await;
            task.abort();
        });
    });
    Running {
        addr,
        registry,
        stats,
        stop: Some(tx),
        thread: Some(thread),
    }
}

fn start() -> Running {
    let tokens = Tokens::from_pairs([
        ("pi1".to_owned(), TOKEN1.to_owned()),
        ("pi2".to_owned(), TOKEN2.to_owned()),
    ]);
    start_with(nodes(), tokens, Config::default())
}

/// curl's status code and body for one request.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    assert!(out.status.success(), "curl {args:?} {url}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (code.parse().expect("a status code"), body.to_owned())
}

fn post(r: &Running, node: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    curl(&args, &r.url(&format!("/api/nodes/{node}/status")))
}

fn nodes_json(r: &Running) -> serde_json::Value {
    let (code, body) = curl(&[], &r.url("/api/nodes"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn api_nodes_lists_every_node_with_its_traffic_and_reports() {
    let r = start();
    let from = "192.168.1.57".parse().unwrap();
    r.registry
        .record("pi1", Protocol::Tftp, Some(from), "start4.elf", 2048, 0);
    r.registry
        .record("pi1", Protocol::Nbd, Some(from), "pi1", 4096, 512);
    let v = nodes_json(&r);
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let pi1 = &list[0];
    assert_eq!(
        keys(pi1),
        [
            "address", "dhcp", "mac", "name", "nbd", "reports", "seen_at", "serial", "state",
            "tftp"
        ]
    );
    assert_eq!(
        keys(&pi1["tftp"]),
        [
            "bytes_served",
            "bytes_written",
            "last",
            "last_what",
            "requests"
        ]
    );
    assert_eq!(pi1["name"], "pi1");
    assert_eq!(pi1["serial"], "abcd1234");
    assert_eq!(pi1["mac"], "dc:a6:32:01:02:03");
    assert_eq!(pi1["address"], "10.0.10.11");
    assert_eq!(pi1["seen_at"], serde_json::json!(["192.168.1.57"]));
    assert_eq!(pi1["tftp"]["bytes_served"], 2048);
    assert_eq!(pi1["tftp"]["last_what"], "start4.elf");
    assert_eq!(pi1["nbd"]["bytes_written"], 512);
    assert!(pi1["dhcp"]["last"].is_null());
    assert!(pi1["state"].is_null());
    assert_eq!(list[1]["name"], "pi2");
    assert!(list[1]["serial"].is_null());
}

#[test]
fn a_report_with_the_nodes_token_is_stored_and_every_bad_one_refused() {
    let r = start();
    let good = r#"{"state": "running", "detail": "attempt 1 of 5"}"#;
    // Refusals first: none of them may leave a trace.
    let cases: [(&str, Option<&str>, &str, u16, &str); 9] = [
        ("pi1", None, good, 401, "Bearer"),
        ("pi1", Some(TOKEN2), good, 401, "wrong status token"),
        ("pi1", Some(&TOKEN1[..63]), good, 401, "wrong status token"),
        ("pi9", Some(TOKEN1), good, 404, "no such node"),
        ("pi1", Some(TOKEN1), "{\"state\": ", 400, "not JSON"),
        (
            "pi1",
            Some(TOKEN1),
            r#"{"state": "running", "extra": 1}"#,
            400,
            "not JSON",
        ),
        (
            "pi1",
            Some(TOKEN1),
            r#"{"state": "pwned"}"#,
            422,
            "not one of running, done, failed",
        ),
        (
            "pi1",
            Some(TOKEN1),
            &format!(r#"{{"state": "done", "detail": "{}"}}"#, "é".repeat(513)),
            422,
            "longer than 512",
        ),
        (
            "pi1",
            Some(TOKEN1),
            &format!(r#"{{"state": "done", "detail": "{}"}}"#, "x".repeat(4100)),
            413,
            "",
        ),
    ];
    for (node, token, body, code, needle) in cases {
        let (got, text) = post(&r, node, token, body);
        assert_eq!(got, code, "{node} {token:?} {body:.60}: {text}");
        assert!(text.contains(needle), "{code}: {text}");
    }
    let v = nodes_json(&r);
    assert!(v[0]["reports"].as_array().unwrap().is_empty(), "{v}");
    // A GET on the report URL is no report either.
    let (code, _) = curl(&[], &r.url("/api/nodes/pi1/status"));
    assert_eq!(code, 405);
    // 512 characters of two bytes each is within both limits.
    let (code, text) = post(&r, "pi1", Some(TOKEN1), good);
    assert_eq!(code, 204, "{text}");
    let full = format!(r#"{{"state": "done", "detail": "{}"}}"#, "é".repeat(512));
    let (code, text) = post(&r, "pi1", Some(TOKEN1), &full);
    assert_eq!(code, 204, "{text}");
    let v = nodes_json(&r);
    assert_eq!(v[0]["state"], "done");
    let reports = v[0]["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["state"], "running");
    assert_eq!(reports[0]["detail"], "attempt 1 of 5");
    assert!(reports[1]["at"].as_u64().unwrap() > 1_600_000_000);
    // pi2's token is pi2's only.
    assert!(v[1]["state"].is_null());
}

#[test]
fn connections_beyond_the_limit_and_silent_ones_are_closed() {
    let config = Config {
        max_connections: 2,
        header_timeout: Duration::from_secs(1),
        connection_limit: Duration::from_secs(30),
    };
    let r = start_with(nodes(), Tokens::default(), config);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(r.addr).unwrap())
        .collect();
    // Let the server accept both before the third arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(r.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /api/nodes HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = third.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the third connection was served");
    assert_eq!(r.stats.turned_away.load(Ordering::Relaxed), 1);
    // The two that never sent a header are closed after header_timeout.
    let started = Instant::now();
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            n == 0 || buf.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            &buf[..n]
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Slots are free again.
    std::thread::sleep(Duration::from_millis(200));
    let v = nodes_json(&r);
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn a_busy_connection_is_closed_at_its_time_limit() {
    let config = Config {
        max_connections: 4,
        header_timeout: Duration::from_secs(2),
        connection_limit: Duration::from_secs(2),
    };
    let r = start_with(nodes(), Tokens::default(), config);
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answers = 0;
    let mut buf = vec![0u8; 64 * 1024];
    // Keep-alive requests every 200 ms: a client that never goes idle.
    let closed = loop {
        if s.write_all(b"GET /api/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break true;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break true,
            Ok(n) => {
                answers += usize::from(buf[..n].starts_with(b"HTTP/1.1 200"));
            }
        }
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(closed, "the connection outlived its limit");
    assert!(answers >= 3, "{answers} answers");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(r.stats.timed_out.load(Ordering::Relaxed), 1);
}

#[test]
fn an_oversized_request_head_is_refused() {
    let r = start();
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "GET /api/nodes HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(head.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(!answer.contains("pi1"), "{answer}");
}

#[test]
fn binding_a_port_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = StatusServer::bind(Ipv4Addr::LOCALHOST.into(), port)
        .err()
        .expect("the port is taken");
    let text = format!("{err}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("status server"),
        "{text}"
    );
}

/// The headless Chromium binary, or why the page tests cannot run.
fn chromium() -> Option<&'static str> {
    [
        "chromium-headless-shell",
        "/usr/lib/chromium/headless_shell",
    ]
    .into_iter()
    .find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Chromium run on `url` with `args`, in its own profile directory, with
/// time for the page's script to fetch `/api/nodes` once.
fn run_chromium(bin: &str, dir: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(out.status.success(), "chromium: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr …>` opening tag of `node`'s row in a DOM dump.
fn row_tag<'a>(dom: &'a str, node: &str) -> &'a str {
    let needle = format!("data-node=\"{node}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no row for {node} in {dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

#[test]
fn the_page_in_chromium_shows_each_nodes_reported_state() {
    let Some(bin) = chromium() else {
        eprintln!("skipped: no chromium-headless-shell");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = start();
    let (code, text) = post(
        &r,
        "pi1",
        Some(TOKEN1),
        r#"{"state": "done", "detail": "first boot finished"}"#,
    );
    assert_eq!(code, 204, "{text}");
    r.registry.record(
        "pi2",
        Protocol::Tftp,
        Some("10.0.10.12".parse().unwrap()),
        "abcd1234/start4.elf",
        1536,
        0,
    );
    // The page as served (what a browser without JavaScript shows)...
    let (code, served) = curl(&[], &r.url("/"));
    assert_eq!(code, 200);
    assert!(served.contains("<meta http-equiv=\"refresh\""), "{served}");
    assert!(row_tag(&served, "pi1").contains("data-state=\"done\""));
    assert!(row_tag(&served, "pi2").contains("data-state=\"none\""));
    assert!(served.contains("1 of 2 nodes done"), "{served}");
    assert!(served.contains("1 req, 1.5 KiB served"), "{served}");
    // ...and after the script redrew it from /api/nodes.
    let dom = run_chromium(bin, dir.path(), &["--dump-dom"], &r.url("/"));
    // The script ran (the CSP let it) and drew the rows from /api/nodes.
    assert!(dom.contains("data-live=\"1\""), "{dom}");
    let pi1 = row_tag(&dom, "pi1");
    assert!(pi1.contains("data-state=\"done\""), "{pi1}");
    let pi2 = row_tag(&dom, "pi2");
    assert!(pi2.contains("data-state=\"none\""), "{pi2}");
    assert!(dom.contains("1 of 2 nodes done"), "{dom}");
    assert!(dom.contains("first boot finished"), "{dom}");
    assert!(dom.contains("abcd1234/start4.elf"), "{dom}");
    assert!(dom.contains("1 req, 1.5 KiB served"), "{dom}");
    // A screenshot of the same page is a PNG of the window's size.
    let png = dir.path().join("status.png");
    run_chromium(
        bin,
        dir.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,720",
        ],
        &r.url("/"),
    );
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 720));
    assert!(bytes.len() > 5_000, "{} bytes: an empty page?", bytes.len());
}

#[test]
fn a_hostile_detail_is_shown_as_text_and_creates_nothing() {
    let Some(bin) = chromium() else {
        eprintln!("skipped: no chromium-headless-shell");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = start();
    let hostile = "<script>document.body.setAttribute('data-pwned','1')</script>\
                   <img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">\
                   <b id=\"injected\">bold</b>";
    let body = serde_json::json!({"state": "failed", "detail": hostile}).to_string();
    let (code, text) = post(&r, "pi1", Some(TOKEN1), &body);
    assert_eq!(code, 204, "{text}");
    // As served (before the script redraws) and after the script ran.
    let (code, served) = curl(&[], &r.url("/"));
    assert_eq!(code, 200);
    let dom = run_chromium(bin, dir.path(), &["--dump-dom"], &r.url("/"));
    for (what, page) in [("served", &served), ("in Chromium", &dom)] {
        assert!(
            page.contains("&lt;script&gt;document.body.setAttribute("),
            "{what}: the detail is not shown as text: {page}"
        );
        assert_eq!(page.matches("<script").count(), 1, "{what}: {page}");
        assert!(!page.contains("<img"), "{what}: {page}");
        assert!(!page.contains("<b id=\"injected\""), "{what}: {page}");
        assert!(!page.contains("data-pwned=\""), "{what}: {page}");
    }
    assert!(dom.contains("data-live=\"1\""), "{dom}");
    assert!(row_tag(&dom, "pi1").contains("data-state=\"failed\""));
}
