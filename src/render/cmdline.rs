//! Kernel command line edits as token operations on the line that is
//! already in the image's `cmdline.txt`. The stock line differs between
//! image builds (see targets.md §1.6), so we never rewrite it: every
//! existing token is kept, in order, and only what the seed needs is set
//! or added.

use std::fmt;

/// One edit of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineOp {
    /// Append `token` unless exactly that token is already present.
    Add { token: String },
    /// Give `key` this value and make it the only `key=…` token: the
    /// first is changed in place (or `key=value` appended), later ones are
    /// dropped — the kernel passes every copy on, and cloud-init's
    /// ds-identify would see a second `ds=` too.
    Set { key: String, value: String },
}

impl fmt::Display for CmdlineOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add { token } => write!(f, "add {token}"),
            Self::Set { key, value } => write!(f, "set {key}={value}"),
        }
    }
}

/// Splits a command line into tokens; double quotes group spaces, as the
/// kernel's own parser does (`foo="a b"` is one token).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn key_of(token: &str) -> &str {
    token.split_once('=').map_or(token, |(k, _)| k)
}

/// Applies `ops` to the first line of `existing` (the only line the Pi
/// firmware reads) and returns the whole file; other lines are kept.
pub fn edit_cmdline(existing: &str, ops: &[CmdlineOp]) -> String {
    let (first, rest) = existing.split_once('\n').unwrap_or((existing, ""));
    let mut toks = tokens(first);
    for op in ops {
        match op {
            CmdlineOp::Add { token } => {
                if !toks.iter().any(|t| t == token) {
                    toks.push(token.clone());
                }
            }
            CmdlineOp::Set { key, value } => {
                let new = format!("{key}={value}");
                let mut seen = false;
                toks.retain_mut(|t| {
                    if key_of(t) != key {
                        return true;
                    }
                    if seen {
                        return false;
                    }
                    seen = true;
                    *t = new.clone();
                    true
                });
                if !seen {
                    toks.push(new);
                }
            }
        }
    }
    let mut out = toks.join(" ");
    out.push('\n');
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBLE: &str = "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc\n";

    fn set(k: &str, v: &str) -> CmdlineOp {
        CmdlineOp::Set {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn keeps_every_token_and_appends() {
        let out = edit_cmdline(NOBLE, &[set("ds", "nocloud")]);
        assert_eq!(out, NOBLE.replace("fixrtc\n", "fixrtc ds=nocloud\n"));
    }

    #[test]
    fn is_idempotent() {
        let ops = [
            set("ds", "nocloud"),
            CmdlineOp::Add {
                token: "quiet".into(),
            },
        ];
        let once = edit_cmdline(NOBLE, &ops);
        assert_eq!(edit_cmdline(&once, &ops), once);
    }

    #[test]
    fn set_changes_a_value_in_place_and_keeps_duplicates_of_other_keys() {
        let out = edit_cmdline(
            "a=1 console=x ds=nocloud-net;s=http://h/ b console=y",
            &[set("ds", "nocloud")],
        );
        assert_eq!(out, "a=1 console=x ds=nocloud b console=y\n");
    }

    #[test]
    fn set_leaves_exactly_one_token_of_its_key() {
        let out = edit_cmdline(
            "ds=nocloud-net;s=http://evil/ root=x ds=none console=tty1 ds=ec2\n",
            &[set("ds", "nocloud")],
        );
        assert_eq!(out, "ds=nocloud root=x console=tty1\n");
        // A bare `ds` (no value) is the same key and goes too.
        let out = edit_cmdline("root=x ds ds=a\n", &[set("ds", "nocloud")]);
        assert_eq!(out, "root=x ds=nocloud\n");
    }

    #[test]
    fn quoted_values_stay_one_token() {
        let out = edit_cmdline(
            "init=/bin/sh foo=\"a b\"  rootwait",
            &[CmdlineOp::Add {
                token: "quiet".into(),
            }],
        );
        assert_eq!(out, "init=/bin/sh foo=\"a b\" rootwait quiet\n");
    }

    #[test]
    fn only_the_first_line_is_edited() {
        let out = edit_cmdline("root=x\n# note\n", &[CmdlineOp::Add { token: "ro".into() }]);
        assert_eq!(out, "root=x ro\n# note\n");
    }

    #[test]
    fn empty_file_gets_the_tokens() {
        assert_eq!(edit_cmdline("", &[set("ds", "nocloud")]), "ds=nocloud\n");
    }
}
