//! Reading a profile that does not deserialize as a whole, so that one
//! mistake does not hide the rest. Each section (`defaults`, every node,
//! `microcloud`, `k3s`, `state_dir`) is read on its own from a copy of the text
//! in which everything else is blanked to spaces (lines and columns stay
//! those of the file). When a section fails, the `key: value` entry the
//! error points at is reported, blanked too, and the section read again,
//! so the section keeps every field that is right. Errors that blanking
//! itself causes (a mapping that lost a required key) are not reported:
//! their cause already is. What was blanked is remembered so that
//! `resolve` does not also report the hole it leaves ("no address").

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::profile::hint;
use crate::profile::inventory::{MicroCloudSpec, NodeSpec, Profile};
use crate::profile::k3s::K3sSpec;
use crate::profile::load::Position;
use crate::profile::problem::Problem;
use crate::profile::tree::{self, Entry, Step, Tree, Value};

/// At most this many section reads per profile: each is a parse of a
/// section's text, and a hostile file must not make thousands.
const MAX_READS: usize = 200;

/// What `load` learnt about the text beyond the typed profile.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The document with positions (`None` when it could not be parsed).
    pub tree: Option<Tree>,
    /// Mistakes found while reading (each with its position).
    pub problems: Vec<Problem>,
    /// Paths from the document's root (`nodes[1].network.gateway`) whose
    /// entries were left out because they were wrong.
    pub removed: Vec<Vec<Step>>,
    /// For each node of the profile, its index in the file's `nodes`
    /// (they differ when a node could not be read at all).
    pub origin: Vec<usize>,
    /// Some node could not be read at all.
    pub nodes_dropped: bool,
}

/// A serde error as position and words.
fn serde_error(e: &serde_saphyr::Error) -> (Option<Position>, String) {
    let at = e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    let formatter = serde_saphyr::DefaultMessageFormatter;
    let plain = e.render_with_options(serde_saphyr::render_options! {
        formatter: &formatter,
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let message = match at {
        Some(at) => {
            let suffix = format!(" at line {}, column {}", at.line, at.column);
            plain.strip_suffix(&suffix).unwrap_or(&plain).to_owned()
        }
        None => plain,
    };
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(&message)
        .to_owned();
    (at, message)
}

/// The text of one value of `text`, the rest blanked, and the `blanks`
/// entries blanked as well.
fn section_text(text: &str, value: &Value, blanks: &[&Entry]) -> String {
    let first = usize::try_from(value.start.line).unwrap_or(usize::MAX);
    let last = usize::try_from(value.end.line).unwrap_or(usize::MAX);
    let mut lines: Vec<Vec<char>> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 < first || i + 1 > last {
                Vec::new()
            } else {
                l.chars().collect()
            }
        })
        .collect();
    blank(&mut lines, Position { line: 1, column: 1 }, value.start);
    blank(
        &mut lines,
        value.end,
        Position {
            line: value.end.line + 1,
            column: 1,
        },
    );
    for e in blanks {
        blank(&mut lines, e.key_at, e.value.end);
        if e.flow {
            blank_comma(&mut lines, e.value.end);
        }
    }
    let mut out = String::with_capacity(text.len());
    for l in lines {
        out.extend(l);
        out.push('\n');
    }
    out
}

fn idx(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Spaces over `[from, to)`.
fn blank(lines: &mut [Vec<char>], from: Position, to: Position) {
    for (i, line) in lines.iter_mut().enumerate() {
        let n = i + 1;
        if n < idx(from.line) || n > idx(to.line) {
            continue;
        }
        let start = if n == idx(from.line) {
            idx(from.column).saturating_sub(1)
        } else {
            0
        };
        let end = if n == idx(to.line) {
            idx(to.column).saturating_sub(1).min(line.len())
        } else {
            line.len()
        };
        for c in line.iter_mut().take(end).skip(start) {
            *c = ' ';
        }
    }
}

/// The `,` after a blanked flow entry, so `{a: 1, b: 2}` stays valid.
fn blank_comma(lines: &mut [Vec<char>], after: Position) {
    let mut col = idx(after.column).saturating_sub(1);
    for line in lines.iter_mut().skip(idx(after.line).saturating_sub(1)) {
        while let Some(c) = line.get_mut(col) {
            match *c {
                ',' => {
                    *c = ' ';
                    return;
                }
                ' ' | '\t' => col += 1,
                _ => return,
            }
        }
        col = 0;
    }
}

/// The entry at the end of `path` under `value`.
fn entry_by_path<'v>(value: &'v Value, path: &[Step]) -> Option<&'v Entry> {
    let (Step::Key(last), parent) = path.split_last()? else {
        return None;
    };
    let (holder, found) = value.walk(parent);
    (found == parent.len()).then(|| holder.get(last)).flatten()
}

/// `path` up to and including its last key before `path`'s end.
fn parent_entry(path: &[Step]) -> Vec<Step> {
    let mut p = path[..path.len().saturating_sub(1)].to_vec();
    while matches!(p.last(), Some(Step::Index(_))) {
        p.pop();
    }
    p
}

