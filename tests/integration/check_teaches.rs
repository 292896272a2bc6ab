//! `check` that teaches (issue 16, item 1): every mistake of a profile in
//! one run, each at the `file:line:column` where it is written, once per
//! cause, in plain words ("did you mean", a tab, a misaligned key), and
//! `check --json`. Each test writes its profile, runs the real binary and
//! compares stderr line by line.

use crate::profile_support::{bin, tempdir};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs ops@laptop";

/// Defaults every profile below shares (lines 1-6): a board, an image
/// and a user who can log in.
fn defaults(extra: &str) -> String {
    format!(
        "defaults:\n  image: {{os: ubuntu-24.04}}\n  board: rpi4\n  users:\n    - name: alice\n      \
         ssh_keys: [\"{KEY}\"]\n{extra}"
    )
}

/// Runs `check` (with `args`) on `text` written as `h.yaml`; returns the
/// exit code, stdout and stderr.
fn check(text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempdir();
    std::fs::write(dir.path().join("h.yaml"), text).expect("write profile");
    let out = bin()
        .current_dir(dir.path())
        .args(["--profile", "h.yaml", "check"])
        .args(args)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// Asserts `check` refuses `text` with exactly these error lines.
fn assert_errors(text: &str, lines: &[&str]) {
    let (code, _, stderr) = check(text, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let n = lines.len();
    let mut want: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    want[0] = format!("error: {}", want[0]);
    want.push(format!(
        "h.yaml: {n} error{}",
        if n == 1 { "" } else { "s" }
    ));
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, want, "\n{text}\n{stderr}");
}

#[test]
fn parse_and_semantic_mistakes_over_defaults_and_nodes_are_reported_in_one_run() {
    let text = "\
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  timezone: Europe/Pariss
  users:
    - name: alice
      ssh_keys: [\"KEY\"]
nodes:
  - hostname: pi1
    network:
      address: 192.168.1.11/24
      gatway: 192.168.1.1
  - hostname: pi2
    network:
      address: 192.168.1.300/24
  - hostname: pi3
    network:
      address: 192.168.1.13/24
    keyboard: {layout: dee}
    ssh_password_auth: maybe
"
    .replace("KEY", KEY);
    assert_errors(
        &text,
        &[
            "h.yaml:4:13: defaults.timezone: Europe/Pariss is not a time zone of the tz database; \
             did you mean Europe/Paris?",
            "h.yaml:12:7: node pi1: network.gatway: unknown key `gatway`; did you mean `gateway`?",
            "h.yaml:15:16: node pi2: network.address: \"192.168.1.300/24\" is not an IPv4 \
             address with a prefix, like 192.168.1.11/24",
            "h.yaml:19:24: node pi3: keyboard.layout: \"dee\" is not an XKB keyboard layout; \
             did you mean de (German)?",
            "h.yaml:20:24: node pi3: ssh_password_auth: invalid boolean",
        ],
    );
}

#[test]
fn a_semantic_error_in_defaults_is_reported_once_at_its_line_and_one_in_a_node_at_the_node() {
    let text = defaults(
        "  network:
    gateway: 10.0.0.1
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24}
  - hostname: pi2
    network: {address: 192.168.1.12/24, gateway: 192.168.1.12}
  - hostname: pi3
    network: {address: 192.168.1.13/24}
",
    );
    assert_errors(
        &text,
        &[
            "h.yaml:8:14: defaults.network.gateway: 10.0.0.1 is outside the subnet \
             192.168.1.0/24 of network.address",
            "h.yaml:13:50: node pi2: network.gateway: 192.168.1.12 is this node's own address",
        ],
    );
}

#[test]
fn an_address_outside_the_subnet_is_one_error_not_three() {
    // The gateway and lookup_subnet are right for every other node: the
    // address is the one mistake.
    let text = defaults(
        "  network:
    subnet: 192.168.1.0/24
    gateway: 192.168.1.1
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24}
  - hostname: pi2
    network: {address: 192.168.7.12/24}
microcloud:
  initiator: pi1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {value: secret}
",
    );
    assert_errors(
        &text,
        &[
            "h.yaml:14:24: node pi2: network.address: 192.168.7.12/24 is outside the subnet \
           192.168.1.0/24",
        ],
    );
}

#[test]
fn unknown_keys_and_values_suggest_the_nearest_known_one() {
    let text = "\
defaults:
  image: {os: ubuntu-24.4}
  board: rpi4
  allow_no_login: true
nodes:
  - hostname: pi1
    netwrok: {address: 192.168.1.11/24}
nodez: []
";
    assert_errors(
        text,
        &[
            "h.yaml:2:15: defaults.image.os: unknown value `ubuntu-24.4`; did you mean \
             `ubuntu-24.04`?",
            "h.yaml:7:5: node pi1: netwrok: unknown key `netwrok`; did you mean `network`?",
            "h.yaml:8:1: nodez: unknown key `nodez`; did you mean `nodes`?",
        ],
    );
}

