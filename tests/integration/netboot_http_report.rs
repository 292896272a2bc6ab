//! First-boot reporting (`status_url`): what `render` writes for it (the
//! 0600 env file with the URL and the node's token, the reporter in the
//! first-boot script) and the rendered script itself run by bash against
//! the real status server on 127.0.0.1 — its states arrive, its token is
//! the one `build` saved and `serve` loads, and a dead or silent server
//! costs a report at most its timeout.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use homelab_image::netboot::http::{Config, Tokens};
use homelab_image::profile::resolve::{Context, resolve};
use homelab_image::profile::state::{SeededEntropy, State};
use homelab_image::render::firstboot::{SCRIPT_PATH, STATE_DIR, STATUS_ENV_PATH};
use homelab_image::render::redact::redact;
use homelab_image::render::{BaseInfo, FileSpec, node};

use crate::netboot_http::nodes;
use crate::profile_support::{file, render_profile, repo};
use crate::render_golden::check_golden;

fn spec<'a>(specs: &'a [FileSpec], path: &str) -> &'a FileSpec {
    specs
        .iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
}

fn text(specs: &[FileSpec], path: &str) -> String {
    String::from_utf8(
        file(specs, path)
            .unwrap_or_else(|| panic!("no {path}"))
            .to_vec(),
    )
    .unwrap()
}

#[test]
fn status_url_renders_a_private_env_file_and_the_reporter() {
    let r = render_profile(&repo().join("tests/profiles/good/status-url.yaml"));
    for (name, specs) in &r.nodes {
        check_golden(
            &format!("status-url/{name}.txt"),
            &homelab_image::render::tree::to_text(specs).unwrap(),
        );
        let env = spec(specs, STATUS_ENV_PATH);
        assert_eq!((env.mode, env.uid, env.gid), (0o600, 0, 0));
        let token = r
            .state
            .status_token(name)
            .expect("a token per reporting node");
        assert_eq!(token.len(), 64);
        let env = text(specs, STATUS_ENV_PATH);
        assert!(env.contains(&format!("\nSTATUS_TOKEN={token}\n")), "{env}");
        let script = text(specs, SCRIPT_PATH);
        assert!(script.contains(&format!("readonly STATUS_ENV='{STATUS_ENV_PATH}'")));
        assert!(script.contains("    mv -f \"${tmp}\" \"${STATUS_FILE}\"\n    report_status \"${state}\" \"${reason}\"\n}"));
        assert!(!script.contains(token), "the token is in the script");
    }
    let pi1 = text(&r.nodes[0].1, STATUS_ENV_PATH);
    assert!(
        pi1.contains("STATUS_URL=http://10.0.10.2\nSTATUS_HOST=10.0.10.2\nSTATUS_PORT=80\n"),
        "{pi1}"
    );
    let pi2 = text(&r.nodes[1].1, STATUS_ENV_PATH);
    assert!(
        pi2.contains(
            "STATUS_URL=http://laptop.lan:8080\nSTATUS_HOST=laptop.lan\nSTATUS_PORT=8080\n"
        ),
        "{pi2}"
    );
    assert_ne!(r.state.status_token("pi1"), r.state.status_token("pi2"));
}

#[test]
fn without_status_url_nothing_reports_and_no_token_is_made() {
    let r = render_profile(&repo().join("profiles/single-lxd.yaml"));
    let specs = &r.nodes[0].1;
    assert!(file(specs, STATUS_ENV_PATH).is_none());
    let script = text(specs, SCRIPT_PATH);
    assert!(!script.contains("report_status"), "{script}");
    assert!(r.state.status_tokens.is_empty());
}

#[test]
fn render_hides_the_status_token() {
    let r = render_profile(&repo().join("tests/profiles/good/status-url.yaml"));
    let (name, specs) = &r.nodes[0];
    let token = r.state.status_token(name).unwrap();
    let shown = redact(
        &r.cluster.nodes[0],
        &r.cluster,
        &r.state,
        &BaseInfo::default(),
        specs,
    )
    .unwrap();
    let at = specs
        .iter()
        .position(|s| s.path == STATUS_ENV_PATH)
        .unwrap();
    assert!(shown.secret[at]);
    for body in shown.bodies.iter().flatten() {
        assert!(!String::from_utf8_lossy(body).contains(token));
    }
    let env = String::from_utf8_lossy(shown.bodies[at].as_deref().unwrap()).into_owned();
    assert!(
        env.contains("STATUS_TOKEN=<secret: 64 bytes, hidden"),
        "{env}"
    );
    assert!(env.contains("STATUS_URL=http://10.0.10.2\n"), "{env}");
}

