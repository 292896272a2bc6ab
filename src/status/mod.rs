//! `status`: how far each node's first boot got. Asks each node over SSH
//! (`ssh`: strict host keys from `build`'s `known_hosts`; `remote`: the
//! one command and its answer), or a running `serve` for what the nodes
//! reported to it (`serve_api`), all nodes at once; `table` prints the
//! answers. Shapes and choices: docs/STATUS.md.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use crate::profile::status_url::StatusUrl;

pub mod remote;
pub mod serve_api;
pub mod ssh;
pub mod table;

pub use remote::Member;

/// One node to ask, from the profile.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: String,
    pub address: Ipv4Addr,
    /// Who to log in as over SSH; None when the profile gives the node no
    /// user (an error for that node, unless it is read from a server).
    pub user: Option<String>,
    /// MicroCloud's initiator: its answer includes the cluster members.
    pub initiator: bool,
    /// The status server the node reports to (`status_url`), if any.
    pub status_url: Option<StatusUrl>,
}

/// Where a node's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Ssh,
    Serve,
}

/// One node's row (and `--json` object; docs/STATUS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub address: String,
    pub via: Via,
    /// The SSH login worked; null when not asked over SSH.
    pub reachable: Option<bool>,
    /// The first-boot state: `running`, `done` or `failed`.
    pub state: Option<String>,
    pub attempt: Option<u32>,
    pub reason: Option<String>,
    pub updated: Option<String>,
    /// What `cloud-init status` says (Ubuntu; null without cloud-init).
    pub cloud_init: Option<String>,
    pub initiator: bool,
    /// The MicroCloud members as the initiator lists them.
    pub cluster: Option<Vec<Member>>,
    /// Why values are missing (unreachable, no status file yet, …).
    pub error: Option<String>,
}

impl NodeStatus {
    fn blank(t: &Target, via: Via) -> Self {
        Self {
            node: t.node.clone(),
            address: t.address.to_string(),
            via,
            reachable: None,
            state: None,
            attempt: None,
            reason: None,
            updated: None,
            cloud_init: None,
            initiator: t.initiator,
            cluster: None,
            error: None,
        }
    }

    fn add_error(&mut self, e: String) {
        self.error = Some(match self.error.take() {
            Some(prev) => format!("{prev}; {e}"),
            None => e,
        });
    }

    pub fn is_done(&self) -> bool {
        self.state.as_deref() == Some("done")
    }

    pub fn is_failed(&self) -> bool {
        self.state.as_deref() == Some("failed")
    }
}

/// How the nodes are asked.
#[derive(Debug, Clone)]
pub enum Source {
    /// Every node over SSH.
    Ssh,
    /// Every node from this status server.
    Serve(StatusUrl),
    /// A node whose `status_url` server answers and lists it, from there;
    /// the others over SSH.
    Auto,
}

/// What asking needs: SSH settings (or why there are none, for a node
/// that must be asked over SSH), and how long a status server may take.
pub struct Asker<'a> {
    pub ssh: Result<&'a ssh::SshSettings, String>,
    pub source: Source,
    pub http_timeout: Duration,
}

/// One round: every target asked, in parallel; the rows in target order,
/// and notes about the status servers (one that did not answer).
pub fn ask_all(targets: &[Target], asker: &Asker<'_>) -> (Vec<NodeStatus>, Vec<String>) {
    let mut notes = Vec::new();
    let servers: Vec<(StatusUrl, Result<Vec<serve_api::ApiNode>, String>)> = match &asker.source {
        Source::Ssh => Vec::new(),
        Source::Serve(url) => vec![(url.clone(), serve_api::fetch(url, asker.http_timeout))],
        Source::Auto => {
            let mut urls: Vec<&StatusUrl> = targets
                .iter()
                .filter_map(|t| t.status_url.as_ref())
                .collect();
            urls.sort_by_key(|u| u.to_string());
            urls.dedup();
            urls.into_iter()
                .map(|u| (u.clone(), serve_api::fetch(u, asker.http_timeout)))
                .collect()
        }
    };
    // With --serve the server's failure is every row's error; in Auto it
    // changes how the nodes are asked, which is worth a note.
    if matches!(asker.source, Source::Auto) {
        for (url, answer) in &servers {
            if let Err(e) = answer {
                notes.push(format!(
                    "status server {url} does not answer ({e}): asking over SSH"
                ));
            }
        }
    }
    let rows = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                let servers = &servers;
                scope.spawn(move || ask_one(t, asker, servers))
            })
            .collect();
        handles
            .into_iter()
            .zip(targets)
            .map(|(h, t)| {
                h.join().unwrap_or_else(|_| {
                    let mut s = NodeStatus::blank(t, Via::Ssh);
                    s.add_error("asking this node failed unexpectedly".to_owned());
                    s
                })
            })
            .collect()
    });
    (rows, notes)
}

