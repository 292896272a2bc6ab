//! Reading a profile file into a `Profile`: a size cap (a profile is a few
//! kilobytes; a 50 MB file is a mistake and is refused before it is read),
//! UTF-8, then serde-saphyr with duplicate keys refused. Every error names
//! `file:line:column` and, where the parser has one, shows the line.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::profile::hint;
use crate::profile::inventory::Profile;
use crate::profile::problem::Problem;
use crate::profile::salvage::{self, salvage};
use crate::profile::tree::{self, Step, Tree};

/// The largest profile we read.
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// A position in the profile, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "{}: no such profile; `{}` writes a starter one there \
         (or name another with --profile FILE)",
        path.display(),
        init_command(path)
    )]
    Missing { path: PathBuf },
    #[error("reading profile {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}:1:1: profile is {size} bytes; profiles over {max} bytes are refused",
        path.display(),
        max = MAX_PROFILE_BYTES
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}:{}:{}: profile is not UTF-8 text", path.display(), at.line, at.column)]
    NotUtf8 { path: PathBuf, at: Position },
    #[error("{}", Syntax(self))]
    Yaml {
        path: PathBuf,
        at: Position,
        message: String,
        /// The source lines around the error, with a caret.
        snippet: String,
    },
}

/// The `init` command line that writes a profile at `path`.
fn init_command(path: &Path) -> String {
    if path == Path::new("homelab.yaml") {
        "homelab-image init".to_string()
    } else {
        format!("homelab-image --profile {} init", path.display())
    }
}

/// Displays a YAML error as `file:line:col: message` plus the snippet.
struct Syntax<'a>(&'a LoadError);

impl fmt::Display for Syntax<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let LoadError::Yaml {
            path,
            at,
            message,
            snippet,
        } = self.0
        {
            write!(f, "{}:{}:{}: {message}", path.display(), at.line, at.column)?;
            if !snippet.is_empty() {
                write!(f, "\n{snippet}")?;
            }
        }
        Ok(())
    }
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path }
            | Self::Read { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path, .. }
            | Self::Yaml { path, .. } => path,
        }
    }
}

/// Reads and parses the profile at `path`.
pub fn load(path: &Path) -> Result<Profile, LoadError> {
    let text = read_capped(path)?;
    parse(path, &text)
}

/// Reads at most `MAX_PROFILE_BYTES` (+1 to notice a larger file whose
/// size the metadata did not tell, such as a pipe).
fn read_capped(path: &Path) -> Result<String, LoadError> {
    let io_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing {
            path: path.to_owned(),
        },
        _ => io_err(e),
    })?;
    let size = file.metadata().map_err(io_err)?.len();
    if size > MAX_PROFILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_PROFILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: read,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let at = position_of(&e.as_bytes()[..bad]);
        LoadError::NotUtf8 {
            path: path.to_owned(),
            at,
        }
    })
}

/// The line and column just after `prefix`.
fn position_of(prefix: &[u8]) -> Position {
    let line_start = prefix
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Position {
        line: count(prefix.iter().filter(|b| **b == b'\n').count()) + 1,
        column: count(prefix.len() - line_start) + 1,
    }
}

/// Parses profile text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Profile, LoadError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Err(LoadError::Yaml {
            path: path.to_owned(),
            at: Position { line: 1, column: 1 },
            message: "profile is empty: it needs at least a `nodes:` list".to_owned(),
            snippet: String::new(),
        });
    }
    parse_recovering(path, text, 0)
}

/// How many layout mistakes (a tab, a misaligned key) are stepped over
/// in one file before the first one is reported alone.
const MAX_LAYOUT_FIXES: usize = 8;

/// Reads the whole profile; when it does not deserialize, reads what it
/// can section by section (`salvage`). A YAML syntax error explained by a
/// tab or a misaligned key is reported in those words, and the rest of
/// the file read without that line so its other mistakes show as well.
fn parse_recovering(path: &Path, text: &str, fixes: usize) -> Result<Profile, LoadError> {
    // serde-saphyr's defaults refuse duplicate keys and bound alias
    // expansion, which is what a hand-written inventory wants.
    let whole = serde_saphyr::from_str::<Profile>(text);
    let tree = tree::parse(text);
    let e = match (whole, tree) {
        (Ok(mut p), tree) => {
            p.source.tree = tree.ok().flatten();
            return Ok(p);
        }
        (Err(e), Ok(Some(t))) => return salvage(text, t).ok_or_else(|| yaml_error(path, &e)),
        (Err(e), Ok(None)) => return Err(yaml_error(path, &e)),
        (Err(e), Err(syntax)) => (e, syntax),
    };
    let (e, syntax) = e;
    let Some(layout) = hint::explain(text, syntax.at, syntax.at.line + 1) else {
        return Err(yaml_error(path, &e));
    };
    let worded = LoadError::Yaml {
        path: path.to_owned(),
        at: layout.at,
        message: layout.message.clone(),
        snippet: String::new(),
    };
    if fixes >= MAX_LAYOUT_FIXES {
        return Err(worded);
    }
    let without: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let n = u64::try_from(i).unwrap_or(u64::MAX) + 1;
            if n == layout.at.line {
                "\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let Ok(mut profile) = parse_recovering(path, &without, fixes + 1) else {
        return Err(worded);
    };
    let removed = profile
        .source
        .tree
        .as_ref()
        .and_then(|t| removed_path(t, &without, layout.at.line, layout.key.as_deref()));
    // A dropped `- key:` line began a list item: where it belonged is a
    // guess, good enough to silence what it leaves missing, not to show.
    let item = text
        .lines()
        .nth(usize::try_from(layout.at.line.saturating_sub(1)).unwrap_or(usize::MAX))
        .is_some_and(|l| l.trim_start_matches([' ', '\t']).starts_with('-'));
    let (node, field) = match &removed {
        Some(p) if !item => salvage::label(profile.source.tree.as_ref(), &[], p),
        _ => (None, String::new()),
    };
    let mut problem = Problem::new(node.as_deref(), field, layout.message);
    problem.at = Some(layout.at);
    profile.source.problems.insert(0, problem);
    profile.source.removed.extend(removed);
    Ok(profile)
}

