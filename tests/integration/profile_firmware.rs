//! `firmware: {boot_order: PRESET}` (issue 15 item 4): `check` refuses a
//! preset the node's board cannot use, at the value's line and column; the
//! node's image gets the preset's `boot.conf` and a first-boot step that
//! shellcheck accepts; and the whole rendered first-boot script, run by
//! real bash with a stand-in `rpi-eeprom-config` that records its
//! arguments, applies the preset only when the installed configuration
//! differs and records every outcome in the status file. A node without
//! `firmware` renders exactly as before (the golden files, from before the
//! option existed).

use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_image::render::bootloader::CONF_PATH;
use homelab_image::render::firstboot::{SCRIPT_PATH, STATUS_PATH};
use homelab_image::render::tree::to_text;
use homelab_image::render::{FileKind, FileSpec};

use crate::profile_support::{bin, file, render_profile, repo, tempdir};

const HEAD: &str = "\
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
";

/// `HEAD`, then `extra` (more of `defaults`, already indented), then `nodes`.
fn write_profile(dir: &Path, extra: &str, nodes: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, format!("{HEAD}{extra}nodes:\n{nodes}")).expect("write profile");
    p
}

/// The 1-based line of `HEAD` + `extra` + "nodes:" + `nodes` holding `needle`.
fn line_of(extra: &str, nodes: &str, needle: &str) -> usize {
    let text = format!("{HEAD}{extra}nodes:\n{nodes}");
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in profile")
        + 1
}

/// `check` on `path`: its exit code and stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out = bin()
        .arg("--profile")
        .arg(path)
        .arg("check")
        .output()
        .expect("run check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(path: &Path, fragments: &[&str]) {
    let (code, stderr) = check(path);
    assert_eq!(code, Some(1), "{stderr}");
    for f in fragments {
        assert!(stderr.contains(f), "{f:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn preset_text(name: &str) -> String {
    std::fs::read_to_string(repo().join(format!("firmware/{name}.conf"))).expect("preset file")
}

#[test]
fn a_preset_for_another_board_is_refused_at_its_line_and_column() {
    let dir = tempdir();
    // A Pi 4's bootloader has no NVMe mode.
    let nodes = "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    firmware:
      boot_order: boot-nvme-usb
";
    let p = write_profile(dir.path(), "", nodes);
    // Column 19: six spaces and `boot_order: ` before the value.
    let at = format!(
        "homelab.yaml:{}:19: node pi1: firmware.boot_order:",
        line_of("", nodes, "boot-nvme-usb")
    );
    assert_refused(
        &p,
        &[
            &at,
            "boot-nvme-usb boots from NVMe, which the Raspberry Pi 4 bootloader does not have",
            "NVMe",
            "presets for rpi4: boot-net-sd, boot-sd-usb, boot-usb-sd",
        ],
    );
    // The same preset on a Pi 5 passes.
    let ok = write_profile(
        dir.path(),
        "",
        "  - hostname: pi1
    board: rpi5
    network: {address: 192.168.1.11/24}
    firmware: {boot_order: boot-nvme-usb}
",
    );
    let (code, stderr) = check(&ok);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn firmware_in_defaults_on_a_board_without_an_eeprom_is_refused_where_defaults_set_it() {
    let dir = tempdir();
    let extra = "  firmware: {boot_order: boot-usb-sd}\n";
    let nodes = "  - hostname: rock1
    image: {os: armbian, path: base.img}
    board: rock-5b
    network: {address: 192.168.1.21/24}
  - hostname: pi1
    network: {address: 192.168.1.11/24}
";
    std::fs::write(dir.path().join("base.img"), b"").expect("image");
    let p = write_profile(dir.path(), extra, nodes);
    // Column 26: `  firmware: {boot_order: ` before the value.
    let at = format!(
        "homelab.yaml:{}:26: node rock1: firmware.boot_order: rock-5b has no Raspberry Pi \
         EEPROM bootloader",
        line_of(extra, nodes, "firmware:")
    );
    let (code, stderr) = check(&p);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&at), "{at:?} not in:\n{stderr}");
    // The Pi that takes the same default is fine: one error only.
    assert!(!stderr.contains("node pi1"), "{stderr}");
    assert!(stderr.contains("1 error"), "{stderr}");
}

#[test]
fn a_netbooted_node_with_a_preset_that_never_tries_the_network_is_refused() {
    let dir = tempdir();
    let nodes = "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    netboot: {serial: abcd1234}
    firmware: {boot_order: boot-usb-sd}
";
    let p = write_profile(dir.path(), "", nodes);
    let at = format!(
        "homelab.yaml:{}:28: node pi1: firmware.boot_order:",
        line_of("", nodes, "firmware:")
    );
    assert_refused(
        &p,
        &[
            &at,
            "boot-usb-sd never tries the network (USB, then SD, then restart)",
            "use boot-net-sd",
        ],
    );
    let ok = write_profile(dir.path(), "", &nodes.replace("boot-usb-sd", "boot-net-sd"));
    let (code, stderr) = check(&ok);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_unknown_preset_or_key_is_refused_at_load_naming_the_choices() {
    let dir = tempdir();
    let nodes = "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    firmware:
      boot_order: boot-usb
";
    let p = write_profile(dir.path(), "", nodes);
    let at = format!("homelab.yaml:{}:19:", line_of("", nodes, "boot-usb"));
    assert_refused(
        &p,
        &[
            &at,
            "\"boot-usb\" is not a firmware preset",
            "boot-net-sd, boot-nvme-usb, boot-sd-usb, boot-usb-sd",
        ],
    );
    let with_suffix = write_profile(
        dir.path(),
        "",
        &nodes.replace("boot-usb", "boot-usb-sd.conf"),
    );
    assert_refused(&with_suffix, &["write it without .conf: boot-usb-sd"]);
    let unknown_key = write_profile(
        dir.path(),
        "",
        &nodes.replace(
            "boot_order: boot-usb",
            "boot_order: boot-usb-sd\n      order: x",
        ),
    );
    assert_refused(
        &unknown_key,
        &[&format!(
            "homelab.yaml:{}:7: node pi1: firmware.order: unknown key `order`; known keys: boot_order",
            line_of("", nodes, "boot-usb") + 1
        )],
    );
    let empty = write_profile(
        dir.path(),
        "",
        &nodes.replace("\n      boot_order: boot-usb", " {}"),
    );
    assert_refused(&empty, &["boot_order"]);
}

/// Two nodes, `firmware` on the second only.
const MIXED: &str = "  - hostname: pi1
    network: {address: 192.168.1.11/24}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
    firmware: {boot_order: boot-usb-sd}
";

fn spec<'a>(specs: &'a [FileSpec], path: &str) -> Option<&'a FileSpec> {
    specs.iter().find(|s| s.path == path)
}