/// Reads sections and collects what is wrong with them.
struct Salvager<'t> {
    text: &'t str,
    reads: usize,
    source: Source,
}

impl Salvager<'_> {
    /// Reads `value` as a `T`, leaving out the entries that are wrong.
    /// `prefix` is the value's path from the root; `None` when not even
    /// an empty section of it could be read.
    fn read<T: DeserializeOwned>(&mut self, value: &Value, prefix: &[Step]) -> Option<T> {
        let mut blanked: Vec<Vec<Step>> = Vec::new();
        loop {
            if self.reads >= MAX_READS {
                return None;
            }
            self.reads += 1;
            let entries: Vec<&Entry> = blanked
                .iter()
                .filter_map(|p| entry_by_path(value, p))
                .collect();
            let text = section_text(self.text, value, &entries);
            let err = match serde_saphyr::from_str::<T>(&text) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let (at, message) = serde_error(&err);
            let Some(at) = at else {
                if blanked.is_empty() {
                    self.problem(prefix, &[], value.start, &message, value.end.line);
                }
                return None;
            };
            let found = value.entry_at(at).map(|(p, _)| p);
            let mut path = match found {
                // A missing key is the mapping's fault, not its first entry's.
                Some(p) if message.starts_with("missing field") => {
                    let holder = p[..p.len().saturating_sub(1)].to_vec();
                    if blanked.is_empty() {
                        self.problem(prefix, &holder, at, &message, at.line);
                    }
                    parent_entry(&p)
                }
                Some(p) => {
                    let caused = blanked.iter().any(|b| b.starts_with(&p));
                    if !caused {
                        let end = entry_by_path(value, &p).map_or(at.line, |e| e.value.end.line);
                        self.problem(prefix, &p, at, &message, end);
                    }
                    p
                }
                None => {
                    if blanked.is_empty() {
                        self.problem(prefix, &[], at, &message, at.line);
                    }
                    return None;
                }
            };
            while blanked.contains(&path) && !path.is_empty() {
                path = parent_entry(&path);
            }
            if path.is_empty() || entry_by_path(value, &path).is_none() {
                return None;
            }
            let mut full = prefix.to_vec();
            full.extend(path.iter().cloned());
            self.source.removed.push(full);
            blanked.push(path);
        }
    }

    /// Records a problem at `at` about `path` under `prefix`; a layout
    /// mistake on the lines of the value (`at.line..=end`) is named
    /// instead when it is what made the value wrong.
    fn problem(&mut self, prefix: &[Step], path: &[Step], at: Position, message: &str, end: u64) {
        let (node, field) = label(self.source.tree.as_ref(), prefix, path);
        // A misaligned key shows on the value's next lines; a few are
        // enough (a long block scalar is not searched line by line).
        let layout =
            ((at.line + 1)..=end.min(at.line + 3)).find_map(|n| hint::misindented(self.text, n));
        let p = match layout {
            Some(l) => {
                let mut p = Problem::new(node.as_deref(), field, l.message);
                p.at = Some(l.at);
                p
            }
            None => {
                let w = hint::reword(message);
                let mut p = Problem::new(node.as_deref(), field, w.message);
                p.hint = w.hint;
                p.at = Some(at);
                p
            }
        };
        self.source.problems.push(p);
    }
}

/// The node label and field of `path` under `prefix`: `nodes[i]…` is
/// told by the node's hostname as written (or `nodes[i]`).
pub fn label(tree: Option<&Tree>, prefix: &[Step], path: &[Step]) -> (Option<String>, String) {
    let mut full = prefix.to_vec();
    full.extend(path.iter().cloned());
    if let [Step::Key(k), Step::Index(i), rest @ ..] = full.as_slice()
        && k == "nodes"
    {
        let name = tree
            .and_then(|t| t.root.get("nodes"))
            .and_then(|e| e.value.items().get(*i))
            .and_then(|n| n.get("hostname"))
            .and_then(|h| h.value.scalar())
            .filter(|h| crate::profile::Hostname::parse(h).is_ok())
            .map_or_else(|| format!("nodes[{i}]"), str::to_owned);
        return (Some(name), tree::join(rest));
    }
    (None, tree::join(&full))
}

const TOP_KEYS: [&str; 5] = ["state_dir", "defaults", "nodes", "microcloud", "k3s"];