/// The path the key on a dropped `line` would have had: beside the entry
/// on the content line before it.
fn removed_path(tree: &Tree, text: &str, line: u64, key: Option<&str>) -> Option<Vec<Step>> {
    let key = key?;
    let lines: Vec<&str> = text.lines().collect();
    let before = usize::try_from(line).ok()?.checked_sub(1)?;
    let (n, prev) = lines[..before.min(lines.len())]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let col = prev.len() - prev.trim_start_matches([' ', '-']).len();
    let at = Position {
        line: u64::try_from(n).ok()? + 1,
        column: u64::try_from(col).ok()? + 1,
    };
    let (mut path, _) = tree.root.entry_at(at)?;
    if !prev.trim_end().ends_with(':') {
        path.pop();
    }
    path.push(Step::Key(key.to_owned()));
    Some(path)
}

fn yaml_error(path: &Path, err: &serde_saphyr::Error) -> LoadError {
    let at = err
        .location()
        .map_or(Position { line: 1, column: 1 }, |l| Position {
            line: l.line(),
            column: l.column(),
        });
    let formatter = serde_saphyr::DefaultMessageFormatter;
    let plain = err.render_with_options(serde_saphyr::render_options! {
        formatter: &formatter,
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let suffix = format!(" at line {}, column {}", at.line, at.column);
    let mut message = plain.strip_suffix(&suffix).unwrap_or(&plain).to_owned();
    if message.contains("multiple YAML documents") {
        message = "the file holds more than one YAML document (`---`)".to_owned();
    } else if message.contains("DuplicateKeyPolicy") {
        message = message
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(&message)
            .to_owned();
    }
    let name = path.display().to_string();
    let rendered = err.render_with_options(serde_saphyr::render_options! {
        source_name: Some(&name),
    });
    // The first rendered line repeats the message; keep only the snippet.
    let snippet = match rendered.split_once('\n') {
        Some((_, rest)) if rendered.starts_with("error:") => {
            rest.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        }
        _ => String::new(),
    };
    LoadError::Yaml {
        path: path.to_owned(),
        at,
        message,
        snippet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-file error, or the first mistake found reading it.
    fn err(text: &str) -> String {
        match parse(Path::new("h.yaml"), text) {
            Err(e) => e.to_string(),
            Ok(p) => {
                let first = &p.source.problems[0];
                let at = first.at.unwrap();
                format!("h.yaml:{}:{}: {first}", at.line, at.column)
            }
        }
    }

    #[test]
    fn type_errors_carry_file_line_column() {
        let e = err("nodes:\n  - hostname: pi1\n    network:\n      gateway: 10.0.0.300\n");
        assert!(e.starts_with("h.yaml:4:16: "), "{e}");
    }

    #[test]
    fn unknown_and_duplicate_keys_are_refused() {
        let unknown = err("nodes: []\nnodez: []\n");
        assert!(
            unknown.starts_with("h.yaml:2:1: nodez: unknown key `nodez`; did you mean `nodes`?"),
            "{unknown}"
        );
        let dup = err("nodes: []\nnodes: []\n");
        assert!(
            dup.starts_with("h.yaml:2:1: nodes: duplicate mapping key: nodes"),
            "{dup}"
        );
        assert!(!dup.contains("DuplicateKeyPolicy"), "{dup}");
    }

    #[test]
    fn empty_text_is_explained() {
        assert!(err("  \n").starts_with("h.yaml:1:1: profile is empty"));
    }

    #[test]
    fn positions_count_lines_and_columns() {
        assert_eq!(position_of(b"ab\ncd"), Position { line: 2, column: 3 });
        assert_eq!(position_of(b""), Position { line: 1, column: 1 });
    }
}