#[test]
fn the_preset_and_the_step_go_only_to_the_node_with_firmware() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), "", MIXED));
    let (pi1, pi2) = (&r.nodes[0].1, &r.nodes[1].1);
    let conf = spec(pi2, CONF_PATH).expect("bootloader.conf on pi2");
    assert_eq!(conf.mode, 0o644);
    assert_eq!((conf.uid, conf.gid), (0, 0));
    assert_eq!(
        conf.kind,
        FileKind::File {
            bytes: preset_text("boot-usb-sd").into_bytes()
        }
    );
    let script2 = String::from_utf8(file(pi2, SCRIPT_PATH).expect("script").to_vec()).unwrap();
    for needle in [
        "readonly BOOTLOADER_PRESET='boot-usb-sd'",
        "readonly BOOTLOADER_ORDER='0xf14'",
        "readonly BOOTLOADER_CONF='/var/lib/homelab-image/bootloader.conf'",
        "    apply_bootloader\n",
        "printf 'bootloader=%s\\n'",
    ] {
        assert!(script2.contains(needle), "{needle:?} not in pi2's script");
    }
    assert!(spec(pi1, CONF_PATH).is_none());
    let script1 = String::from_utf8(file(pi1, SCRIPT_PATH).expect("script").to_vec()).unwrap();
    for needle in ["bootloader", "BOOTLOADER", "rpi-eeprom"] {
        assert!(!script1.contains(needle), "{needle:?} in pi1's script");
    }
}

