//! The file tree an initramfs unpacks to, as the kernel builds it: entries
//! in archive order, a later entry replacing an earlier one of the same
//! path, paths resolved through the symlinks already made (so `sbin/x`
//! lands in `usr/sbin/x` once `sbin -> usr/sbin` exists), and an entry
//! whose parent directory does not exist dropped (the kernel's create
//! fails and it carries on). Only what the NBD checks need is kept: kinds,
//! execute bits, symlink targets and the contents of `modules.builtin`.

use std::collections::{HashMap, VecDeque};

/// Symlinks followed in one lookup before giving up (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: u32 = 40;

#[derive(Debug)]
pub(super) enum Node {
    Dir,
    File {
        executable: bool,
        /// Kept only for files `Tree::keeps_data` names.
        data: Option<Vec<u8>>,
    },
    Symlink(String),
    /// Devices, fifos, sockets.
    Other,
}

/// Paths are keys without a leading `/`; the root is "".
#[derive(Debug, Default)]
pub(super) struct Tree {
    nodes: HashMap<String, Node>,
}

impl Tree {
    /// Whether the checks read this file's contents.
    pub(super) fn keeps_data(name: &str) -> bool {
        name.rsplit('/').next() == Some("modules.builtin")
    }

    /// Adds an archive entry where the kernel would create it.
    pub(super) fn insert(&mut self, name: &str, node: Node) {
        let name = name.trim_start_matches('/');
        let (parent, base) = match name.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", name),
        };
        if matches!(base, "" | "." | "..") {
            // The root itself ("." in `find . | cpio -o`), or a name the
            // kernel cannot create.
            return;
        }
        let Some(dir) = self.walk(parent, true) else {
            return;
        };
        if !dir.is_empty() && !matches!(self.nodes.get(&dir), Some(Node::Dir)) {
            return;
        }
        self.nodes.insert(join(&dir, base), node);
    }

    /// The node at `path`, following symlinks (also in its last component).
    pub(super) fn get(&self, path: &str) -> Option<&Node> {
        let key = self.walk(path, true)?;
        self.nodes.get(&key)
    }

    /// Every regular file with its path.
    pub(super) fn files(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.nodes.iter().filter_map(|(k, n)| match n {
            Node::File { data, .. } => Some((k.as_str(), data.as_deref())),
            _ => None,
        })
    }

    /// Resolves `path` to the key it names: every component but the last
    /// must be a directory (through symlinks); the last may be anything,
    /// followed when it is a symlink and `follow_last`. None when a
    /// component is missing or the symlinks loop.
    fn walk(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut pending: VecDeque<String> = components(path);
        let mut cur = String::new();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                cur = cur
                    .rsplit_once('/')
                    .map_or(String::new(), |(p, _)| p.to_owned());
                continue;
            }
            let key = join(&cur, &c);
            let last = pending.is_empty();
            match self.nodes.get(&key) {
                Some(Node::Symlink(target)) if !last || follow_last => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return None;
                    }
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    let mut next = components(target);
                    next.append(&mut pending);
                    pending = next;
                }
                Some(Node::Dir) => cur = key,
                Some(_) if last => cur = key,
                _ => return None,
            }
        }
        Some(cur)
    }
}

fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Node {
        Node::File {
            executable: true,
            data: None,
        }
    }

    #[test]
    fn entries_land_through_directory_symlinks_made_before_them() {
        let mut t = Tree::default();
        t.insert("usr", Node::Dir);
        t.insert("usr/sbin", Node::Dir);
        t.insert("sbin", Node::Symlink("usr/sbin".to_owned()));
        t.insert("./sbin/nbd-client", file());
        assert!(matches!(
            t.get("usr/sbin/nbd-client"),
            Some(Node::File { .. })
        ));
        assert!(matches!(t.get("/sbin/nbd-client"), Some(Node::File { .. })));
    }

    #[test]
    fn entry_without_its_parent_directory_is_dropped_as_the_kernel_does() {
        let mut t = Tree::default();
        t.insert("sbin/nbd-client", file());
        assert!(t.get("sbin/nbd-client").is_none());
    }

    #[test]
    fn symlink_loops_resolve_to_nothing() {
        let mut t = Tree::default();
        t.insert("a", Node::Symlink("b".to_owned()));
        t.insert("b", Node::Symlink("/a".to_owned()));
        assert!(t.get("a/x").is_none());
        assert!(t.get("a").is_none());
    }

    #[test]
    fn relative_and_dotdot_symlink_targets_resolve() {
        let mut t = Tree::default();
        t.insert("usr", Node::Dir);
        t.insert("usr/bin", Node::Dir);
        t.insert("usr/bin/real", file());
        t.insert("usr/sbin", Node::Dir);
        t.insert("usr/sbin/tool", Node::Symlink("../bin/real".to_owned()));
        assert!(matches!(t.get("usr/sbin/tool"), Some(Node::File { .. })));
    }
}
