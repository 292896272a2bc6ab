//! The nodes' status tokens: the secret each node's first-boot script
//! presents (`Authorization: Bearer TOKEN`) when it reports a state. They
//! are made once per node by `build` in the state directory
//! (`nodes/<host>/status-token`, see `profile::state`); `serve` only reads
//! them. Compared in constant time; never printed (`Debug` lists names).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::profile::state::{StateError, read_status_token};

/// Each node's token, by node name.
#[derive(Clone, Default)]
pub struct Tokens {
    by_node: BTreeMap<String, String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("nodes", &self.by_node.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tokens {
    /// Reads the tokens of `nodes` from `state_dir`. A node without one
    /// (never built with `status_url`) is left out: its reports are refused,
    /// and `missing` names it so `serve` can say why.
    pub fn load<'a>(
        state_dir: &Path,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, StateError> {
        let mut by_node = BTreeMap::new();
        for node in nodes {
            if let Some(token) = read_status_token(state_dir, node)? {
                by_node.insert(node.to_owned(), token);
            }
        }
        Ok(Self { by_node })
    }

    /// Tokens given directly (tests, or a caller that holds them already).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            by_node: pairs.into_iter().collect(),
        }
    }

    /// Those of `nodes` that have no token.
    pub fn missing<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        nodes
            .into_iter()
            .filter(|n| !self.by_node.contains_key(*n))
            .collect()
    }

    pub fn has(&self, node: &str) -> bool {
        self.by_node.contains_key(node)
    }

    /// Whether `presented` is `node`'s token. The comparison takes the same
    /// time wherever the first difference is, so a client cannot find the
    /// token byte by byte from response times.
    pub fn accepts(&self, node: &str, presented: &str) -> bool {
        let Some(token) = self.by_node.get(node) else {
            return false;
        };
        constant_time_eq(token.as_bytes(), presented.as_bytes())
    }
}

/// Equal bytes, in time that depends only on the lengths (a token's length
/// is public: 64 hex digits).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_accept_only_the_nodes_own_and_never_print() {
        let t = Tokens::from_pairs([("pi1".to_owned(), "ab".repeat(32))]);
        assert!(t.accepts("pi1", &"ab".repeat(32)));
        assert!(!t.accepts("pi1", &"ab".repeat(31)));
        assert!(!t.accepts("pi1", &format!("{}ac", "ab".repeat(31))));
        assert!(!t.accepts("pi2", &"ab".repeat(32)));
        assert!(!t.accepts("pi1", ""));
        assert_eq!(t.missing(["pi1", "pi2"]), vec!["pi2"]);
        let shown = format!("{t:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("pi1"), "{shown}");
    }
}