#[test]
fn a_tab_is_named_at_its_own_line_and_the_rest_is_still_checked() {
    let text = defaults(
        "nodes:
  - hostname: pi1
    network:
      address: 192.168.1.11/24
    timezone: Europe/Pariss
  - hostname: pi2
    network:
      address: 192.168.1.12/24
\tgateway: 192.168.1.1
",
    );
    assert_errors(
        &text,
        &[
            "h.yaml:11:15: node pi1: timezone: Europe/Pariss is not a time zone of the tz \
             database; did you mean Europe/Paris?",
            "h.yaml:15:1: node pi2: network.gateway: a tab at line 15: use spaces to indent YAML",
        ],
    );
}

#[test]
fn a_misaligned_key_is_named_with_its_indent_and_its_siblings() {
    // One space short of its siblings: a YAML syntax error.
    let short = defaults(
        "nodes:
  - hostname: pi1
    network:
      address: 192.168.1.11/24
     gateway: 192.168.1.1
",
    );
    assert_errors(
        &short,
        &[
            "h.yaml:11:6: node pi1: network.gateway: indentation: `gateway` is indented 5 \
           spaces, its siblings 6",
        ],
    );
    // One space too many: the line continues `address`'s value (before,
    // "\"192.168.1.11/24 gateway\" is not an IPv4 address").
    let long = short.replace("     gateway", "       gateway");
    assert_errors(
        &long,
        &[
            "h.yaml:11:8: node pi1: network.gateway: indentation: `gateway` is indented 7 \
           spaces, its siblings 6",
        ],
    );
}

#[test]
fn a_duplicate_hostname_names_both_lines() {
    let text = defaults(
        "nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
  - hostname: pi1
    network: {address: 192.168.1.13/24}
",
    );
    assert_errors(
        &text,
        &["h.yaml:12:15: node pi1: hostname: pi1 is also the hostname of the node at line 8"],
    );
}

#[test]
fn check_json_lists_every_problem_with_its_position_and_a_result_per_node() {
    let text = defaults(
        "  timezone: Mars/Base
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24, gatway: 192.168.1.1}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
",
    );
    let (code, stdout, stderr) = check(&text, &["--json"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr, "error: h.yaml: 2 errors\n");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(
        v,
        serde_json::json!({
            "profile": "h.yaml",
            "ok": false,
            "errors": 2,
            "warnings": 0,
            "problems": [
                {
                    "severity": "error", "file": "h.yaml", "line": 7, "column": 13,
                    "node": null, "field": "defaults.timezone",
                    "message": "Mars/Base is not a time zone of the tz database",
                    "hint": null,
                },
                {
                    "severity": "error", "file": "h.yaml", "line": 10, "column": 41,
                    "node": "pi1", "field": "network.gatway",
                    "message": "unknown key `gatway`",
                    "hint": "did you mean `gateway`?",
                },
            ],
            "nodes": [
                {"name": "pi1", "errors": 1, "warnings": 0, "image": null,
                 "not_checked": "the profile has errors", "notes": []},
                {"name": "pi2", "errors": 0, "warnings": 0, "image": null,
                 "not_checked": "the profile has errors", "notes": []},
            ],
        })
    );
}

#[test]
fn check_json_of_a_good_profile_is_ok_with_each_node() {
    let text = defaults(
        "nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24}
",
    );
    let cache = tempdir();
    let (code, stdout, stderr) = check(
        &text,
        &["--json", "--cache-dir", &cache.path().display().to_string()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    let node = &v["nodes"][0];
    assert_eq!(node["name"], "pi1");
    assert_eq!(node["image"], serde_json::Value::Null);
    let why = node["not_checked"].as_str().expect("a reason");
    assert!(why.contains("is not in the cache"), "{why}");
}

#[test]
fn build_stops_with_the_same_full_list() {
    let text = defaults(
        "  timezone: Europe/Pariss
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24, gatway: 192.168.1.1}
",
    );
    let dir = tempdir();
    std::fs::write(dir.path().join("h.yaml"), &text).expect("write profile");
    let out = bin()
        .current_dir(dir.path())
        .args(["--profile", "h.yaml", "build", "--all", "--out", "out"])
        .output()
        .expect("run build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            // One node inherits it: the node is named.
            "error: h.yaml:7:13: node pi1: defaults.timezone: Europe/Pariss is not a time zone \
             of the tz database; did you mean Europe/Paris?",
            "h.yaml:10:41: node pi1: network.gatway: unknown key `gatway`; did you mean `gateway`?",
            "h.yaml: 2 errors",
        ]
    );
    assert!(!dir.path().join("out").exists(), "nothing written");
}

#[test]
fn a_refused_uplink_is_one_error_not_also_a_missing_one() {
    let text = defaults(
        "nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24, uplink: {vlan: 10}}
  - hostname: pi2
    network: {address: 192.168.1.12/24, uplink: {vlan: 0}}
microcloud:
  initiator: pi1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {value: secret}
  ovn: {ipv4_gateway: 192.168.1.1/24}
",
    );
    assert_errors(
        &text,
        &["h.yaml:11:56: node pi2: network.uplink.vlan: VLAN id 0 is outside 1-4094"],
    );
}