#[test]
fn nodes_without_firmware_render_byte_for_byte_as_before() {
    // pi2 of the example gets `firmware`; pi1 and pi3 must still match the
    // golden files written before the option existed, and pi2 must differ
    // from its own only in the script and the new file.
    let example = repo().join("profiles/pi4-microcloud.yaml");
    let text = std::fs::read_to_string(&example).expect("example");
    let needle = "  - hostname: pi2\n";
    assert_eq!(text.matches(needle).count(), 1, "pi2 in the example");
    let dir = tempdir();
    let p = dir.path().join("pi4-microcloud.yaml");
    std::fs::write(
        &p,
        text.replace(
            needle,
            &format!("{needle}    firmware: {{boot_order: boot-usb-sd}}\n"),
        ),
    )
    .expect("write");
    let with = render_profile(&p);
    let before = render_profile(&example);
    for (node, specs) in &with.nodes {
        let golden =
            std::fs::read_to_string(repo().join(format!("tests/golden/pi4-microcloud/{node}.txt")))
                .expect("golden");
        let now = to_text(specs).expect("text");
        if node == "pi2" {
            assert_ne!(now, golden);
            let old = &before.nodes.iter().find(|(n, _)| n == node).unwrap().1;
            let changed: Vec<&str> = specs
                .iter()
                .filter(|s| !old.contains(s))
                .map(|s| s.path.as_str())
                .collect();
            // meta-data's instance id hashes every spec, so it changes too.
            assert_eq!(changed, ["meta-data", CONF_PATH, SCRIPT_PATH]);
            assert_eq!(old.len() + 1, specs.len());
        } else {
            assert!(now == golden, "{node} differs from its golden file");
        }
    }
}

fn run_out(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (the test command installs it)"))
}

