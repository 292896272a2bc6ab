//! What `status` runs on a node over SSH, and how its answer is read.
//!
//! One fixed command per node (no profile value is ever spliced into it):
//! a POSIX `sh -c '…'` script that prints each fact as a block headed by
//! `@@homelab-status TAG EXIT` — the first-boot status file, `cloud-init
//! status`, and, on MicroCloud's initiator only, `microcloud cluster list
//! --format csv` — then `@@homelab-status end`. Each block is at most
//! [`MAX_LINES`] lines of [`MAX_LINE`] bytes, cut on the node, and a line of
//! output that starts with `@@` is indented so it cannot fake a header.
//!
//! The status file's directory is root's alone (0700, docs/FIRSTBOOT.md),
//! and MicroCloud's socket is root's: the script reads both directly when
//! it runs as root, else through `sudo -n` (never a password prompt; a
//! user without passwordless sudo gets sudo's one-line refusal as the
//! fact's error). `cloud-init status` needs no privilege.

use crate::render::firstboot::STATUS_PATH;

/// The most lines of one block the node sends.
pub const MAX_LINES: usize = 200;
/// The longest line of a block, in bytes, the node sends.
pub const MAX_LINE: usize = 512;
/// Seconds each command on the node may take (`timeout`).
pub const NODE_COMMAND_TIMEOUT: u32 = 20;

/// The header of a block: `@@homelab-status TAG EXIT`.
const HEADER: &str = "@@homelab-status ";

