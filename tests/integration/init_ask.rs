//! `init` driven through a real pseudo-terminal (a pty pair this test
//! opens): the questions and their defaults, a bad answer asked again with
//! its reason, a Wi-Fi passphrase that is never echoed and lands in a 0600
//! file, Ctrl-D and Ctrl-C that stop with nothing written and the
//! terminal's echo back on, the bound on refused answers, and `--yes` /
//! piped stdin writing the starter without a question. The written
//! profiles are judged by `check`, `render` and PyYAML.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, tcgetattr};

use crate::profile_support::tempdir;
use crate::util::run_ok;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 me@host\n";
const PASSPHRASE: &str = "correct horse 42";
/// How long one prompt may take to appear.
const PATIENCE: Duration = Duration::from_secs(30);

/// A home directory with one SSH public key, as `init` looks for.
fn home_with_key() -> tempfile::TempDir {
    let home = tempdir();
    std::fs::create_dir(home.path().join(".ssh")).expect("mkdir .ssh");
    std::fs::write(home.path().join(".ssh/id_ed25519.pub"), KEY).expect("write key");
    home
}

/// Our binary in `dir` with a fixed environment: `HOME`, `USER`, an empty
/// image cache (so `check` looks at no image) and nothing else.
fn command(dir: &Path, home: &Path) -> Command {
    let mut c = crate::util::bin();
    c.current_dir(dir)
        .env_clear()
        .env("HOME", home)
        .env("USER", "alice")
        .env("NO_COLOR", "1")
        .env("HOMELAB_CACHE_DIR", home.join("cache"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

/// `homelab-image ARGS` with stdin, stdout and stderr on the slave side
/// of a fresh pty; the test types on the master side and reads what the
/// terminal shows.
struct Session {
    master: File,
    slave: OwnedFd,
    child: Child,
    shown: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// How far `expect` has read.
    seen: usize,
}

impl Session {
    fn start(mut cmd: Command) -> Self {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the pty's slave");
        let tty = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the slave"));
        let child = cmd
            .stdin(tty(&slave))
            .stdout(tty(&slave))
            .stderr(tty(&slave))
            .spawn()
            .expect("spawning homelab-image");
        let master = File::from(master);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut from = master.try_clone().expect("dup the master");
        let sink = Arc::clone(&shown);
        // Reads until the slave side is closed everywhere (EIO).
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            master,
            slave,
            child,
            shown,
            reader: Some(reader),
            seen: 0,
        }
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().expect("lock")).into_owned()
    }

    /// Waits until the terminal shows `text` after what was seen so far.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let all = self.transcript();
            if let Some(at) = all.get(self.seen..).and_then(|rest| rest.find(text)) {
                self.seen += at + text.len();
                return;
            }
            assert!(
                Instant::now() < deadline && self.child.try_wait().expect("wait").is_none(),
                "the terminal never showed {text:?}; it shows:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `prompt`, then types `answer` and Enter.
    fn answer(&mut self, prompt: &str, answer: &str) {
        self.expect(prompt);
        self.type_raw(&format!("{answer}\r"));
    }

    fn type_raw(&mut self, bytes: &str) {
        self.master
            .write_all(bytes.as_bytes())
            .expect("typing on the pty");
    }

    /// Waits for the process to end; returns its status, the transcript
    /// and whether the terminal has echo and line editing on again.
    fn finish(mut self) -> (ExitStatus, String, bool) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "init did not end; the terminal shows:\n{}",
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let modes = tcgetattr(&self.slave).expect("tcgetattr").local_modes;
        let sane = modes.contains(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
        drop(self.slave);
        if let Some(r) = self.reader.take() {
            r.join().expect("pty reader");
        }
        let text = String::from_utf8_lossy(&self.shown.lock().expect("lock")).into_owned();
        (status, text, sane)
    }
}

/// The names in `dir`, sorted (what a refused or stopped `init` must
/// leave as it found it).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A value of the written profile, read by PyYAML (`expr` indexes `p`).
fn yaml_value(profile: &Path, expr: &str) -> String {
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sys, yaml; p = yaml.safe_load(open(sys.argv[1])); print({expr})"
            ))
            .arg(profile),
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn init_on_a_terminal_asks_reasks_and_writes_a_profile_that_checks() {
    let dir = tempdir();
    let home = home_with_key();
    let mut s = Session::start({
        let mut c = command(dir.path(), home.path());
        c.arg("init");
        c
    });
    s.expect("ubuntu-26.04-raspi");
    s.answer("Base image: a name or number above", "ubuntu-26.04-raspi");
    s.answer("Board (rpi4, rpi5) [rpi4]: ", "rpi5");
    s.answer("Subnet of the nodes' LAN [", "192.168.50.0/24");
    s.answer("Gateway [192.168.50.1]: ", "");
    s.answer("Number of nodes (1-64) [3]: ", "2");
    s.answer("Node 1: hostname [node1]: ", "pi1");
    // Three bad addresses, each refused with its reason, then a good one.
    s.answer(
        "Node 1 (pi1): address in 192.168.50.0/24 [192.168.50.11]: ",
        "192.168.50.1",
    );
    s.expect("192.168.50.1 is the gateway");
    s.answer("address in 192.168.50.0/24 [192.168.50.11]: ", "10.0.0.5");
    s.expect("10.0.0.5 is outside the subnet 192.168.50.0/24");
    s.answer("[192.168.50.11]: ", "192.168.50.21/16");
    s.expect("the subnet is 192.168.50.0/24: write 192.168.50.21 or 192.168.50.21/24");
    s.answer("[192.168.50.11]: ", "192.168.50.21");
    s.answer("Node 1 (pi1): MAC address", "DC:A6:32:01:36:ZZ");
    s.expect("is not a MAC address");
    s.answer("Node 1 (pi1): MAC address", "DC:A6:32:01:36:C1");
    s.answer("Node 2: hostname [node2]: ", "pi1");
    s.expect("pi1 is node 1's name already");
    s.answer("Node 2: hostname [node2]: ", "pi2");
    // The offered address skips the gateway; Enter takes it.
    s.answer(
        "Node 2 (pi2): address in 192.168.50.0/24 [192.168.50.11]: ",
        "",
    );
    s.answer("Node 2 (pi2): MAC address", "");
    s.answer("Wi-Fi network name (SSID)", "Home Net");
    s.answer(
        "Wi-Fi passphrase (not shown; Enter for an open network): ",
        "short",
    );
    s.expect("a WPA passphrase is 8 to 63 printable ASCII characters");
    s.answer("Wi-Fi passphrase (not shown", PASSPHRASE);
    s.answer("Wi-Fi passphrase again: ", PASSPHRASE);
    s.answer("Wi-Fi country code", "de");
    let (status, shown, sane) = s.finish();
    assert!(status.success(), "init failed:\n{shown}");
    assert!(sane, "echo, line editing and signals are on again");
    assert!(
        !shown.contains(PASSPHRASE) && !shown.contains("short\r"),
        "the passphrase was echoed:\n{shown}"
    );
    assert!(shown.contains("wrote homelab.yaml"), "{shown}");

    let profile = dir.path().join("homelab.yaml");
    let text = std::fs::read_to_string(&profile).expect("profile");
    assert!(!text.contains(PASSPHRASE), "no passphrase in the profile");
    let secret = dir.path().join(".homelab-state/wifi-password");
    assert_eq!(
        std::fs::metadata(&secret)
            .expect("wifi-password")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        format!("{PASSPHRASE}\n")
    );
    for (expr, want) in [
        ("p['defaults']['image']['catalog']", "ubuntu-26.04-raspi"),
        ("p['defaults']['image']['os']", "ubuntu-26.04"),
        ("p['defaults']['board']", "rpi5"),
        ("p['defaults']['network']['subnet']", "192.168.50.0/24"),
        ("p['defaults']['network']['gateway']", "192.168.50.1"),
        ("[n['hostname'] for n in p['nodes']]", "['pi1', 'pi2']"),
        (
            "[n['network']['address'] for n in p['nodes']]",
            "['192.168.50.21/24', '192.168.50.11/24']",
        ),
        ("p['nodes'][0]['network']['mac']", "dc:a6:32:01:36:c1"),
        ("'mac' in p['nodes'][1]['network']", "False"),
        ("p['defaults']['wifi']['ssid']", "Home Net"),
        (
            "p['defaults']['wifi']['password']",
            "{'file': '.homelab-state/wifi-password'}",
        ),
        ("p['defaults']['wifi']['country']", "DE"),
        ("p['microcloud']['initiator']", "pi1"),
        ("p['microcloud']['lookup_subnet']", "192.168.50.0/24"),
        ("p['defaults']['users'][0]['name']", "alice"),
    ] {
        assert_eq!(yaml_value(&profile, expr), want, "{expr}");
    }

    let out = command(dir.path(), home.path())
        .arg("check")
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok (2 nodes, 0 warnings)"),
        "check: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The passphrase file is what the node's Wi-Fi gets.
    let out = command(dir.path(), home.path())
        .args(["render", "--node", "pi1", "--show-secrets"])
        .output()
        .expect("render");
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        PASSPHRASE,
        "Home Net",
        "192.168.50.21/24",
        "dc:a6:32:01:36:c1",
    ] {
        assert!(rendered.contains(want), "render of pi1 lacks {want:?}");
    }
}