#[test]
fn the_script_with_firmware_passes_bash_n_and_shellcheck() {
    let dir = tempdir();
    // With status_url too: both optional pieces in one script.
    let p = write_profile(
        dir.path(),
        "  status_url: http://192.168.1.5:8080\n",
        &MIXED.replace("boot-usb-sd", "boot-net-sd"),
    );
    let r = render_profile(&p);
    for (node, specs) in &r.nodes {
        let script = dir.path().join(format!("{node}.sh"));
        std::fs::write(&script, file(specs, SCRIPT_PATH).expect("script")).expect("write");
        let o = run_out(Command::new("bash").arg("-n").arg(&script));
        assert!(o.status.success() && o.stderr.is_empty(), "{node}: {o:?}");
        let o = run_out(
            Command::new("shellcheck")
                .args(["--shell=bash", "--severity=style"])
                .arg(&script),
        );
        assert!(
            o.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// What the stand-in `rpi-eeprom-config` does in one run.
struct Eeprom<'a> {
    /// `Some(text)`: installed, printing `text` when asked for the current
    /// configuration; `None`: not installed.
    current: Option<&'a str>,
    /// Exit code (and stderr line) of reading the current configuration.
    read_fails: Option<&'a str>,
    /// Exit code (and stderr line) of `--apply`.
    apply_fails: Option<&'a str>,
}

/// What one first-boot run left behind.
struct Outcome {
    /// The stand-in's calls, one line each (arguments shell-quoted).
    calls: Vec<String>,
    /// The file `--apply` was given, as the stand-in saw it.
    applied: Option<String>,
    status: Vec<(String, String)>,
}

impl Outcome {
    fn get(&self, key: &str) -> Option<&str> {
        self.status
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The stand-in: records each call's arguments in `$dir/calls`; with no
/// arguments prints `$dir/current.conf` (or fails as `$dir/read-fails`
/// says); with `--apply FILE` copies FILE to `$dir/applied.conf` and
/// exits 0 (or fails as `$dir/apply-fails` says).
const STAND_IN: &str = r#"#!/bin/bash
here=$(dirname "$(readlink -f "$0")")/..
{
    printf 'rpi-eeprom-config'
    for a in "$@"; do printf ' %q' "$a"; done
    printf '\n'
} >>"$here/calls"
if [ "$#" -eq 0 ]; then
    if [ -e "$here/read-fails" ]; then cat "$here/read-fails" >&2; exit 1; fi
    cat "$here/current.conf"
    exit 0
fi
if [ "$1" = --apply ]; then
    cp "$2" "$here/applied.conf"
    echo "Updating bootloader EEPROM"
    if [ -e "$here/apply-fails" ]; then cat "$here/apply-fails" >&2; exit 1; fi
    exit 0
fi
exit 2
"#;

/// Runs pi2's whole rendered first-boot script (preset `preset`) with real
/// bash, in a mount namespace of its own whose /var/lib is a fresh tmpfs
/// holding the image's bootloader.conf: stand-ins for `hostname` and
/// `timedatectl`, and `eeprom` for `rpi-eeprom-config`, first on PATH.
fn first_boot(preset: &str, eeprom: &Eeprom<'_>) -> Outcome {
    let dir = tempdir();
    let r = render_profile(&write_profile(
        dir.path(),
        "",
        &MIXED.replace("boot-usb-sd", preset),
    ));
    let specs = &r.nodes[1].1;
    let script = dir.path().join("homelab-firstboot");
    std::fs::write(&script, file(specs, SCRIPT_PATH).expect("script")).expect("write");
    let conf = dir.path().join("bootloader.conf");
    std::fs::write(&conf, file(specs, CONF_PATH).expect("conf")).expect("write");
    let stand = dir.path().join("bin");
    std::fs::create_dir(&stand).expect("mkdir");
    let exe = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = stand.join(name);
        std::fs::write(&p, text).expect("write stand-in");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    exe("hostname", "#!/bin/sh\necho pi2\n");
    exe("timedatectl", "#!/bin/sh\necho yes\n");
    if let Some(current) = eeprom.current {
        exe("rpi-eeprom-config", STAND_IN);
        std::fs::write(dir.path().join("current.conf"), current).expect("write");
    }
    if let Some(why) = eeprom.read_fails {
        std::fs::write(dir.path().join("read-fails"), why).expect("write");
    }
    if let Some(why) = eeprom.apply_fails {
        std::fs::write(dir.path().join("apply-fails"), why).expect("write");
    }
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        assert!(
            !Path::new(d).join("rpi-eeprom-config").exists(),
            "this machine has a real {d}/rpi-eeprom-config; the test needs it absent"
        );
    }
    let status = dir.path().join("firstboot.status");
    let inner = format!(
        "set -e; mount -t tmpfs -o mode=0755 e2e-var-lib /var/lib; \
         mkdir -p /var/lib/homelab-image; cp {conf} {CONF_PATH}; \
         rc=0; PATH={stand}:/usr/bin:/bin bash {script} >{log} 2>&1 || rc=$?; \
         cp {STATUS_PATH} {status}; exit $rc",
        conf = conf.display(),
        stand = stand.display(),
        script = script.display(),
        log = dir.path().join("journal").display(),
        status = status.display(),
    );
    let o = run_out(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c"])
            .arg(&inner),
    );
    let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap_or_default();
    assert!(
        o.status.success(),
        "first boot failed: {o:?}\njournal:\n{journal}"
    );
    let status = std::fs::read_to_string(&status).expect("status file");
    Outcome {
        calls: std::fs::read_to_string(dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
        applied: std::fs::read_to_string(dir.path().join("applied.conf")).ok(),
        status: status
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

/// The installed configuration of a Pi 4 as shipped: SD first.
const FACTORY: &str = "[all]\nBOOT_UART=0\nWAKE_ON_GPIO=1\nPOWER_OFF_ON_HALT=0\nBOOT_ORDER=0xf41\n";

#[test]
fn a_different_installed_boot_order_is_applied_with_the_conf_path_and_recorded() {
    let o = first_boot(
        "boot-usb-sd",
        &Eeprom {
            current: Some(FACTORY),
            read_fails: None,
            apply_fails: None,
        },
    );
    assert_eq!(
        o.calls,
        [
            "rpi-eeprom-config".to_owned(),
            format!("rpi-eeprom-config --apply {CONF_PATH}")
        ]
    );
    assert_eq!(
        o.applied.as_deref(),
        Some(preset_text("boot-usb-sd").as_str())
    );
    assert_eq!(o.get("state"), Some("done"));
    assert_eq!(
        o.get("bootloader"),
        Some("applied: BOOT_ORDER=0xf14 (boot-usb-sd), takes effect at the next reboot")
    );
    // The new line comes after the ones readers already know.
    let keys: Vec<&str> = o.status.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "state",
            "node",
            "attempt",
            "updated",
            "reason",
            "bootloader"
        ]
    );
}

#[test]
fn an_installed_configuration_that_already_has_the_preset_is_left_alone() {
    // Other keys, another section, spaces and upper-case hex: still the same.
    let current =
        "[all]\nBOOT_UART=0\nWAKE_ON_GPIO=1\n BOOT_ORDER = 0xF14 \n\n[pi4]\nPOWER_OFF_ON_HALT=1\n";
    let o = first_boot(
        "boot-usb-sd",
        &Eeprom {
            current: Some(current),
            read_fails: None,
            apply_fails: None,
        },
    );
    assert_eq!(o.calls, ["rpi-eeprom-config"]);
    assert_eq!(o.applied, None);
    assert_eq!(o.get("state"), Some("done"));
    assert_eq!(
        o.get("bootloader"),
        Some("unchanged: the installed bootloader already has BOOT_ORDER=0xf14 (boot-usb-sd)")
    );
}

#[test]
fn every_key_of_the_preset_is_compared_not_only_boot_order() {
    // The right BOOT_ORDER but TFTP_PREFIX=2 (by MAC): serve looks the
    // node up by serial (TFTP_PREFIX=0), so the preset must be applied.
    let current = "[all]\nBOOT_UART=0\nBOOT_ORDER=0xf412\nTFTP_PREFIX=2\nDHCP_TIMEOUT=45000\n\
                   DHCP_REQ_TIMEOUT=4000\nTFTP_FILE_TIMEOUT=30000\nNET_BOOT_MAX_RETRIES=5\n";
    let o = first_boot(
        "boot-net-sd",
        &Eeprom {
            current: Some(current),
            read_fails: None,
            apply_fails: None,
        },
    );
    assert_eq!(o.calls.len(), 2, "{:?}", o.calls);
    assert_eq!(o.calls[1], format!("rpi-eeprom-config --apply {CONF_PATH}"));
    assert_eq!(
        o.get("bootloader"),
        Some("applied: BOOT_ORDER=0xf412 (boot-net-sd), takes effect at the next reboot")
    );
}

#[test]
fn a_missing_rpi_eeprom_config_is_recorded_and_the_first_boot_goes_on() {
    let o = first_boot(
        "boot-usb-sd",
        &Eeprom {
            current: None,
            read_fails: None,
            apply_fails: None,
        },
    );
    assert!(o.calls.is_empty());
    assert_eq!(o.get("state"), Some("done"));
    assert_eq!(
        o.get("bootloader"),
        Some(
            "skipped: rpi-eeprom-config is not installed (package rpi-eeprom), so \
             BOOT_ORDER=0xf14 (boot-usb-sd) was not applied"
        )
    );
}

#[test]
fn a_failed_apply_is_recorded_as_failed_with_its_message() {
    let o = first_boot(
        "boot-usb-sd",
        &Eeprom {
            current: Some(FACTORY),
            read_fails: None,
            apply_fails: Some(
                "ERROR: --edit/--apply must run on a Raspberry Pi 4 or Raspberry Pi 5\n",
            ),
        },
    );
    assert_eq!(o.calls.len(), 2, "{:?}", o.calls);
    // The join went on; the bootloader line says what failed.
    assert_eq!(o.get("state"), Some("done"));
    assert_eq!(
        o.get("bootloader"),
        Some(
            "failed: rpi-eeprom-config --apply /var/lib/homelab-image/bootloader.conf exited 1: \
             ERROR: --edit/--apply must run on a Raspberry Pi 4 or Raspberry Pi 5"
        )
    );
}

#[test]
fn an_unreadable_installed_configuration_is_recorded_and_nothing_is_applied() {
    // Upstream's rpi-eeprom-config without the blconfig device fails so.
    let o = first_boot(
        "boot-usb-sd",
        &Eeprom {
            current: Some(""),
            read_fails: Some(
                "Traceback (most recent call last):\nTypeError: cannot unpack non-iterable NoneType object\n",
            ),
            apply_fails: None,
        },
    );
    assert_eq!(o.calls, ["rpi-eeprom-config"]);
    assert_eq!(o.get("state"), Some("done"));
    assert_eq!(
        o.get("bootloader"),
        Some(
            "failed: reading the installed bootloader configuration (rpi-eeprom-config exited 1): \
             TypeError: cannot unpack non-iterable NoneType object"
        )
    );
}
