//! Plain words for what the YAML reader says: "did you mean `gateway`?"
//! for an unknown key or value (by edit distance), and the two layout
//! mistakes a hand-edited file makes, a tab and a misaligned key, named
//! at their own line rather than where the parser noticed them.

use crate::profile::load::Position;

/// A message and an optional hint, as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worded {
    pub message: String,
    pub hint: Option<String>,
}

/// The closest of `candidates` to `word`, if it is close enough to be
/// a typo (at most a third of its letters wrong, at least one).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let allowed = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| {
            (
                strsim::levenshtein(&word.to_lowercase(), &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The names after "expected one of" / "expected `a` or `b`" in a serde
/// message.
fn expected_names(rest: &str) -> Vec<&str> {
    let list = rest
        .strip_prefix("expected one of ")
        .or_else(|| rest.strip_prefix("expected "))
        .unwrap_or("");
    list.split([',', ' '])
        .map(|s| s.trim().trim_matches('`'))
        .filter(|s| !s.is_empty() && *s != "or")
        .collect()
}

/// Rewords serde's "unknown field/variant `x`, expected one of …".
pub fn reword(message: &str) -> Worded {
    for (prefix, what, plural) in [
        ("unknown field `", "key", "keys"),
        ("unknown variant `", "value", "values"),
    ] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((word, rest)) = rest.split_once('`') else {
            continue;
        };
        let names = expected_names(rest.trim_start_matches(", "));
        let hint = match closest(word, &names) {
            Some(best) => Some(format!("did you mean `{best}`?")),
            None if names.is_empty() => None,
            None => Some(format!("known {plural}: {}", names.join(", "))),
        };
        return Worded {
            message: format!("unknown {what} `{word}`"),
            hint,
        };
    }
    Worded {
        message: message.to_owned(),
        hint: None,
    }
}

/// A layout mistake at one line: the message and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub at: Position,
    pub message: String,
    /// The key written on that line, if any.
    pub key: Option<String>,
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A tab in the indentation of a line `from..=to` (1-based).
pub fn tab(text: &str, from: u64, to: u64) -> Option<Layout> {
    text.lines().enumerate().find_map(|(i, line)| {
        let n = count(i) + 1;
        if n < from || n > to {
            return None;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let col = indent.find('\t')?;
        Some(Layout {
            at: Position {
                line: n,
                column: count(col) + 1,
            },
            message: format!("a tab at line {n}: use spaces to indent YAML"),
            key: key_of(line.trim_start().trim_start_matches(['-', ' ', '\t'])),
        })
    })
}

/// `key` of a `key: value` or `key:` line.
fn key_of(content: &str) -> Option<String> {
    let (key, rest) = content.split_once(':')?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && (rest.is_empty() || rest.starts_with([' ', '\t']))).then(|| key.to_owned())
}

/// Indentation of a content line (a `- ` item counts as part of it), or
/// `None` for blank and comment lines.
fn indent_of(line: &str) -> Option<(usize, &str)> {
    let content = line.trim_start_matches(' ');
    if content.trim().is_empty() || content.starts_with('#') {
        return None;
    }
    let mut indent = line.len() - content.len();
    let mut rest = content;
    while let Some(r) = rest.strip_prefix("- ") {
        indent += 2 + (r.len() - r.trim_start_matches(' ').len());
        rest = r.trim_start_matches(' ');
    }
    Some((indent, rest))
}

/// A `key:` line among `lines` (1-based `n`) indented unlike its
/// siblings: more than the line before it without that line opening a
/// block, or less without matching any enclosing key.
pub fn misindented(text: &str, n: u64) -> Option<Layout> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(n).ok()?.checked_sub(1)?;
    let line = lines.get(idx)?;
    if line.trim_start().starts_with('-') {
        return None;
    }
    let (x, content) = indent_of(line)?;
    let key = key_of(content)?;
    let mut before = lines[..idx].iter().rev().filter_map(|l| indent_of(l));
    let (prev, prev_content) = before.next()?;
    let opens = prev_content.trim_end().ends_with(':')
        || prev_content.trim_end().ends_with(['|', '>'])
        || key_of(prev_content).is_none();
    let wrong = if x > prev {
        !opens
    } else if x < prev {
        // A dedent back to an enclosing level is how a block ends.
        let mut levels = vec![prev];
        let mut lowest = prev;
        for (i, _) in before {
            if i < lowest {
                lowest = i;
                levels.push(i);
            }
        }
        levels.push(0);
        !levels.contains(&x)
    } else {
        false
    };
    wrong.then(|| Layout {
        at: Position {
            line: n,
            column: count(x) + 1,
        },
        message: format!(
            "indentation: `{key}` is indented {x} space{}, its siblings {prev}",
            if x == 1 { "" } else { "s" }
        ),
        key: Some(key),
    })
}

/// The layout mistake that explains an error the parser reports at
/// `at`: a tab on that line or the next, else a misaligned key there.
pub fn explain(text: &str, at: Position, until: u64) -> Option<Layout> {
    let from = at.line.saturating_sub(1).max(1);
    tab(text, from, until.max(at.line + 1))
        .or_else(|| (at.line..=until.max(at.line + 1)).find_map(|n| misindented(text, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_strangers_a_list() {
        let w = reword("unknown field `gatway`, expected one of interface, gateway, dns");
        assert_eq!(w.message, "unknown key `gatway`");
        assert_eq!(w.hint.as_deref(), Some("did you mean `gateway`?"));
        let w =
            reword("unknown variant `ubuntu-24.4`, expected one of `ubuntu-22.04`, `ubuntu-24.04`");
        assert_eq!(w.hint.as_deref(), Some("did you mean `ubuntu-24.04`?"));
        let w = reword("unknown field `zzzzzz`, expected `a` or `b`");
        assert_eq!(w.hint.as_deref(), Some("known keys: a, b"));
    }

    #[test]
    fn a_misaligned_key_is_named_with_both_indents() {
        let text = "a:\n  b: 1\n   c: 2\n";
        let l = misindented(text, 3).unwrap();
        assert_eq!(
            l.message,
            "indentation: `c` is indented 3 spaces, its siblings 2"
        );
        assert_eq!(l.at, Position { line: 3, column: 4 });
        assert_eq!(misindented("a:\n  b:\n    c: 1\nd: 2\n", 4), None);
        assert_eq!(misindented("a:\n  b:\n    c: 1\n", 3), None);
    }

    #[test]
    fn a_tab_is_found_on_its_own_line() {
        let l = tab("a:\n  b: 1\n\tc: 2\n", 1, 9).unwrap();
        assert_eq!(l.at, Position { line: 3, column: 1 });
        assert_eq!(l.message, "a tab at line 3: use spaces to indent YAML");
    }
}