#[test]
fn init_on_a_terminal_stops_at_ctrl_d_or_ctrl_c_and_writes_nothing() {
    // (where, key): Ctrl-D at a plain question, Ctrl-D and Ctrl-C while
    // the passphrase is typed with echo off.
    for (at_passphrase, key) in [(false, "\x04"), (true, "\x04"), (true, "\x03")] {
        let dir = tempdir();
        let home = home_with_key();
        let mut s = Session::start({
            let mut c = command(dir.path(), home.path());
            c.arg("init");
            c
        });
        s.answer("Base image: a name or number above", "");
        s.answer("Board (rpi4, rpi5) [rpi4]: ", "");
        if at_passphrase {
            s.answer("Subnet of the nodes' LAN [", "10.9.0.0/24");
            s.answer("Gateway [", "10.9.0.1");
            s.answer("Number of nodes", "1");
            s.answer("Node 1: hostname", "");
            s.answer("Node 1 (node1): address", "");
            s.answer("Node 1 (node1): MAC", "");
            s.answer("Wi-Fi network name (SSID)", "lab");
            s.expect("Wi-Fi passphrase (not shown; Enter for an open network): ");
            // Half a passphrase, then the key.
            s.type_raw("secret-");
        } else {
            s.expect("Subnet of the nodes' LAN [");
        }
        s.type_raw(key);
        let (status, shown, sane) = s.finish();
        let case = format!("{key:?} at the passphrase: {at_passphrase}");
        assert_eq!(status.code(), Some(1), "{case}:\n{shown}");
        assert!(shown.contains("nothing was written"), "{case}:\n{shown}");
        assert!(sane, "{case}: the terminal echoes again");
        assert!(!shown.contains("secret-"), "{case}: echoed:\n{shown}");
        assert_eq!(names_in(dir.path()), Vec::<String>::new(), "{case}");
    }
}