#[test]
fn the_reporting_script_passes_bash_n_and_shellcheck() {
    let r = render_profile(&repo().join("tests/profiles/good/status-url.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("homelab-firstboot");
    std::fs::write(&path, text(&r.nodes[0].1, SCRIPT_PATH)).unwrap();
    let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("shellcheck")
        .args(["-s", "bash", "-S", "style"])
        .arg(&path)
        .output()
        .expect("shellcheck");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A node reporting to `url`, built into a state directory under `dir`:
/// its first-boot script and env file, and the state (tokens) `build` saved.
fn built(dir: &Path, url: &str) -> (String, String, std::path::PathBuf) {
    let profile_path = dir.join("homelab.yaml");
    let yaml = format!(
        "defaults:\n  image: {{os: ubuntu-24.04}}\n  board: rpi4\n  allow_no_login: true\n  status_url: {url}\n\
         nodes:\n  - hostname: pi1\n    network: {{address: 10.0.10.11/24}}\n\
         \x20 - hostname: pi2\n    network: {{address: 10.0.10.12/24}}\n"
    );
    std::fs::write(&profile_path, &yaml).unwrap();
    let profile = homelab_image::profile::load(&profile_path).unwrap();
    let ctx = Context {
        profile_path: profile_path.clone(),
        home: None,
        env: Box::new(|_| None),
    };
    let mut cluster = resolve(&profile, &ctx).unwrap().cluster;
    let state_dir = dir.join("state");
    cluster.state_dir = state_dir.clone();
    let state = State::prepare(&cluster, &mut SeededEntropy::new(b"report")).unwrap();
    let specs = node(&cluster.nodes[0], &cluster, &state).unwrap();
    (
        text(&specs, SCRIPT_PATH),
        text(&specs, STATUS_ENV_PATH),
        state_dir,
    )
}

/// Runs the rendered script's functions (everything but `main "$@"`) with
/// its state directory moved under `root`, then `calls`. Returns the
/// combined output and how long it took.
fn run_script(script: &str, env: &str, root: &Path, calls: &str) -> (String, Duration) {
    let lib = root.join("var-lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("status.env"), env).unwrap();
    let body = script
        .strip_suffix("main \"$@\"\n")
        .expect("the script ends by calling main")
        .replace(STATE_DIR, &lib.display().to_string());
    let path = root.join("firstboot.sh");
    std::fs::write(&path, format!("{body}\n{calls}\n")).unwrap();
    let started = Instant::now();
    let out = Command::new("bash").arg(&path).output().unwrap();
    let took = started.elapsed();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    (all, took)
}

#[test]
fn the_rendered_reporter_posts_each_state_to_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    // Bind first, so the URL the profile names is the server's.
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let (script, env, state_dir) = built(dir.path(), &format!("http://127.0.0.1:{port}"));
    // What `serve` does: the tokens `build` saved.
    let tokens = Tokens::load(&state_dir, ["pi1", "pi2", "pi3"]).unwrap();
    assert_eq!(tokens.missing(["pi1", "pi2", "pi3"]), vec!["pi3"]);
    let server = start_on(port, tokens);
    let hostile = r#"quote " backslash \ tab	newline
 non-ASCII é end"#;
    let (out, _) = run_script(
        &script,
        &env,
        dir.path(),
        &format!(
            "write_status running 1 'attempt 1 of 5'\nwrite_status failed 1 '{}'\nwrite_status done 2 'first boot finished'",
            hostile.replace('\'', "'\\''")
        ),
    );
    assert_eq!(out.matches("reported ").count(), 3, "{out}");
    let view = &server.registry.snapshot()[0];
    let got: Vec<(&str, Option<&str>)> = view
        .reports
        .iter()
        .map(|r| (r.state.as_str(), r.detail.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("running", Some("attempt 1 of 5")),
            (
                "failed",
                Some(r#"quote " backslash \ tab newline  non-ASCII    end"#)
            ),
            ("done", Some("first boot finished")),
        ]
    );
    assert_eq!(view.state.as_deref(), Some("done"));
    // The status file is written as before.
    let status = std::fs::read_to_string(dir.path().join("var-lib/firstboot.status")).unwrap();
    assert!(status.starts_with("state=done\nnode=pi1\n"), "{status}");
}

fn start_on(port: u16, tokens: Tokens) -> crate::netboot_http::Running {
    // The port was free a moment ago; retry briefly if another test took it.
    for _ in 0..50 {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::netboot_http::start_on_port(port, nodes(), tokens, Config::default())
}

#[test]
fn a_dead_or_silent_status_server_never_fails_nor_stalls_the_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    // Silent: the kernel accepts the connection, nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (script, env, _) = built(dir.path(), &format!("http://127.0.0.1:{port}"));
    let (out, took) = run_script(
        &script,
        &env,
        dir.path(),
        "write_status running 1 'attempt 1 of 5'\necho still-running",
    );
    assert!(
        out.contains("could not report running to the status server (continuing)"),
        "{out}"
    );
    assert!(out.contains("still-running"), "{out}");
    assert!(took < Duration::from_secs(9), "took {took:?}");
    assert!(took >= Duration::from_secs(4), "no timeout seen: {took:?}");
    // Dead: nothing listens; the report fails at once.
    drop(silent);
    let (out, took) = run_script(
        &script,
        &env,
        dir.path(),
        "write_status done 1 'first boot finished'\necho still-running",
    );
    assert!(out.contains("could not report done"), "{out}");
    assert!(out.contains("still-running"), "{out}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // A wrong token is refused by the server and says so, without the token.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    drop(other);
    let (script, env, _) = built(dir.path(), &format!("http://127.0.0.1:{port}"));
    let server = start_on(
        port,
        Tokens::from_pairs([("pi1".to_owned(), "0".repeat(64))]),
    );
    let (out, _) = run_script(&script, &env, dir.path(), "write_status running 1 'x'");
    assert!(
        out.contains("the status server answered: HTTP/1.1 401"),
        "{out}"
    );
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("STATUS_TOKEN="))
        .unwrap();
    assert!(!out.contains(token), "{out}");
    assert!(server.registry.snapshot()[0].reports.is_empty());
}