/// The script's functions and the facts every node reports. Single quotes
/// never appear in it: it runs as `sh -c '…'`, whatever the login shell.
fn common_script() -> String {
    format!(
        "F={STATUS_PATH}
asroot() {{ if [ \"$(id -u)\" = 0 ]; then \"$@\"; else sudo -n \"$@\"; fi; }}
fb() {{ cat \"$F\" 2>/dev/null || asroot cat \"$F\"; }}
mc() {{ m=$(command -v microcloud) || m=/snap/bin/microcloud; \
[ -x \"$m\" ] || {{ echo \"microcloud: not installed\"; return 127; }}; \
asroot timeout {NODE_COMMAND_TIMEOUT} \"$m\" cluster list --format csv; }}
s() {{ t=$1; shift; o=$(\"$@\" 2>&1 </dev/null); r=$?; \
printf \"{HEADER}%s %s\\n\" \"$t\" \"$r\"; \
printf \"%s\\n\" \"$o\" | head -n {MAX_LINES} | cut -c 1-{MAX_LINE} | sed \"s/^@@/ @@/\"; }}
s firstboot fb
s cloud-init timeout {NODE_COMMAND_TIMEOUT} cloud-init status
"
    )
}

/// The command `ssh` runs on a node; `initiator` adds the cluster list.
pub fn command(initiator: bool) -> String {
    let mut script = common_script();
    if initiator {
        script.push_str("s microcloud mc\n");
    }
    script.push_str("echo @@homelab-status end\n");
    format!("sh -c '{script}'")
}

/// One block of the node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The command's exit status on the node.
    pub exit: i32,
    pub lines: Vec<String>,
}

impl Block {
    /// The block's text on one line, for an error message.
    pub fn one_line(&self) -> String {
        let text: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        clean(&text.join("; "))
    }
}

/// The node's answer, block by block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub firstboot: Option<Block>,
    pub cloud_init: Option<Block>,
    pub microcloud: Option<Block>,
    /// The closing line arrived: nothing was cut off.
    pub complete: bool,
}

/// Reads the script's output. Lines before the first header (a login
/// banner) and blocks of unknown tags are ignored.
pub fn parse(output: &str) -> Answer {
    let mut answer = Answer::default();
    let mut current: Option<(String, Block)> = None;
    let finish = |answer: &mut Answer, done: Option<(String, Block)>| {
        if let Some((tag, block)) = done {
            match tag.as_str() {
                "firstboot" => answer.firstboot = Some(block),
                "cloud-init" => answer.cloud_init = Some(block),
                "microcloud" => answer.microcloud = Some(block),
                _ => {}
            }
        }
    };
    for line in output.lines() {
        if line == "@@homelab-status end" {
            finish(&mut answer, current.take());
            answer.complete = true;
            break;
        }
        if let Some(rest) = line.strip_prefix(HEADER) {
            finish(&mut answer, current.take());
            let mut parts = rest.split(' ');
            let tag = parts.next().unwrap_or_default().to_owned();
            // A header with no number is a block whose exit is unknown:
            // treat it as failed.
            let exit = parts.next().and_then(|e| e.parse().ok()).unwrap_or(-1);
            current = Some((
                tag,
                Block {
                    exit,
                    lines: Vec::new(),
                },
            ));
        } else if let Some((_, block)) = current.as_mut() {
            // The script indented lines that started with `@@`.
            let line = line
                .strip_prefix(" @@")
                .map_or_else(|| line.to_owned(), |rest| format!("@@{rest}"));
            block.lines.push(line);
        }
    }
    finish(&mut answer, current.take());
    answer
}

/// What `firstboot.status` says (docs/FIRSTBOOT.md): `key=value` lines;
/// keys we do not know (a newer script's) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstbootStatus {
    pub state: Option<String>,
    pub node: Option<String>,
    pub attempt: Option<u32>,
    pub updated: Option<String>,
    pub reason: Option<String>,
}

pub fn parse_firstboot(lines: &[String]) -> FirstbootStatus {
    let mut s = FirstbootStatus::default();
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = clean(value.trim());
        let value = (!value.is_empty()).then_some(value);
        match key.trim() {
            "state" => s.state = value,
            "node" => s.node = value,
            "attempt" => s.attempt = value.and_then(|v| v.parse().ok()),
            "updated" => s.updated = value,
            "reason" => s.reason = value,
            _ => {}
        }
    }
    s
}

/// The state `cloud-init status` prints (`status: done`), if any.
pub fn parse_cloud_init(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix("status:")
            .map(|v| clean(v.trim()))
            .filter(|v| !v.is_empty())
    })
}

/// One member in `microcloud cluster list --format csv`: name, address,
/// role, fingerprint, status (a header row, if any, is skipped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub address: String,
    pub role: String,
    pub status: String,
}

/// The members, or None when a line is not such a row. sudo's own
/// warnings (`sudo: unable to resolve host …`), which share the stream,
/// are skipped.
pub fn parse_members(lines: &[String]) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, address, role, _fingerprint, status] = fields.as_slice() else {
            if line.starts_with("sudo: ") {
                continue;
            }
            return None;
        };
        if name.eq_ignore_ascii_case("name") {
            continue;
        }
        members.push(Member {
            name: clean(name),
            address: clean(address),
            role: clean(role),
            status: clean(status),
        });
    }
    Some(members)
}

/// Text from a node made safe to print: control characters (terminal
/// escapes) become `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_command_has_no_single_quote_inside_and_names_the_status_file() {
        for initiator in [false, true] {
            let c = command(initiator);
            let inner = c
                .strip_prefix("sh -c '")
                .and_then(|c| c.strip_suffix('\''))
                .unwrap();
            assert!(!inner.contains('\''), "{c}");
            assert!(inner.contains(STATUS_PATH));
            assert_eq!(inner.contains("s microcloud mc"), initiator);
        }
    }

    #[test]
    fn blocks_are_split_by_their_headers_and_escaped_lines_restored() {
        let out = "Welcome!\n\
                   @@homelab-status firstboot 0\nstate=done\n @@homelab-status end\n\
                   @@homelab-status cloud-init 2\nstatus: done\n\
                   @@homelab-status microcloud 0\npi1,10.0.0.1:9443,voter,ab,ONLINE\n\
                   @@homelab-status end\n";
        let a = parse(out);
        assert!(a.complete);
        let fb = a.firstboot.unwrap();
        assert_eq!(fb.exit, 0);
        assert_eq!(fb.lines, ["state=done", "@@homelab-status end"]);
        assert_eq!(a.cloud_init.unwrap().exit, 2);
        assert_eq!(a.microcloud.unwrap().lines.len(), 1);
    }

    #[test]
    fn output_cut_short_is_not_complete() {
        let a = parse("@@homelab-status firstboot 0\nstate=run");
        assert!(!a.complete);
        assert_eq!(a.firstboot.unwrap().lines, ["state=run"]);
    }

    #[test]
    fn the_status_file_ignores_unknown_keys_and_cleans_values() {
        let s = parse_firstboot(&lines(
            "state=failed\nnode=pi2\nattempt=5\nupdated=2026-11-21T10:42:07Z\n\
             bootloader=2024-01-01\nreason=snap install \x1b[31mmicroceph failed\nnonsense\n",
        ));
        assert_eq!(s.state.as_deref(), Some("failed"));
        assert_eq!(s.node.as_deref(), Some("pi2"));
        assert_eq!(s.attempt, Some(5));
        assert_eq!(
            s.reason.as_deref(),
            Some("snap install ?[31mmicroceph failed")
        );
    }

    #[test]
    fn cloud_init_status_and_members_are_read() {
        assert_eq!(
            parse_cloud_init(&lines("\nstatus: running\n")).as_deref(),
            Some("running")
        );
        assert_eq!(
            parse_cloud_init(&lines("bash: cloud-init: not found")),
            None
        );
        let m = parse_members(&lines(
            "sudo: unable to resolve host pi1: Name or service not known\n\
             NAME,ADDRESS,ROLE,FINGERPRINT,STATUS\npi1,10.0.0.11:9443,voter,ab12,ONLINE\n",
        ))
        .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].name.as_str(), m[0].status.as_str()),
            ("pi1", "ONLINE")
        );
        assert_eq!(parse_members(&lines("Error: no such socket")), None);
    }
}
