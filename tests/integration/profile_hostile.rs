//! Hostile profiles (issue 12 #1, #6, #14, #20, #23, #24): fields that would
//! forge lines of `/etc/passwd`, profile-named files that never end or block,
//! `files[]` over paths the build writes itself, authorized_keys options,
//! key files of the wrong kind, a state directory with a mismatched or
//! readable host key, and reserved user ids. Each is refused by `check` with
//! the file and the field named, before anything is written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use homelab_image::profile::resolve::{Context, resolve};
use homelab_image::profile::state::{SeededEntropy, State};

use crate::profile_support::tempdir;
use crate::util::{bin, extract_partition, fixture, our_partition, run_ok};

const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop";
const BOB_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";

/// A one-node Armbian profile on the single-root GPT fixture; `user` is
/// YAML appended to alice's entry, `node` to the node's.
fn armbian(dir: &Path, user: &str, node: &str) -> PathBuf {
    let text = format!(
        "nodes:
  - hostname: rock1
    image: {{os: armbian, path: {img}}}
    board: rock-5b
    network: {{address: 192.168.1.21/24, gateway: 192.168.1.1}}
    users:
      - name: alice
        ssh_keys: ['{ALICE_KEY}']
{user}
{node}
",
        img = fixture("armbian-single-gpt.img").display()
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

fn run(profile: &Path, args: &[&str]) -> Output {
    let dir = profile.parent().expect("dir");
    bin()
        .current_dir(dir)
        .env("HOME", dir)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .output()
        .expect("spawn")
}

/// Asserts `check` refuses `profile` with every fragment in its stderr.
fn refused(profile: &Path, fragments: &[&str]) -> String {
    let out = run(profile, &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "check passed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for f in fragments {
        assert!(stderr.contains(f), "{f:?} not in:\n{stderr}");
    }
    stderr
}

fn accepted(profile: &Path) {
    let out = run(profile, &["check"]);
    assert!(
        out.status.success(),
        "check refused:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The line and column at which `needle` starts in the profile, as
/// `file:line:column` messages print them.
fn position(profile: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(profile).expect("read");
    let at = text.find(needle).expect("needle in profile");
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("homelab.yaml:{line}:{col}:")
}

fn debugfs_cat(img: &Path, path: &str, tmp: &Path) -> String {
    let (start, len) = our_partition(img, 1);
    let part = tmp.join("root.ext4");
    extract_partition(img, start, len, &part);
    let out = run_ok(
        Command::new("/usr/sbin/debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&part),
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn gecos_with_a_newline_cannot_forge_a_root_account() {
    let dir = tempdir();
    // The reproduction of issue 12 #1: a second, passwordless uid-0 line.
    let p = armbian(dir.path(), r#"        gecos: "x\nroot2::0:0:""#, "");
    refused(
        &p,
        &[
            &position(&p, r#""x\n"#),
            "gecos",
            "':'",
            "control characters",
        ],
    );
    let out_dir = dir.path().join("out");
    let out = run(
        &p,
        &["build", "--all", "--out", out_dir.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gecos"), "{stderr}");
    assert!(
        !out_dir.exists(),
        "a refused build wrote {}",
        out_dir.display()
    );
    // A colon alone, a tab and a NUL are refused the same way.
    for bad in [r#""Alice:0:0""#, r#""Alice\tExample""#, r#""Alice\0""#] {
        let p = armbian(dir.path(), &format!("        gecos: {bad}"), "");
        refused(&p, &[&position(&p, bad), "gecos"]);
    }
}

#[test]
fn a_valid_gecos_lands_in_etc_passwd_as_written() {
    let dir = tempdir();
    let p = armbian(
        dir.path(),
        "        gecos: Alice Example,Room 4,+49 30 1234,",
        "",
    );
    let out = dir.path().join("out");
    let o = run(
        &p,
        &["build", "--all", "--out", out.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let passwd = debugfs_cat(&out.join("rock1.img"), "/etc/passwd", dir.path());
    let alice: Vec<&str> = passwd.lines().filter(|l| l.starts_with("alice:")).collect();
    assert_eq!(
        alice,
        ["alice:x:1000:1000:Alice Example,Room 4,+49 30 1234,:/home/alice:/bin/bash"],
        "{passwd}"
    );
    assert!(
        passwd.lines().all(|l| l.split(':').count() == 7),
        "every line keeps seven fields:\n{passwd}"
    );
}

#[test]
fn fields_of_line_based_files_refuse_separators() {
    let dir = tempdir();
    // (YAML appended to alice, the text at which the error points, a word
    // of the message)
    let cases = [
        (
            r#"        shell: "/bin/sh\nroot2::0:0::/:/bin/sh""#,
            r#""/bin/sh\n"#,
            "shell",
        ),
        (r#"        groups: ["sudo\nroot2"]"#, r#""sudo\n"#, "group"),
        (
            "      - name: bob\n        ssh_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs a\\rb\"]",
            "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs a",
            "control character",
        ),
    ];
    for (user, at, word) in cases {
        let p = armbian(dir.path(), user, "");
        refused(&p, &[&position(&p, at), word]);
    }
}

/// Runs `check`, failing the test if it has not ended within 20 s (a read
/// that blocks on a FIFO never ends).
fn check_with_deadline(profile: &Path) -> Output {
    let mut child = bin()
        .arg("--profile")
        .arg(profile)
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check of {} did not end (blocked read?)", profile.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn profile_named_files_are_regular_and_bounded() {
    let dir = tempdir();
    let fifo = dir.path().join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(64 << 20))
        .expect("sparse file");
    let zero_link = dir.path().join("zero-link");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).expect("symlink");
    let subdir = dir.path().join("subdir");
    std::fs::create_dir(&subdir).expect("mkdir");
    // (kind, YAML that names SRC, the kind's name in the limit message)
    let kinds = [
        (
            "",
            "    files: [{path: /etc/motd, source: SRC}]",
            "files[0].source",
        ),
        ("        ssh_key_files: [SRC]", "", "ssh_key_files[0]"),
        (
            "        hash_password: true\n        password: {file: SRC}",
            "",
            "password",
        ),
        (
            "",
            "    wifi: {ssid: lab, password: {file: SRC}}",
            "wifi.password",
        ),
        (
            "",
            "microcloud:\n  initiator: rock1\n  lookup_subnet: 192.168.1.0/24\n  session_passphrase: {file: SRC}",
            "session_passphrase",
        ),
    ];
    let targets: [(&Path, &str); 5] = [
        (Path::new("/dev/zero"), "character device"),
        (&zero_link, "character device"),
        (&fifo, "FIFO"),
        (&subdir, "directory"),
        (&huge, "limited to"),
    ];
    for (user, node, field) in kinds {
        for (target, why) in targets {
            let t = target.to_str().expect("utf-8");
            let p = armbian(dir.path(), &user.replace("SRC", t), &node.replace("SRC", t));
            let out = check_with_deadline(&p);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{field} = {t}: {stderr}");
            for needle in [field, t, why] {
                assert!(
                    stderr.contains(needle),
                    "{field} = {t}: {needle:?} not in {stderr}"
                );
            }
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    // A symlink to a small regular file is followed and read.
    let motd = dir.path().join("motd");
    std::fs::write(&motd, "hello\n").expect("write");
    let link = dir.path().join("motd-link");
    std::os::unix::fs::symlink(&motd, &link).expect("symlink");
    let p = armbian(
        dir.path(),
        "",
        &format!(
            "    files: [{{path: /etc/motd, source: {}}}]",
            link.display()
        ),
    );
    accepted(&p);
}

#[test]
fn check_refuses_files_over_paths_the_build_writes() {
    let dir = tempdir();
    let generated = [
        "/etc/hostname",
        "/etc/hosts",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
        "/etc/ssh/homelab/ssh_host_ed25519_key",
        "/etc/ssh/homelab/ssh_host_ed25519_key.pub",
        "/etc/ssh/homelab",
        "/etc/ssh/sshd_config.d/10-homelab.conf",
        "/etc/netplan/30-homelab.yaml",
        "/etc/systemd/system/homelab-firstboot.service",
        "/etc/systemd/system/multi-user.target.wants/homelab-firstboot.service",
        "/usr/local/sbin/homelab-firstboot",
        "/var/lib/homelab-image/microcloud-preseed.yaml",
        "/var/lib/homelab-image/manifest.json",
        "/var/lib/homelab-image/firstboot.done",
        "/home/alice/.ssh/authorized_keys",
        "/etc/hostname/below-a-file",
        "/home",
        "/root/.not_logged_in_yet",
    ];
    for path in generated {
        let p = armbian(
            dir.path(),
            "",
            &format!("    files: [{{path: {path}, content: x}}]"),
        );
        refused(
            &p,
            &["node rock1: files[0].path", path, "homelab-image writes"],
        );
        // The build stops at the same profile error, before any image.
        if path.contains("wants") {
            let out_dir = dir.path().join("out");
            let out = run(
                &p,
                &["build", "--all", "--out", out_dir.to_str().expect("utf-8")],
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("files[0].path"), "{stderr}");
            for internal in ["planned", "links to", "too long"] {
                assert!(!stderr.contains(internal), "{stderr}");
            }
            assert!(!out_dir.exists());
        }
    }
    // Beside generated files and inside generated directories is fine.
    for path in [
        "/etc/hostname.d/x",
        "/home/alice/.hushlogin",
        "/etc/ssh/sshd_config.d/20-mine.conf",
    ] {
        let p = armbian(
            dir.path(),
            "",
            &format!("    files: [{{path: {path}, content: x}}]"),
        );
        accepted(&p);
    }
    // ext4's NAME_MAX (255 bytes) and Linux's PATH_MAX (4096 with its NUL).
    let long_name = format!("/etc/{}", "n".repeat(256));
    let p = armbian(
        dir.path(),
        "",
        &format!("    files: [{{path: {long_name}, content: x}}]"),
    );
    refused(&p, &[&position(&p, &long_name), "255"]);
    let ok_name = format!("/etc/{}", "n".repeat(255));
    accepted(&armbian(
        dir.path(),
        "",
        &format!("    files: [{{path: {ok_name}, content: x}}]"),
    ));
    let long_path = "/d".repeat(3000);
    let p = armbian(
        dir.path(),
        "",
        &format!("    files: [{{path: {long_path}, content: x}}]"),
    );
    let stderr = refused(&p, &[&position(&p, &long_path), "4095"]);
    assert!(
        stderr.len() < 2000,
        "the message repeats the whole path:\n{stderr}"
    );
}

#[test]
fn authorized_keys_options_are_kept_and_checked() {
    let dir = tempdir();
    let lines = [
        format!("from=\"10.0.0.0/8\" {BOB_KEY}"),
        format!("command=\"echo hello world\",no-pty {BOB_KEY} bob@desk"),
        format!("restrict,pty,environment=\"A=b c\" {ALICE_KEY}"),
    ];
    let yaml: Vec<String> = lines.iter().map(|l| format!("          - '{l}'")).collect();
    let p = armbian(
        dir.path(),
        &format!(
            "        ssh_key_files: []\n      - name: bob\n        ssh_keys:\n{}",
            yaml.join("\n")
        ),
        "",
    );
    accepted(&p);
    let tree = dir.path().join("tree");
    let out = run(
        &p,
        &[
            "render",
            "--node",
            "rock1",
            "--out",
            tree.to_str().expect("utf-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = tree.join("root/home/bob/.ssh/authorized_keys");
    let text = std::fs::read_to_string(&keys).expect("authorized_keys");
    assert_eq!(text, format!("{}\n", lines.join("\n")));
    // OpenSSH reads every line, options and all.
    let listed = run_ok(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&keys));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 3);
    // An option sshd does not know makes it skip the key: say so.
    let p = armbian(
        dir.path(),
        &format!("      - name: bob\n        ssh_keys: ['no-ptty {BOB_KEY}']"),
        "",
    );
    refused(&p, &["no-ptty", "option"]);
}

#[test]
fn key_files_of_the_wrong_kind_are_named_plainly() {
    let dir = tempdir();
    let private = dir.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&private),
    );
    let p = armbian(
        dir.path(),
        &format!("        ssh_key_files: [{}]", private.display()),
        "",
    );
    let stderr = refused(&p, &["ssh_key_files[0]", "private key", ".pub"]);
    assert!(!stderr.contains("Base64"), "{stderr}");
    // A public key where the state directory keeps a private one.
    let p = armbian(dir.path(), "", "");
    let state = dir.path().join(".homelab-state/nodes/rock1");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::copy(
        private.with_extension("pub"),
        state.join("ssh_host_ed25519_key"),
    )
    .expect("copy");
    let out = run(&p, &["render", "--node", "rock1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("NUL"), "{stderr}");
    assert!(stderr.contains("ssh_host_ed25519_key"), "{stderr}");
    assert!(stderr.contains("not an OpenSSH private key"), "{stderr}");
}

/// The resolved cluster of `profile` with its state directory in `state`.
fn cluster(profile: &Path, state: &Path) -> homelab_image::profile::Cluster {
    let parsed = homelab_image::profile::load(profile).expect("load");
    let ctx = Context {
        profile_path: profile.to_owned(),
        home: None,
        env: Box::new(|_| None),
    };
    let mut c = resolve(&parsed, &ctx).expect("resolve").cluster;
    c.state_dir = state.to_owned();
    c
}

fn public_of(private: &Path) -> String {
    let out = run_ok(Command::new("ssh-keygen").arg("-y").arg("-f").arg(private));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn host_key_pairs_stay_matched_and_private() {
    let dir = tempdir();
    let p = armbian(dir.path(), "", "");
    let state = dir.path().join("state");
    let c = cluster(&p, &state);
    let key = state.join("nodes/rock1/ssh_host_ed25519_key");
    let public = state.join("nodes/rock1/ssh_host_ed25519_key.pub");
    State::prepare(&c, &mut SeededEntropy::new(b"one")).expect("prepare");
    let first = std::fs::read_to_string(&public).expect(".pub");
    // The private key lost: a new pair, the .pub rewritten to match it.
    std::fs::remove_file(&key).expect("rm");
    let again = State::prepare(&c, &mut SeededEntropy::new(b"two")).expect("prepare");
    let second = std::fs::read_to_string(&public).expect(".pub");
    assert_ne!(first, second);
    let derived = public_of(&key);
    assert_eq!(
        second.split_whitespace().take(2).collect::<Vec<_>>(),
        derived.split_whitespace().take(2).collect::<Vec<_>>(),
        "the .pub is the private key's"
    );
    assert!(
        again.notes.iter().any(|n| n.contains(".pub")),
        "{:?}",
        again.notes
    );
    // A readable private key is made private again, with a warning.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let fixed = State::prepare(&c, &mut SeededEntropy::new(b"three")).expect("prepare");
    let m = std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777;
    assert_eq!(m, 0o600);
    assert!(
        fixed
            .notes
            .iter()
            .any(|n| n.contains("0644") && n.contains("0600")),
        "{:?}",
        fixed.notes
    );
    assert_eq!(public_of(&key), derived, "the key itself was kept");
}

#[test]
fn reserved_and_system_uids_are_refused() {
    let dir = tempdir();
    for uid in ["4294967295", "65535", "65534", "0", "999", "1"] {
        let p = armbian(dir.path(), &format!("        uid: {uid}"), "");
        refused(&p, &["users[0].uid", uid]);
    }
    for uid in ["1000", "1001", "60000", "65533", "70000"] {
        accepted(&armbian(dir.path(), &format!("        uid: {uid}"), ""));
    }
    // A system uid needs the documented opt-in; the special ids never pass.
    accepted(&armbian(
        dir.path(),
        "        uid: 999\n        system_uid: true",
        "",
    ));
    let p = armbian(
        dir.path(),
        "        uid: 65535\n        system_uid: true",
        "",
    );
    refused(&p, &["users[0].uid", "65535"]);
}
