//! `build`: resolve the profile, get each node's base image (a dry run
//! only looks at what is at hand) and check it against the profile, make
//! the plan, print it (`--dry-run`) or carry it out, then write
//! `known_hosts` and report.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};

use super::profile_cmds::{load_and_resolve, state_for};
use crate::build::{self, base_check, plan};
use crate::cli::{BuildArgs, GlobalArgs};
use crate::profile::resolved::ImageSource;
use crate::profile::tracked::refuse_tracked;

pub fn build(global: &GlobalArgs, args: &BuildArgs) -> Result<()> {
    let resolved = load_and_resolve(&global.profile)?;
    let cluster = resolved.cluster;
    let names: Vec<String> = if args.all {
        cluster
            .nodes
            .iter()
            .map(|n| n.hostname.as_str().to_string())
            .collect()
    } else {
        args.nodes.clone()
    };
    let mut selected_nodes = Vec::new();
    for name in &names {
        let Some(node) = cluster.node(name) else {
            let all: Vec<&str> = cluster.nodes.iter().map(|n| n.hostname.as_str()).collect();
            bail!(
                "node {name} is not in {} (nodes: {})",
                global.profile.display(),
                all.join(", ")
            );
        };
        selected_nodes.push(node);
    }
    refuse_tracked(&cluster.state_dir)?;
    // A dry run writes nothing: not even the state directory.
    let state = state_for(&cluster, !args.dry_run)?;
    let progress = crate::source::progress::Progress::for_stderr(global.quiet);
    // The profile meets each base image before anything is written: a
    // build fetches what it needs; a dry run checks what is at hand.
    let opts = (!args.dry_run)
        .then(|| super::source_cmds::source_options(global, &args.fetch))
        .transpose()?;
    let cache_dir = super::source_cmds::cache_root(global).ok();
    let mut nodes = Vec::new();
    let mut bases = Vec::new();
    let mut refused = Vec::new();
    for node in &selected_nodes {
        let base = match &opts {
            Some(opts) => Ok(base_image(node, opts, &progress)?),
            None => match &cache_dir {
                Some(dir) => base_check::available(node, dir),
                None => Err("there is no cache directory ($HOME is not set)".to_owned()),
            },
        };
        let (checked, notes) = match &base {
            Ok(path) => match base_check::examine_at(node, path) {
                Ok(c) => {
                    let mut notes = vec![format!("image {}", c.image)];
                    notes.extend(c.uids.iter().map(base_check::describe_uid));
                    for w in &c.warnings {
                        eprintln!("warning: {w}");
                    }
                    if !args.dry_run {
                        for n in c.uid_notes() {
                            eprintln!("note: node {}: {n}", node.hostname);
                        }
                    }
                    (c, notes)
                }
                Err(e) => {
                    refused.push(format!("{e:#}"));
                    continue;
                }
            },
            Err(why) => (
                base_check::Checked::unexamined(node),
                vec![format!("image not checked against the profile: {why}")],
            ),
        };
        let files = crate::render::node_on(&checked.node, &cluster, &state, &checked.base)
            .with_context(|| format!("rendering node {}", node.hostname))?;
        let mut p = plan::node_plan(&checked.node, files, &args.out);
        p.notes = notes;
        nodes.push(p);
        bases.extend(base.ok());
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("\n"));
    }
    let the_plan = plan::BuildPlan {
        out_dir: args.out.clone(),
        nodes,
        epoch: build::epoch(),
    };
    let mut stdout = std::io::stdout().lock();
    if args.dry_run {
        let text = if args.json {
            plan::to_json(&the_plan)
        } else {
            plan::to_text(&the_plan, &cluster)
        };
        stdout
            .write_all(text.as_bytes())
            .context("writing to stdout")?;
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Every signal that ends a terminal session or asks the process to
    // quit: the build stops at its next check and removes its partial
    // files, rather than dying with them in place.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the interrupt handler")?;
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let xz_threads = args.compress.map(|_| crate::source::default_threads());
    // One build per output directory at a time: held until known_hosts
    // is written.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output directory {}", args.out.display()))?;
    let _out_lock = crate::io::lock::lock_dir(&args.out)?;
    let results = build::run(
        &the_plan,
        &bases,
        jobs,
        xz_threads,
        args.sha256,
        &progress,
        &stop,
    )?;
    let hosts = crate::render::known_hosts(&cluster, &state).context("rendering known_hosts")?;
    let kh = args.out.join("known_hosts");
    let mut partial = build::output::Partial::new();
    partial.write(&kh, hosts.as_bytes())?;
    partial.commit()?;
    if args.json {
        let mut s = serde_json::to_string_pretty(&results).context("encoding the results")?;
        s.push('\n');
        stdout
            .write_all(s.as_bytes())
            .context("writing to stdout")?;
    } else {
        for r in &results {
            let sum = r
                .sha256
                .as_ref()
                .map(|s| format!("  sha256 {}", &s[..16.min(s.len())]))
                .unwrap_or_default();
            writeln!(
                stdout,
                "{}  {}{sum}  ({}, {:.1} s)",
                r.node, r.image, r.copy, r.seconds
            )
            .context("writing to stdout")?;
        }
        writeln!(stdout, "known_hosts  {}", kh.display()).context("writing to stdout")?;
    }
    Ok(())
}

/// The raw base image for a node: a local raw image is used where it is;
/// anything else (compressed files, catalog entries, URLs) goes through the
/// verified, cached sources of `pull`.
fn base_image(
    node: &crate::profile::ResolvedNode,
    opts: &crate::source::SourceOptions,
    progress: &crate::source::progress::Progress,
) -> Result<PathBuf> {
    if let ImageSource::Path(p) = &node.image.source
        && !base_check::is_compressed(p)
            .with_context(|| format!("node {}: reading {}", node.hostname, p.display()))?
    {
        return Ok(p.clone());
    }
    let spec = crate::source::SourceSpec::for_node(&node.image, &node.board)
        .map_err(|why| anyhow::anyhow!("node {}: image: {why}", node.hostname))?;
    let img = crate::source::ensure_base(&spec, opts, progress).with_context(|| {
        format!(
            "node {}: getting its base image {}",
            node.hostname,
            spec.describe()
        )
    })?;
    Ok(img.raw_path)
}