/// Reads what can be read of a profile whose text parses as YAML but not
/// as a `Profile`. `None` when the file's shape leaves nothing to salvage
/// (not a mapping, anchors, no `nodes` list): the caller then reports
/// the whole-file error as it is.
pub fn salvage(text: &str, tree: Tree) -> Option<Profile> {
    if tree.anchored || tree.root.has_alias() || tree.root.entries().is_empty() {
        return None;
    }
    let root = tree.root.clone();
    let nodes_entry = root.get("nodes")?;
    if !matches!(nodes_entry.value.kind, tree::Kind::Seq(_)) {
        return None;
    }
    let mut s = Salvager {
        text,
        reads: 0,
        source: Source {
            tree: Some(tree),
            ..Source::default()
        },
    };
    let mut seen: Vec<&str> = Vec::new();
    for e in root.entries() {
        let path = [Step::Key(e.key.clone())];
        if seen.contains(&e.key.as_str()) {
            let msg = format!("duplicate mapping key: {}", e.key);
            s.problem(&[], &path, e.key_at, &msg, e.key_at.line);
        } else if !TOP_KEYS.contains(&e.key.as_str()) {
            let msg = format!(
                "unknown field `{}`, expected one of {}",
                e.key,
                TOP_KEYS.join(", ")
            );
            s.problem(&[], &path, e.key_at, &msg, e.key_at.line);
            s.source.removed.push(path.to_vec());
        }
        seen.push(&e.key);
    }
    let section = |key: &str| root.get(key).map(|e| &e.value).filter(|v| !v.is_null());
    let prefix = |key: &str| vec![Step::Key(key.to_owned())];
    let state_dir = section("state_dir").and_then(|v| {
        let p: Option<PathBuf> = s.read(v, &prefix("state_dir"));
        if p.is_none() {
            s.source.removed.push(prefix("state_dir"));
        }
        p
    });
    let defaults = match section("defaults") {
        Some(v) => s
            .read::<NodeSpec>(v, &prefix("defaults"))
            .unwrap_or_else(|| {
                s.source.removed.push(prefix("defaults"));
                NodeSpec::default()
            }),
        None => NodeSpec::default(),
    };
    let mut nodes = Vec::new();
    for (i, v) in nodes_entry.value.items().iter().enumerate() {
        let at = vec![Step::Key("nodes".to_owned()), Step::Index(i)];
        match s.read::<NodeSpec>(v, &at) {
            Some(n) => {
                nodes.push(n);
                s.source.origin.push(i);
            }
            None => s.source.nodes_dropped = true,
        }
    }
    let microcloud = section("microcloud").and_then(|v| {
        let m = s.read::<MicroCloudSpec>(v, &prefix("microcloud"));
        if m.is_none() {
            s.source.removed.push(prefix("microcloud"));
        }
        m
    });
    let k3s = section("k3s").and_then(|v| {
        let k = s.read::<K3sSpec>(v, &prefix("k3s"));
        if k.is_none() {
            s.source.removed.push(prefix("k3s"));
        }
        k
    });
    if s.source.problems.is_empty() {
        return None;
    }
    Some(Profile {
        state_dir,
        defaults,
        nodes,
        microcloud,
        k3s,
        source: s.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::load::parse;
    use std::path::Path;

    fn read(text: &str) -> Profile {
        parse(Path::new("h.yaml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn shown(p: &Profile) -> Vec<String> {
        p.source
            .problems
            .iter()
            .map(|p| {
                let at = p.at.unwrap();
                format!("{}:{}: {p}", at.line, at.column)
            })
            .collect()
    }

    #[test]
    fn a_bad_entry_of_a_flow_mapping_leaves_its_siblings() {
        let p = read(
            "nodes:\n  - {hostname: pi1, board: rpi4, \
             network: {address: 10.0.0.300/24, gateway: 10.0.0.1}}\n",
        );
        assert_eq!(shown(&p).len(), 1, "{:?}", shown(&p));
        assert!(
            shown(&p)[0].starts_with("2:53: node pi1: network.address: "),
            "{:?}",
            shown(&p)
        );
        let node = &p.nodes[0];
        assert!(node.board.is_some());
        let net = node.network.as_ref().unwrap();
        assert_eq!(net.gateway, Some("10.0.0.1".parse().unwrap()));
        assert!(net.address.is_none());
    }

    #[test]
    fn a_key_missing_only_because_its_value_was_bad_is_not_reported() {
        let p = read(
            "nodes:\n  - hostname: pi1\n    users:\n      - name: Not A Name\n        \
             sudo: nopasswd\n",
        );
        let shown = shown(&p);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("4:15: node pi1: users[0].name: "),
            "{shown:?}"
        );
        assert!(!shown[0].contains("missing"), "{shown:?}");
        assert!(
            p.source
                .removed
                .iter()
                .any(|r| tree::join(r) == "nodes[0].users"),
            "{:?}",
            p.source.removed
        );
    }

    #[test]
    fn a_node_that_is_not_a_mapping_is_dropped_and_the_others_kept() {
        let p = read("nodes:\n  - just-a-name\n  - hostname: pi2\n");
        assert_eq!(p.nodes.len(), 1);
        assert_eq!(p.source.origin, vec![1]);
        assert!(p.source.nodes_dropped);
        assert_eq!(shown(&p).len(), 1, "{:?}", shown(&p));
    }

    #[test]
    fn a_profile_with_anchors_is_read_whole() {
        let e = parse(
            Path::new("h.yaml"),
            "defaults: &d\n  board: rpi4\nnodes:\n  - hostname: pi_1\n",
        );
        assert!(e.is_err());
    }
}
