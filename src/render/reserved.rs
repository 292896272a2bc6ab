//! The paths of the root file system that homelab-image itself writes for
//! a node — or that cloud-init writes from our seed on first boot — and the
//! check that a profile's `files[]` entry stays clear of them. Without it a
//! `files: [{path: /etc/passwd}]` passes `check` and then fails the build
//! (or, through cloud-init's `write_files`, replaces the accounts at boot).
//!
//! The list lives beside the renderers it describes, and a test renders
//! nodes of every kind and asserts every path they produce is in it.

use crate::build::manifest::MANIFEST_PATH;
use crate::profile::resolved::ResolvedNode;
use crate::render::firstboot::{SCRIPT_PATH, STATE_DIR, UNIT_PATH, WANTS_LINK};
use crate::render::quirks::Quirks;
use crate::render::ssh_host::{DROP_IN_PATH, KEY_DIR};

/// How much of the tree at a reserved path is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A file or link: nothing may be at it or below it.
    File,
    /// A directory we create: other files may go inside it.
    Dir,
    /// A directory that is ours with everything in it.
    Tree,
}

/// One path homelab-image (or cloud-init, from our seed) writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub path: String,
    pub extent: Extent,
    /// What it is, for the message.
    pub what: &'static str,
}

fn push(out: &mut Vec<Reserved>, path: &str, extent: Extent, what: &'static str) {
    out.push(Reserved {
        path: path.to_owned(),
        extent,
        what,
    });
}

/// Every reserved path of `node`'s root file system.
pub fn paths(node: &ResolvedNode) -> Vec<Reserved> {
    use Extent::{Dir, File, Tree};
    let quirks = Quirks::new(node.image.os, &node.board);
    let mut out = Vec::new();
    let p = &mut out;
    push(p, KEY_DIR, Tree, "the node's SSH host key");
    push(
        p,
        DROP_IN_PATH,
        File,
        "the sshd drop-in serving the host key",
    );
    push(p, STATE_DIR, Tree, "the first-boot unit's state");
    push(p, MANIFEST_PATH, File, "the build manifest");
    push(p, SCRIPT_PATH, File, "the first-boot script");
    push(p, UNIT_PATH, File, "the first-boot unit");
    push(p, WANTS_LINK, File, "the first-boot unit's enable link");
    push(p, "/etc/hostname", File, "the host name (set `hostname`)");
    push(
        p,
        "/etc/hosts",
        File,
        "the host name (set `hostname`, `domain`)",
    );
    for db in ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"] {
        push(p, db, File, "the accounts (set `users`)");
    }
    let network = "the network configuration (set `network`, `wifi`)";
    push(p, quirks.netplan_path(), File, network);
    push(p, "/etc/netplan/50-cloud-init.yaml", File, network);
    for gone in quirks.files_to_remove() {
        push(p, gone, File, "a file the build removes");
    }
    for u in &node.users {
        let home = format!("/home/{}", u.name);
        push(p, &home, Dir, "a home directory (set `users`)");
        if !u.ssh_keys.is_empty() {
            push(p, &format!("{home}/.ssh"), Dir, "a user's SSH directory");
            push(
                p,
                &format!("{home}/.ssh/authorized_keys"),
                File,
                "a user's SSH keys (set `ssh_keys`)",
            );
        }
        if u.sudo != crate::profile::inventory::SudoRule::None {
            let rule = if quirks.uses_cloud_init() {
                "/etc/sudoers.d/90-cloud-init-users".to_owned()
            } else {
                format!("/etc/sudoers.d/90-homelab-{}", u.name)
            };
            push(p, &rule, File, "a sudo rule (set `sudo`)");
        }
    }
    if node.timezone.is_some() {
        push(p, "/etc/timezone", File, "the time zone (set `timezone`)");
        push(p, "/etc/localtime", File, "the time zone (set `timezone`)");
    }
    if node.locale.is_some() {
        push(p, "/etc/default/locale", File, "the locale (set `locale`)");
    }
    if node.keyboard.is_some() {
        push(
            p,
            "/etc/default/keyboard",
            File,
            "the keyboard (set `keyboard`)",
        );
    }
    if !node.ntp.is_empty() {
        let dir = "/etc/systemd/timesyncd.conf.d";
        push(p, dir, Dir, "the NTP servers (set `ntp`)");
        push(
            p,
            &format!("{dir}/10-homelab.conf"),
            File,
            "the NTP servers (set `ntp`)",
        );
    }
    out
}