fn ask_one(
    t: &Target,
    asker: &Asker<'_>,
    servers: &[(StatusUrl, Result<Vec<serve_api::ApiNode>, String>)],
) -> NodeStatus {
    let listed = |url: &StatusUrl| {
        servers
            .iter()
            .find(|(u, _)| u == url)
            .and_then(|(_, answer)| answer.as_ref().ok())
            .and_then(|nodes| nodes.iter().find(|n| n.name == t.node))
    };
    match &asker.source {
        Source::Serve(url) => {
            let mut s = NodeStatus::blank(t, Via::Serve);
            match servers.first().map(|(_, a)| a) {
                Some(Err(e)) => s.add_error(format!("status server {url}: {e}")),
                _ => match listed(url) {
                    Some(n) => fill_from_serve(&mut s, n),
                    None => s.add_error(format!("status server {url} does not list this node")),
                },
            }
            s
        }
        Source::Auto => match t.status_url.as_ref().and_then(listed) {
            Some(n) => {
                let mut s = NodeStatus::blank(t, Via::Serve);
                fill_from_serve(&mut s, n);
                s
            }
            None => over_ssh(t, &asker.ssh),
        },
        Source::Ssh => over_ssh(t, &asker.ssh),
    }
}

fn fill_from_serve(s: &mut NodeStatus, n: &serve_api::ApiNode) {
    let r = serve_api::reported(n);
    s.state = r.state;
    s.attempt = r.attempt;
    s.reason = r.reason;
    s.updated = r.updated;
    if n.reports.is_empty() {
        s.add_error("no first-boot report yet".to_owned());
    }
}

/// Asks one node over SSH.
pub fn over_ssh(t: &Target, settings: &Result<&ssh::SshSettings, String>) -> NodeStatus {
    let mut s = NodeStatus::blank(t, Via::Ssh);
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            s.add_error(e.clone());
            return s;
        }
    };
    let Some(user) = &t.user else {
        s.add_error("the profile gives this node no user to log in as: give --user".to_owned());
        return s;
    };
    let out = match settings.run(user, t.address, &remote::command(t.initiator)) {
        Ok(out) => out,
        Err(ssh::SshFailure::Spawn(e)) => {
            s.add_error(e);
            return s;
        }
        Err(ssh::SshFailure::Timeout(d)) => {
            s.reachable = Some(false);
            s.add_error(format!("no answer within {} s", d.as_secs()));
            return s;
        }
        Err(ssh::SshFailure::Ssh(e)) => {
            s.reachable = Some(false);
            s.add_error(e);
            return s;
        }
    };
    s.reachable = Some(true);
    let answer = remote::parse(&out.stdout);
    if !answer.complete {
        let why = out
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(remote::clean)
            .unwrap_or_default();
        s.add_error(format!(
            "the node's answer is incomplete (exit {}){}",
            out.exit
                .map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    read_firstboot(&mut s, answer.firstboot.as_ref());
    read_cloud_init(&mut s, answer.cloud_init.as_ref());
    if t.initiator {
        read_members(&mut s, answer.microcloud.as_ref());
    }
    s
}

fn read_firstboot(s: &mut NodeStatus, block: Option<&remote::Block>) {
    let Some(block) = block else { return };
    if block.exit != 0 {
        let text = block.one_line();
        s.add_error(if text.contains("No such file") {
            format!(
                "no {} yet: the first boot has not started",
                crate::render::firstboot::STATUS_PATH
            )
        } else {
            format!("reading the first-boot status: {text}")
        });
        return;
    }
    let f = remote::parse_firstboot(&block.lines);
    if let Some(other) = f.node.as_deref().filter(|n| *n != s.node) {
        s.add_error(format!("the status file is {other}'s, not {}'s", s.node));
    }
    s.state = f.state;
    s.attempt = f.attempt;
    s.reason = f.reason;
    s.updated = f.updated;
}

fn read_cloud_init(s: &mut NodeStatus, block: Option<&remote::Block>) {
    let Some(block) = block else { return };
    // 127: no cloud-init on this image (Armbian), not a problem.
    if block.exit == 127 {
        return;
    }
    match remote::parse_cloud_init(&block.lines) {
        Some(state) => s.cloud_init = Some(state),
        None => s.add_error(format!("cloud-init status: {}", block.one_line())),
    }
}

fn read_members(s: &mut NodeStatus, block: Option<&remote::Block>) {
    let Some(block) = block else { return };
    if block.exit != 0 {
        s.add_error(format!("microcloud cluster list: {}", block.one_line()));
        return;
    }
    match remote::parse_members(&block.lines) {
        Some(m) => s.cluster = Some(m),
        None => s.add_error(format!(
            "microcloud cluster list: not a list of members: {}",
            block.one_line()
        )),
    }
}
