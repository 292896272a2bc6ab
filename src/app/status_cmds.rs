//! `status`: the profile's nodes turned into targets (address, login,
//! initiator, status server), asked once or round after round (`--watch`),
//! printed as a table or JSON. The asking is `crate::status`'s.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::profile_cmds::load_and_resolve;
use crate::cli::GlobalArgs;
use crate::cli::status_cmds::StatusArgs;
use crate::profile::inventory::SudoRule;
use crate::profile::resolved::{Cluster, Discovery, ResolvedNode};
use crate::status::{self, Asker, NodeStatus, Source, Target, ssh::SshSettings};

/// How long a status server may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// What the commands on a node may take on top of the connection (each
/// is bounded on the node by `remote::NODE_COMMAND_TIMEOUT`).
const COMMANDS_TIME: Duration = Duration::from_secs(60);

pub fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<()> {
    let cluster = load_and_resolve(&global.profile)?.cluster;
    let targets = targets(&cluster, args)?;
    let source = match (&args.serve, args.ssh) {
        (Some(url), _) => Source::Serve(url.clone()),
        (None, true) => Source::Ssh,
        (None, false) => Source::Auto,
    };
    let ssh = ssh_settings(args)?;
    // Without a status server to fall back on, a missing known_hosts is
    // the whole command's error, not one per node.
    let all_ssh = match source {
        Source::Ssh => true,
        Source::Serve(_) => false,
        Source::Auto => targets.iter().all(|t| t.status_url.is_none()),
    };
    if all_ssh && let Err(e) = &ssh {
        bail!("{e}");
    }
    let asker = Asker {
        ssh: ssh.as_ref().map_err(Clone::clone),
        source,
        http_timeout: HTTP_TIMEOUT,
    };
    if args.watch {
        watch(global, args, &targets, &asker)
    } else {
        let (rows, notes) = status::ask_all(&targets, &asker);
        print_notes(global, &notes, &[]);
        let text = if args.json {
            let mut s = serde_json::to_string_pretty(&rows).context("encoding the status")?;
            s.push('\n');
            s
        } else {
            let color = super::use_color(global.color, &std::io::stdout());
            status::table::render(&rows, color)
        };
        super::write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
    }
}

/// Rounds until every node is done (Ok) or one has failed (an error
/// naming it and its reason).
fn watch(global: &GlobalArgs, args: &StatusArgs, targets: &[Target], asker: &Asker) -> Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let color = super::use_color(global.color, &std::io::stdout());
    let mut prev: Option<Vec<NodeStatus>> = None;
    let mut prev_notes: Vec<String> = Vec::new();
    loop {
        let (rows, notes) = status::ask_all(targets, asker);
        print_notes(global, &notes, &prev_notes);
        let text = if args.json {
            if prev.as_ref() == Some(&rows) {
                String::new()
            } else {
                let mut s = serde_json::to_string(&rows).context("encoding the status")?;
                s.push('\n');
                s
            }
        } else if terminal {
            format!(
                "\x1b[H\x1b[2J{}\nasked at {} UTC, again every {} s until every node is done \
                 or one has failed; Ctrl-C stops\n",
                status::table::render(&rows, color),
                crate::time::format_utc(crate::time::now()),
                args.interval
            )
        } else {
            status::table::changes(prev.as_deref(), &rows)
        };
        super::write_stdout(&mut std::io::stdout().lock(), text.as_bytes())?;
        if let Some(failed) = rows.iter().find(|r| r.is_failed()) {
            bail!(
                "{}: the first boot failed{}{}",
                failed.node,
                failed
                    .attempt
                    .map(|a| format!(" (attempt {a})"))
                    .unwrap_or_default(),
                failed
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        if rows.iter().all(NodeStatus::is_done) {
            return Ok(());
        }
        prev = Some(rows);
        prev_notes = notes;
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// Notes about status servers on stderr, each once while it holds.
fn print_notes(global: &GlobalArgs, notes: &[String], already: &[String]) {
    if global.quiet {
        return;
    }
    let mut err = std::io::stderr().lock();
    for n in notes.iter().filter(|n| !already.contains(n)) {
        let _ = writeln!(err, "note: {n}");
    }
}

/// The selected nodes (all by default) in profile order.
fn targets(cluster: &Cluster, args: &StatusArgs) -> Result<Vec<Target>> {
    for name in &args.nodes {
        if cluster.node(name).is_none() {
            let names: Vec<&str> = cluster.nodes.iter().map(|n| n.hostname.as_str()).collect();
            bail!(
                "no node {name:?} in the profile (its nodes: {})",
                names.join(", ")
            );
        }
    }
    let initiator = initiator(cluster);
    Ok(cluster
        .nodes
        .iter()
        .filter(|n| args.nodes.is_empty() || args.nodes.iter().any(|a| a == n.hostname.as_str()))
        .map(|n| Target {
            node: n.hostname.to_string(),
            address: n.network.address.addr(),
            user: args.user.clone().or_else(|| admin_user(n)),
            initiator: initiator.as_deref() == Some(n.hostname.as_str()),
            status_url: n.status_url.clone(),
        })
        .collect())
}

/// MicroCloud's initiator: named, or the node at the unicast address.
fn initiator(cluster: &Cluster) -> Option<String> {
    match &cluster.microcloud.as_ref()?.discovery {
        Discovery::Multicast { initiator, .. } => Some(initiator.to_string()),
        Discovery::Unicast { initiator_address } => cluster
            .nodes
            .iter()
            .find(|n| n.network.address.addr() == *initiator_address)
            .map(|n| n.hostname.to_string()),
    }
}

/// Who can read root's status file without a password: the first user
/// with `sudo: nopasswd` and an SSH key, else the first with a key, else
/// the first user.
fn admin_user(node: &ResolvedNode) -> Option<String> {
    let with_key = |u: &&crate::profile::resolved::User| !u.ssh_keys.is_empty();
    node.users
        .iter()
        .filter(with_key)
        .find(|u| u.sudo == SudoRule::Nopasswd)
        .or_else(|| node.users.iter().find(with_key))
        .or_else(|| node.users.first())
        .map(|u| u.name.to_string())
}

/// The SSH side: known_hosts must exist (an error for the nodes asked
/// over SSH if not); an identity given must exist (the command's error).
fn ssh_settings(args: &StatusArgs) -> Result<std::result::Result<SshSettings, String>> {
    let identity = args
        .identity
        .as_deref()
        .map(|p| {
            let abs = absolute(p)?;
            if !abs.is_file() {
                bail!("--identity {}: no such file", p.display());
            }
            Ok(abs)
        })
        .transpose()?;
    let known_hosts = absolute(&args.out.join("known_hosts"))?;
    if !known_hosts.is_file() {
        return Ok(Err(format!(
            "{}: no such file: `build` writes it with the nodes' host keys (give --out DIR \
             if the build went elsewhere)",
            args.out.join("known_hosts").display()
        )));
    }
    let connect_timeout = Duration::from_secs(args.connect_timeout);
    Ok(Ok(SshSettings {
        program: PathBuf::from("ssh"),
        known_hosts,
        identity,
        connect_timeout,
        deadline: connect_timeout + COMMANDS_TIME,
    }))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p)
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("making {} absolute", p.display()))
}
