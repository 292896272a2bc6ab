//! Semantic problems found while resolving a profile. They are collected,
//! not returned at the first one, so `check` reports everything at once;
//! each names the node (when there is one) and the field path.

use std::fmt;
use std::path::PathBuf;

use crate::profile::load::Position;

/// One error or warning about a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The node's hostname (or `nodes[3]` when it has none).
    pub node: Option<String>,
    /// Dotted path in the profile, e.g. `network.gateway`.
    pub field: String,
    pub message: String,
    /// Where in the profile, when the value's position is known.
    pub at: Option<Position>,
    /// What to do about it, when there is a likely fix ("did you mean …").
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(node: Option<&str>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            node: node.map(str::to_owned),
            field: field.into(),
            message: message.into(),
            at: None,
            hint: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "node {node}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        match &self.hint {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

/// Everything wrong with a profile, plus warnings that do not stop it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Every node of the file by its label (hostname, or `nodes[i]`).
    pub nodes: Vec<String>,
}

impl Report {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            ..Self::default()
        }
    }

    pub fn error(
        &mut self,
        node: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(Problem::new(node, field, message));
    }

    /// An error with a likely fix ("did you mean …"), shown after it.
    pub fn error_with_hint(
        &mut self,
        node: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut p = Problem::new(node, field, message);
        p.hint = hint;
        self.errors.push(p);
    }

    /// An error at a known position of the profile (shown as
    /// `file:line:column:` before the node and field).
    pub fn error_at(
        &mut self,
        node: Option<&str>,
        field: impl Into<String>,
        at: Position,
        message: impl Into<String>,
    ) {
        let mut p = Problem::new(node, field, message);
        p.at = Some(at);
        self.errors.push(p);
    }

    pub fn warn(
        &mut self,
        node: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings.push(Problem::new(node, field, message));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

impl fmt::Display for Report {
    /// One line per error, each prefixed with the profile's path, then a
    /// count (the count line is what a user sees last in a terminal).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for e in &self.errors {
            match e.at {
                Some(at) => writeln!(f, "{path}:{}:{}: {e}", at.line, at.column)?,
                None => writeln!(f, "{path}: {e}")?,
            }
        }
        let n = self.errors.len();
        write!(f, "{path}: {n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Report {}
