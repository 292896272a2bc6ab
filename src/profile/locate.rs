//! Points each semantic problem at the line where its value is written.
//! `resolve` and `validate` report a node and a field path; here the
//! path is looked up in the node as written, else in `defaults` (then
//! the problem is about `defaults.…`, once, not once per node that
//! inherits it). Problems whose field was left out because it could not
//! be read are dropped: their cause is already reported.

use crate::profile::load::Position;
use crate::profile::problem::{Problem, Report};
use crate::profile::salvage::Source;
use crate::profile::tree::{self, Step, Value};

/// Where each resolved node's hostname is written; `origin[i]` is the
/// index in the file of resolved node `i`.
pub fn hostname_positions(source: &Source, origin: &[usize]) -> Vec<Option<Position>> {
    origin
        .iter()
        .map(|i| {
            let nodes = &source.tree.as_ref()?.root.get("nodes")?.value;
            Some(nodes.items().get(*i)?.get("hostname")?.value.start)
        })
        .collect()
}

/// Every node of the file by its label, read or not (for `check --json`).
pub fn file_nodes(source: &Source, labels: &Labels) -> Vec<String> {
    match source.tree.as_ref().and_then(|t| t.root.get("nodes")) {
        Some(e) => (0..e.value.items().len())
            .map(|i| {
                let at = [Step::Key("nodes".to_owned()), Step::Index(i)];
                crate::profile::salvage::label(source.tree.as_ref(), &[], &at)
                    .0
                    .unwrap_or_default()
            })
            .collect(),
        None => labels.iter().map(|(l, _)| l.clone()).collect(),
    }
}

/// Each node's label (hostname or `nodes[i]`) and its index in the file.
pub type Labels = [(String, usize)];

fn index_of(labels: &Labels, label: &str) -> Option<usize> {
    labels.iter().find(|(l, _)| l == label).map(|(_, i)| *i)
}

fn related(a: &[Step], b: &[Step]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The paths from the root a problem may be about.
fn paths(p: &Problem, labels: &Labels) -> Vec<Vec<Step>> {
    let field = tree::steps(&p.field);
    let under = |head: Vec<Step>| {
        let mut v = head;
        v.extend(field.iter().cloned());
        v
    };
    match p.node.as_deref().and_then(|l| index_of(labels, l)) {
        Some(i) => vec![
            under(vec![Step::Key("nodes".to_owned()), Step::Index(i)]),
            under(vec![Step::Key("defaults".to_owned())]),
        ],
        None => vec![field],
    }
}

/// Whether a field the problem is about was left out as unreadable.
fn caused_by_removal(p: &Problem, source: &Source, labels: &Labels) -> bool {
    let mine = paths(p, labels);
    source
        .removed
        .iter()
        .any(|r| mine.iter().any(|m| related(m, r)))
}

/// Sets the position of a problem that has none from the tree.
fn place(p: &mut Problem, root: &Value, labels: &Labels) {
    let field = tree::steps(&p.field);
    let node = p
        .node
        .as_deref()
        .and_then(|l| index_of(labels, l))
        .and_then(|i| root.get("nodes")?.value.items().get(i));
    let Some(node) = node else {
        p.at = Some(root.walk(&field).0.start);
        return;
    };
    let (here, found) = node.walk(&field);
    if found == field.len() {
        p.at = Some(here.start);
        return;
    }
    if let Some(d) = root.get("defaults")
        && let (v, n) = d.value.walk(&field)
        && n == field.len()
        && !field.is_empty()
    {
        p.at = Some(v.start);
        p.field = format!("defaults.{}", p.field);
        return;
    }
    p.at = Some(here.start);
}

/// A value written in `defaults` that every node inheriting it gets
/// wrong in the same words is one mistake: reported once, without a node.
/// Words that differ per node ("is this node's own address") keep theirs.
fn once_for_defaults(list: &mut [Problem]) {
    let key = |p: &Problem| (p.at, p.field.clone(), p.message.clone());
    let mut count = std::collections::HashMap::new();
    for p in list.iter().filter(|p| p.field.starts_with("defaults.")) {
        *count.entry(key(p)).or_insert(0usize) += 1;
    }
    for p in list.iter_mut().filter(|p| p.field.starts_with("defaults.")) {
        if count.get(&key(p)).is_some_and(|n| *n > 1) {
            p.node = None;
        }
    }
}

fn sort_key(p: &Problem) -> (u64, u64) {
    p.at.map_or((u64::MAX, u64::MAX), |Position { line, column }| {
        (line, column)
    })
}

/// Drops what unreadable fields explain, places and de-duplicates the
/// rest, adds the reading mistakes, and sorts everything by position.
pub fn finish(report: &mut Report, source: &Source, labels: &Labels) {
    for list in [&mut report.errors, &mut report.warnings] {
        list.retain(|p| !caused_by_removal(p, source, labels));
        if let Some(tree) = &source.tree {
            for p in list.iter_mut().filter(|p| p.at.is_none()) {
                place(p, &tree.root, labels);
            }
        }
    }
    for list in [&mut report.errors, &mut report.warnings] {
        once_for_defaults(list);
    }
    let mut errors = source.problems.clone();
    errors.append(&mut report.errors);
    for list in [&mut errors, &mut report.warnings] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|p| seen.insert(format!("{p:?}")));
        list.sort_by_key(sort_key);
    }
    report.errors = errors;
}
