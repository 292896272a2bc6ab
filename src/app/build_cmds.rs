//! `build`: the command line of the build pipeline (`build::pipeline`):
//! select the nodes, print the plan (`--dry-run`) or carry it out under
//! signal handlers, and report.

use std::io::Write;

use anyhow::{Context, Result};

use super::profile_cmds::load_and_resolve;
use crate::build::pipeline::{self, Bases, Notice, Request};
use crate::build::plan;
use crate::cli::{BuildArgs, GlobalArgs};

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
    if args.seed_only {
        return seed_only(global, args, &cluster, &names);
    }
    let progress = crate::progress::Progress::for_stderr(global.quiet);
    // The profile meets each base image before anything is written: a
    // build fetches what it needs; a dry run checks what is at hand and
    // writes nothing at all, not even the state directory.
    let opts = (!args.dry_run)
        .then(|| super::source_cmds::source_options(global, &args.fetch))
        .transpose()?;
    let cache_dir = super::source_cmds::cache_root(global).ok();
    let bases = match &opts {
        Some(o) => Bases::Fetch(o),
        None => Bases::AtHand(cache_dir.as_deref()),
    };
    let request = Request {
        cluster: &cluster,
        nodes: &names,
        out_dir: &args.out,
        bases,
        save_state: !args.dry_run,
    };
    let prepared = pipeline::prepare(&request, &progress, &mut print_notice)?;
    let the_plan = &prepared.plan;
    let mut stdout = std::io::stdout().lock();
    if args.dry_run {
        let text = if args.json {
            plan::to_json(the_plan)
        } else {
            plan::to_text(the_plan, &cluster)
        };
        stdout
            .write_all(text.as_bytes())
            .context("writing to stdout")?;
        return Ok(());
    }
    let stop = super::interrupt_flag()?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let extras = crate::build::Extras {
        xz_threads: args.compress.map(|_| crate::source::default_threads()),
        image_sha256: args.sha256,
        qcow2: args.format == crate::cli::ImageFormat::Qcow2,
    };
    let built = pipeline::execute(&prepared, &cluster, jobs, extras, &progress, &stop)?;
    let results = &built.nodes;
    let kh = &built.known_hosts;
    if args.json {
        let mut s = serde_json::to_string_pretty(results).context("encoding the results")?;
        s.push('\n');
        stdout
            .write_all(s.as_bytes())
            .context("writing to stdout")?;
    } else {
        for r in results {
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
        if let Some(k) = &built.kubeconfig {
            writeln!(stdout, "kubeconfig   {}", k.display()).context("writing to stdout")?;
        }
    }
    if !global.quiet {
        eprint!("{}", next_hint(&cluster, &names, &args.out));
    }
    Ok(())
}

/// `build --seed-only`: the seed disks and known_hosts, and what to do
/// with them.
fn seed_only(
    global: &GlobalArgs,
    args: &BuildArgs,
    cluster: &crate::profile::resolved::Cluster,
    names: &[String],
) -> Result<()> {
    let (results, known_hosts) = crate::build::seed_disk::write_seeds(cluster, names, &args.out)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut s = serde_json::to_string_pretty(&results).context("encoding the results")?;
        s.push('\n');
        stdout
            .write_all(s.as_bytes())
            .context("writing to stdout")?;
    } else {
        for r in &results {
            writeln!(stdout, "{}  {}", r.node, r.seed).context("writing to stdout")?;
        }
        writeln!(stdout, "known_hosts  {}", known_hosts.display()).context("writing to stdout")?;
    }
    if !global.quiet {
        eprintln!(
            "next: attach NODE-cidata.img as a second disk of a VM booting a stock cloud image \
             (docs/VMS.md); cloud-init finds it by its label CIDATA"
        );
    }
    Ok(())
}

/// What to do after a build, on stderr: write the cards (or netboot the
/// `netboot:` nodes), then follow the first boots with `status`.
fn next_hint(
    cluster: &crate::profile::resolved::Cluster,
    names: &[String],
    out: &std::path::Path,
) -> String {
    let built: Vec<_> = names.iter().filter_map(|n| cluster.node(n)).collect();
    let card = built.iter().find(|n| n.netboot.is_none());
    let netboot = built.iter().any(|n| n.netboot.is_some());
    let out_arg = if out == std::path::Path::new("out") {
        String::new()
    } else {
        format!(" --out {}", out.display())
    };
    let mut steps = Vec::new();
    if let Some(n) = card {
        steps.push((
            format!("homelab-image flash --node {}{out_arg}", n.hostname),
            "each node's image to its SD card or USB disk",
        ));
    }
    if netboot {
        steps.push((
            format!("homelab-image serve{out_arg}"),
            "netboot the netboot: nodes",
        ));
    }
    steps.push((
        format!("homelab-image status --watch{out_arg}"),
        "then follow each node's first boot",
    ));
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (i, (cmd, why)) in steps.iter().enumerate() {
        let lead = if i == 0 { "next: " } else { "      " };
        text.push_str(&format!("{lead}{cmd:width$}  # {why}\n"));
    }
    text
}

/// Prints a pipeline notice on stderr, `warning:` or `note:` first.
pub(super) fn print_notice(n: Notice) {
    match n {
        Notice::Warning(w) => super::say::warning(w),
        Notice::Note(n) => super::say::note(n),
    }
}

/// The build pipeline's preparation for commands that build nodes in
/// memory (`flash --node` without an image, `serve`): the bases fetched
/// with `fetch`'s options, the state saved, every node rendered.
pub(super) fn prepare_fetched(
    global: &GlobalArgs,
    fetch: &crate::cli::source_cmds::FetchArgs,
    cluster: &crate::profile::resolved::Cluster,
    names: &[String],
    out_dir: &std::path::Path,
    progress: &crate::progress::Progress,
) -> Result<pipeline::Prepared> {
    let opts = super::source_cmds::source_options(global, fetch)?;
    let request = Request {
        cluster,
        nodes: names,
        out_dir,
        bases: Bases::Fetch(&opts),
        save_state: true,
    };
    pipeline::prepare(&request, progress, &mut print_notice)
}
