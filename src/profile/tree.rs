//! The profile as a YAML tree with the position of every key and value,
//! read by the same YAML parser serde-saphyr uses. `check` needs it to
//! keep going after a mistake (each section is read on its own, see
//! `salvage`) and to point a semantic error at the line where the value
//! is written (see `locate`); the typed `Profile` has no positions.

use serde_saphyr::granit_parser::{self, Event, Parser};

use crate::profile::load::Position;

/// One YAML value and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub start: Position,
    /// Just past the value (exclusive).
    pub end: Position,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Scalar(String),
    Seq(Vec<Value>),
    Map(Vec<Entry>),
    /// `*name`: the tree does not follow aliases.
    Alias,
}

/// A `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub key_at: Position,
    pub value: Value,
    /// Inside a `{…}` mapping (blanking it must take its comma too).
    pub flow: bool,
}

impl Entry {
    /// Whether `at` falls on this entry, from its key to the end of its value.
    pub fn contains(&self, at: Position) -> bool {
        before_eq(self.key_at, at) && before(at, self.value.end.max_pos(self.key_at))
    }
}

trait MaxPos {
    fn max_pos(self, other: Position) -> Position;
}

impl MaxPos for Position {
    fn max_pos(self, other: Position) -> Position {
        if before(self, other) { other } else { self }
    }
}

fn before(a: Position, b: Position) -> bool {
    (a.line, a.column) < (b.line, b.column)
}

fn before_eq(a: Position, b: Position) -> bool {
    (a.line, a.column) <= (b.line, b.column)
}

/// A step of a field path: `users[0].name` is `users`, `0`, `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Splits a dotted field path (`users[0].ssh_key_files[1]`) into steps.
pub fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Step::Key(rest[..open].to_owned()));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    out.push(Step::Index(i));
                }
                rest = rest[close + 1..]
                    .strip_prefix('[')
                    .map_or("", |_| &rest[close + 1..]);
            }
        } else {
            out.push(Step::Key(rest.to_owned()));
        }
    }
    out
}

/// Joins steps back into a dotted path.
pub fn join(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

impl Value {
    pub fn entries(&self) -> &[Entry] {
        match &self.kind {
            Kind::Map(e) => e,
            _ => &[],
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key == key)
    }

    pub fn items(&self) -> &[Value] {
        match &self.kind {
            Kind::Seq(v) => v,
            _ => &[],
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// `~`, `null` or nothing at all.
    pub fn is_null(&self) -> bool {
        self.scalar()
            .is_some_and(|s| matches!(s, "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value at `path`, and how many steps of it were found: a path
    /// that is only partly written stops at its deepest written part.
    pub fn walk(&self, path: &[Step]) -> (&Value, usize) {
        let mut here = self;
        for (n, step) in path.iter().enumerate() {
            let next = match step {
                Step::Key(k) => here.get(k).map(|e| &e.value),
                Step::Index(i) => here.items().get(*i),
            };
            match next {
                Some(v) => here = v,
                None => return (here, n),
            }
        }
        (here, path.len())
    }

    /// Whether the tree uses anchors or aliases anywhere (then a section
    /// cannot be read on its own).
    pub fn has_alias(&self) -> bool {
        match &self.kind {
            Kind::Alias => true,
            Kind::Scalar(_) => false,
            Kind::Seq(v) => v.iter().any(Value::has_alias),
            Kind::Map(e) => e.iter().any(|e| e.key == "<<" || e.value.has_alias()),
        }
    }

    /// The innermost entry under this value that contains `at`, with its
    /// path relative to this value.
    pub fn entry_at(&self, at: Position) -> Option<(Vec<Step>, &Entry)> {
        let mut found = None;
        let mut path = Vec::new();
        let mut here = self;
        loop {
            let next = match &here.kind {
                Kind::Map(entries) => entries.iter().find(|e| e.contains(at)).map(|e| {
                    path.push(Step::Key(e.key.clone()));
                    found = Some((path.clone(), e));
                    &e.value
                }),
                Kind::Seq(items) => items.iter().enumerate().find_map(|(i, v)| {
                    (before_eq(v.start, at) && before(at, v.end)).then(|| {
                        path.push(Step::Index(i));
                        v
                    })
                }),
                _ => None,
            };
            match next {
                Some(v) => here = v,
                None => return found,
            }
        }
    }
}

/// A YAML syntax error: where and what the parser said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: Position,
    pub message: String,
}

fn position(m: &granit_parser::Marker) -> Position {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Position {
        line: n(m.line()),
        column: n(m.col()).saturating_add(1),
    }
}

/// An open collection while the events are read.
enum Open {
    Seq(Position, Vec<Value>, bool),
    Map(Position, Vec<Entry>, Option<(String, Position)>, bool),
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub root: Value,
    /// Some value carries an `&anchor` (or the tree an alias or `<<`):
    /// then a section cannot be read apart from the rest.
    pub anchored: bool,
}

/// Parses the first document of `text` into a tree; `Ok(None)` for a
/// stream with no document.
pub fn parse(text: &str) -> Result<Option<Tree>, SyntaxError> {
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    let mut anchored = false;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            at: position(e.marker()),
            message: e.info(),
        })?;
        let (start, end) = (position(&span.start), position(&span.end));
        let done = match event {
            Event::Scalar(s, _, anchor, _) => {
                anchored |= anchor != 0;
                Some(Value {
                    start,
                    end,
                    kind: Kind::Scalar(s.into_owned()),
                })
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => Some(Value {
                start,
                end,
                kind: Kind::Alias,
            }),
            Event::SequenceStart(style, anchor, _) => {
                let flow = style == granit_parser::StructureStyle::Flow;
                anchored |= anchor != 0;
                stack.push(Open::Seq(start, Vec::new(), flow));
                None
            }
            Event::MappingStart(style, anchor, _) => {
                let flow = style == granit_parser::StructureStyle::Flow;
                anchored |= anchor != 0;
                stack.push(Open::Map(start, Vec::new(), None, flow));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(s, items, flow)) => Some(Value {
                    start: s,
                    end: closing_end(flow, end, items.last().map(|v| v.end), s),
                    kind: Kind::Seq(items),
                }),
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(s, entries, _, flow)) => Some(Value {
                    start: s,
                    end: closing_end(flow, end, entries.last().map(|e| e.value.end), s),
                    kind: Kind::Map(entries),
                }),
                _ => None,
            },
            Event::DocumentEnd if root.is_some() => break,
            _ => None,
        };
        let Some(value) = done else { continue };
        match stack.last_mut() {
            None => root = Some(value),
            Some(Open::Seq(_, items, _)) => items.push(value),
            Some(Open::Map(_, entries, pending, flow)) => match pending.take() {
                None => {
                    let key = value.scalar().unwrap_or("").to_owned();
                    *pending = Some((key, value.start));
                }
                Some((key, key_at)) => entries.push(Entry {
                    key,
                    key_at,
                    value,
                    flow: *flow,
                }),
            },
        }
    }
    Ok(root.map(|root| Tree { root, anchored }))
}

/// A flow collection ends at its closing bracket; a block one where its
/// last child ends (the parser's end event sits on the next token).
fn closing_end(flow: bool, end: Position, last: Option<Position>, start: Position) -> Position {
    if flow { end } else { last.unwrap_or(start) }
}