#[test]
fn init_gives_up_after_five_refused_answers_naming_the_field() {
    let dir = tempdir();
    let home = home_with_key();
    let mut s = Session::start({
        let mut c = command(dir.path(), home.path());
        c.arg("init");
        c
    });
    s.answer("Base image: a name or number above", "armbian-rock-5b");
    s.answer("Subnet of the nodes' LAN [", "10.9.0.0/24");
    s.answer("Gateway [", "");
    for bad in ["0", "many", "-1", "65", "3x"] {
        s.answer("Number of nodes (1-64) [3]: ", bad);
        s.expect("is not a number from 1 to 64");
    }
    let (status, shown, _) = s.finish();
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "node count: 5 answers refused, the last because \"3x\" is not a number from 1 to 64"
        ),
        "{shown}"
    );
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn init_yes_on_a_terminal_and_init_with_piped_stdin_write_the_same_starter() {
    let home = home_with_key();
    let on_tty = tempdir();
    let mut s = Session::start({
        let mut c = command(on_tty.path(), home.path());
        c.args(["init", "--yes"]);
        c
    });
    s.expect("wrote homelab.yaml");
    let (status, shown, _) = s.finish();
    assert!(status.success(), "{shown}");
    assert!(
        !shown.contains("Base image"),
        "--yes asks nothing:\n{shown}"
    );

    let piped = tempdir();
    let mut child = command(piped.path(), home.path())
        .arg("init")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Answers on a pipe are not read: init only asks a terminal.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"armbian-rock-5b\n10.9.0.0/24\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Base image"));

    let a = std::fs::read(on_tty.path().join("homelab.yaml")).expect("tty profile");
    let b = std::fs::read(piped.path().join("homelab.yaml")).expect("piped profile");
    assert_eq!(
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b),
        "--yes and piped stdin write the same bytes"
    );
    let text = String::from_utf8_lossy(&a);
    assert!(text.contains("    os: ubuntu-24.04             # ubuntu-22.04"));
    assert!(text.contains("me@host") && !text.contains("wifi"));
    assert_eq!(
        names_in(piped.path()),
        [".homelab-state", "homelab.yaml"],
        "no Wi-Fi file without Wi-Fi"
    );
}