/// Whether `inner` is strictly below `outer`.
fn below(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Why a file at `path` would collide with `reserved`, if it would.
pub fn collision(path: &str, reserved: &[Reserved]) -> Option<String> {
    reserved.iter().find_map(|r| {
        let kind = match r.extent {
            Extent::File => "a file",
            Extent::Dir | Extent::Tree => "a directory",
        };
        if path == r.path {
            Some(format!(
                "{path} is {kind} homelab-image writes itself: {}",
                r.what
            ))
        } else if below(&r.path, path) {
            Some(format!(
                "{path} would be a file, but homelab-image writes {} below it ({})",
                r.path, r.what
            ))
        } else if below(path, &r.path) && r.extent != Extent::Dir {
            Some(format!(
                "{path} is inside {}, {kind} homelab-image writes itself: {}",
                r.path, r.what
            ))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::resolve::{Context, resolve};
    use crate::profile::state::{SeededEntropy, State};
    use crate::render::file_spec::Target;

    /// Nodes with every optional piece the renderers turn into files.
    fn cluster(os: &str, board: &str) -> crate::profile::Cluster {
        let text = format!(
            "
defaults:
  image: {{os: {os}}}
  board: {board}
  timezone: Europe/Berlin
  locale: en_US.UTF-8
  keyboard: {{layout: de}}
  ntp: [pool.ntp.org]
  wifi: {{ssid: lab, password: {{value: password1}}}}
  network: {{gateway: 192.168.1.1}}
  users:
    - name: alice
      sudo: password
      ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs']
    - name: bob
      password_hash: $y$j9T$CtIvPx0NL1ALzHlGtupaN0$vuQeLm9qXKbJjm0nHMZ8N5PqgKrzFgl3/oY9LK0JEq8
  files: [{{path: /etc/motd, content: hi}}]
nodes:
  - hostname: n1
    network: {{address: 192.168.1.21/24}}
microcloud:
  initiator: n1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {{generate: true}}
"
        );
        let path = std::path::Path::new("/nonexistent/h.yaml");
        let profile = crate::profile::load::parse(path, &text).unwrap();
        let ctx = Context {
            profile_path: path.to_owned(),
            home: None,
            env: Box::new(|_| None),
        };
        resolve(&profile, &ctx)
            .unwrap_or_else(|r| panic!("{r}"))
            .cluster
    }

    #[test]
    fn every_path_the_renderers_write_is_reserved() {
        for (os, board) in [("armbian", "rock-5b"), ("ubuntu-24.04", "rpi4")] {
            let mut c = cluster(os, board);
            let dir = tempfile::tempdir().unwrap();
            c.state_dir = dir.path().to_owned();
            let state = State::peek(&c, &mut SeededEntropy::new(b"r")).unwrap();
            let node = &c.nodes[0];
            let specs = crate::render::node(node, &c, &state).unwrap();
            let reserved = paths(node);
            let mut plan = specs.clone();
            plan.push(crate::build::manifest::Manifest::of("n1", &specs).spec());
            for s in plan.iter().filter(|s| s.target == Target::Root) {
                if node.files.iter().any(|f| f.path.as_str() == s.path) {
                    continue;
                }
                assert!(
                    collision(&s.path, &reserved).is_some(),
                    "{os}: {} is written but not reserved",
                    s.path
                );
            }
            assert_eq!(collision("/etc/motd", &reserved), None);
        }
    }

    #[test]
    fn collisions_at_above_and_below() {
        let c = cluster("armbian", "rock-5b");
        let r = paths(&c.nodes[0]);
        let at = collision("/etc/hostname", &r).unwrap();
        assert!(
            at.contains("a file homelab-image writes itself: the host name"),
            "{at}"
        );
        let under_file = collision("/etc/hostname/x", &r).unwrap();
        assert!(
            under_file.contains("is inside /etc/hostname"),
            "{under_file}"
        );
        let over = collision("/home", &r).unwrap();
        assert!(
            over.contains("would be a file, but homelab-image writes /home/"),
            "{over}"
        );
        assert!(collision("/etc/ssh/homelab/other", &r).is_some(), "a tree");
        assert_eq!(collision("/home/alice/.profile", &r), None, "a plain dir");
        assert_eq!(collision("/etc/hostname2", &r), None);
    }
}
