//! `check --json`: the problems of a profile and one result per node as
//! one JSON object (shape in docs/PROFILE.md, "check --json"). Absent
//! values are `null`, never "-".

use std::path::Path;

use serde_json::{Value, json};

use crate::profile::load::{LoadError, Position};
use crate::profile::problem::Problem;

/// What `check` found out about one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResult {
    pub name: String,
    /// The base image checked against the node, when it was at hand.
    pub image: Option<String>,
    /// Why the image was not checked, when it was not.
    pub not_checked: Option<String>,
    /// What the base image says about the node (uid notes).
    pub notes: Vec<String>,
}

fn problem(file: &Path, severity: &str, p: &Problem) -> Value {
    json!({
        "severity": severity,
        "file": file.display().to_string(),
        "line": p.at.map(|a| a.line),
        "column": p.at.map(|a| a.column),
        "node": p.node,
        "field": (!p.field.is_empty()).then_some(&p.field),
        "message": p.message,
        "hint": p.hint,
    })
}

/// The whole answer of `check --json`.
pub fn report(
    file: &Path,
    errors: &[Problem],
    warnings: &[Problem],
    nodes: &[NodeResult],
) -> Value {
    let mut problems: Vec<Value> = errors.iter().map(|p| problem(file, "error", p)).collect();
    problems.extend(warnings.iter().map(|p| problem(file, "warning", p)));
    let count = |list: &[Problem], name: &str| {
        list.iter()
            .filter(|p| p.node.as_deref() == Some(name))
            .count()
    };
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "errors": count(errors, &n.name),
                "warnings": count(warnings, &n.name),
                "image": n.image,
                "not_checked": n.not_checked,
                "notes": n.notes,
            })
        })
        .collect();
    json!({
        "profile": file.display().to_string(),
        "ok": errors.is_empty(),
        "errors": errors.len(),
        "warnings": warnings.len(),
        "problems": problems,
        "nodes": nodes,
    })
}

/// A file that could not be read as a profile at all, as one problem.
pub fn load_error(e: &LoadError) -> Problem {
    let at = match e {
        LoadError::Missing { .. } | LoadError::Read { .. } => None,
        LoadError::TooLarge { .. } => Some(Position { line: 1, column: 1 }),
        LoadError::NotUtf8 { at, .. } | LoadError::Yaml { at, .. } => Some(*at),
    };
    let message = match e {
        LoadError::Yaml { message, .. } => message.clone(),
        other => {
            let mut text = other.to_string();
            if let LoadError::Read { source, .. } = other {
                text = format!("{text}: {source}");
            }
            let prefix = at.map_or_else(String::new, |a| {
                format!("{}:{}:{}: ", other.path().display(), a.line, a.column)
            });
            text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
        }
    };
    let mut p = Problem::new(None, "", message);
    p.at = at;
    p
}