#[test]
fn init_offers_the_os_it_finds_in_an_image_file_and_the_profile_checks_against_it() {
    let dir = tempdir();
    let home = home_with_key();
    let image = crate::util::fixture("ubuntu-raspi-2604.img");
    let mut s = Session::start({
        let mut c = command(dir.path(), home.path());
        c.arg("init");
        c
    });
    s.answer(
        "Base image: a name or number above",
        image.to_str().expect("utf-8 path"),
    );
    // Enter takes what the image says it is.
    s.answer("as found in it [ubuntu-26.04]: ", "");
    s.answer(
        "Board (rpi4, rpi5 or an Armbian board like rock-5b) [rpi4]: ",
        "",
    );
    s.answer("Subnet of the nodes' LAN [", "10.7.0.0/24");
    s.answer("Gateway [", "");
    s.answer("Number of nodes", "1");
    s.answer("Node 1: hostname", "");
    s.answer("Node 1 (node1): address", "");
    s.answer("Node 1 (node1): MAC", "");
    s.answer("Wi-Fi network name (SSID)", "");
    let (status, shown, _) = s.finish();
    assert!(status.success(), "{shown}");
    let profile = dir.path().join("homelab.yaml");
    assert_eq!(
        yaml_value(&profile, "p['defaults']['image']"),
        format!("{{'os': 'ubuntu-26.04', 'path': '{}'}}", image.display())
    );
    let out = command(dir.path(), home.path())
        .arg("check")
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Ubuntu 26.04") && stdout.contains("ok (1 node"),
        "check: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_on_a_terminal_refuses_an_existing_profile_before_asking() {
    let dir = tempdir();
    let home = home_with_key();
    let profile = dir.path().join("homelab.yaml");
    std::fs::write(&profile, "# mine\n").expect("write profile");
    let s = Session::start({
        let mut c = command(dir.path(), home.path());
        c.arg("init");
        c
    });
    let (status, shown, _) = s.finish();
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("homelab.yaml already exists; pass --force to overwrite it"));
    assert!(!shown.contains("Base image"), "nothing was asked:\n{shown}");
    assert_eq!(std::fs::read_to_string(&profile).expect("read"), "# mine\n");
    assert_eq!(names_in(dir.path()), ["homelab.yaml"]);
}
