//! The build pipeline as one library call, shared by `build` and (later)
//! `flash --node` and `serve`: select the nodes, get and check each base
//! image against the profile, prepare the state, render, plan
//! ([`prepare`]); then write the images and `known_hosts` ([`execute`]).
//! The command line only parses arguments, installs signal handlers and
//! prints.
//!
//! Every base is checked before anything is written: a refused node leaves
//! no state directory behind and no output.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};

use super::base_check::{self, Checked};
use super::plan::{self, BuildPlan};
use super::{NodeResult, output};
use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::profile::state::State;
use crate::progress::Progress;
use crate::source::SourceOptions;

/// How the base images are found.
pub enum Bases<'a> {
    /// Fetch, verify and decode what is missing (a real build).
    Fetch(&'a SourceOptions),
    /// Look only at what is at hand: local raw images and the cache under
    /// this directory (`None`: there is none). Used by dry runs.
    AtHand(Option<&'a Path>),
}

/// What [`prepare`] needs.
pub struct Request<'a> {
    pub cluster: &'a Cluster,
    /// Node names to build (each must be in the cluster).
    pub nodes: &'a [String],
    pub out_dir: &'a Path,
    pub bases: Bases<'a>,
    /// Save the state (host keys, passphrase, salts) to the state
    /// directory; otherwise missing secrets are made for this run only.
    pub save_state: bool,
}

/// A plan ready to carry out, and the state it was rendered with.
pub struct Prepared {
    pub plan: BuildPlan,
    pub state: State,
}

/// What a build of the whole plan produced.
pub struct Built {
    pub nodes: Vec<NodeResult>,
    pub known_hosts: PathBuf,
    /// `OUT/kubeconfig`, for a k3s cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `OUT/proxmox.sh`, for a cluster with vm nodes.
    pub proxmox: Option<PathBuf>,
}

/// Notices for the user, one line each, no prefix.
pub enum Notice {
    Warning(String),
    Note(String),
}

/// Selects the nodes, gets and checks their bases, then prepares the
/// state and renders every node into the plan. `notify` receives warnings
/// and notes as they arise.
pub fn prepare(
    req: &Request<'_>,
    progress: &Progress,
    notify: &mut dyn FnMut(Notice),
) -> Result<Prepared> {
    let cluster = req.cluster;
    let selected = select(cluster, req.nodes)?;
    crate::profile::tracked::refuse_tracked(&cluster.state_dir)?;
    let mut checked_nodes = Vec::new();
    let mut refused = Vec::new();
    for node in selected {
        let base = match &req.bases {
            Bases::Fetch(opts) => Ok(fetch_base(node, opts, progress)?),
            Bases::AtHand(Some(dir)) => base_check::available(node, dir),
            Bases::AtHand(None) => Err("there is no cache directory ($HOME is not set)".to_owned()),
        };
        match base {
            Ok(path) => match base_check::examine_at(node, &path) {
                Ok(mut c) => {
                    c.base.k3s = k3s_files(req, node, progress)?;
                    for w in &c.warnings {
                        notify(Notice::Warning(w.clone()));
                    }
                    if req.save_state {
                        for n in c.uid_notes() {
                            notify(Notice::Note(format!("node {}: {n}", node.hostname)));
                        }
                    }
                    let mut notes = vec![format!("image {}", c.image)];
                    notes.extend(c.uids.iter().map(base_check::describe_uid));
                    checked_nodes.push((c, Some(path), notes));
                }
                Err(e) => refused.push(format!("{e:#}")),
            },
            Err(why) => {
                let mut c = Checked::unexamined(node);
                c.base.k3s = k3s_files(req, node, progress)?;
                checked_nodes.push((
                    c,
                    None,
                    vec![format!("image not checked against the profile: {why}")],
                ))
            }
        }
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("\n"));
    }
    let state = prepare_state(cluster, req.save_state)?;
    for note in &state.notes {
        notify(Notice::Warning(note.clone()));
    }
    let mut nodes = Vec::new();
    for (checked, base_path, notes) in checked_nodes {
        let files = crate::render::node_on(&checked.node, cluster, &state, &checked.base)
            .with_context(|| format!("rendering node {}", checked.node.hostname))?;
        let mut p = plan::node_plan(&checked.node, files, req.out_dir);
        p.notes = notes;
        p.base_path = base_path;
        nodes.push(p);
    }
    Ok(Prepared {
        plan: BuildPlan {
            out_dir: req.out_dir.to_owned(),
            nodes,
            epoch: crate::time::epoch(),
        },
        state,
    })
}

/// Writes every node's image (at most `jobs` at a time; each image's
/// `.sha256` too with `image_sha256`) and `known_hosts`, holding the output
/// directory's lock throughout. `stop` is the flag the caller's signal
/// handlers set.
pub fn execute(
    prepared: &Prepared,
    cluster: &Cluster,
    jobs: usize,
    extras: super::Extras,
    progress: &Progress,
    stop: &Arc<AtomicBool>,
) -> Result<Built> {
    let out = &prepared.plan.out_dir;
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating the output directory {}", out.display()))?;
    // One build per output directory at a time: held until known_hosts is
    // written.
    let _out_lock = crate::io::lock::lock_dir(out)?;
    let nodes = super::run(&prepared.plan, jobs, extras, progress, stop)?;
    let known_hosts = write_known_hosts(prepared, cluster)?;
    let kubeconfig = write_kubeconfig(prepared)?;
    let proxmox = write_proxmox_script(prepared, cluster)?;
    Ok(Built {
        nodes,
        known_hosts,
        kubeconfig,
        proxmox,
    })
}

/// Writes `OUT/known_hosts` for every node of the cluster, whole or not
/// at all; the caller holds the output directory's lock.
pub fn write_known_hosts(prepared: &Prepared, cluster: &Cluster) -> Result<PathBuf> {
    let hosts =
        crate::render::known_hosts(cluster, &prepared.state).context("rendering known_hosts")?;
    let known_hosts = prepared.plan.out_dir.join("known_hosts");
    let mut partial = output::Partial::new();
    partial.write(&known_hosts, hosts.as_bytes())?;
    partial.commit()?;
    Ok(known_hosts)
}

/// Writes `OUT/kubeconfig` (0600: it holds the admin key) for a k3s
/// cluster, whole or not at all; the caller holds the output directory's
/// lock. `None` without `k3s:`.
pub fn write_kubeconfig(prepared: &Prepared) -> Result<Option<PathBuf>> {
    let Some(k3s) = &prepared.state.k3s else {
        return Ok(None);
    };
    let path = prepared.plan.out_dir.join("kubeconfig");
    let mut partial = output::Partial::new();
    partial.write(&path, k3s.kubeconfig.as_bytes())?;
    partial.commit()?;
    Ok(Some(path))
}

/// Writes `OUT/proxmox.sh` (every vm node of the cluster, like
/// known_hosts) whole or not at all, or removes an older one when the
/// cluster has no vm node; the caller holds the output directory's lock.
/// It holds no secret; 0600 like every output.
pub fn write_proxmox_script(prepared: &Prepared, cluster: &Cluster) -> Result<Option<PathBuf>> {
    let path = prepared
        .plan
        .out_dir
        .join(crate::render::proxmox::FILE_NAME);
    let mut partial = output::Partial::new();
    let written = match crate::render::proxmox::script(cluster) {
        Some(text) => {
            partial.write(&path, text.as_bytes())?;
            Some(path)
        }
        None => {
            partial.remove_on_commit(&path);
            None
        }
    };
    partial.commit()?;
    Ok(written)
}

/// The k3s files of `node`: fetched for a real build, looked up otherwise.
fn k3s_files(
    req: &Request<'_>,
    node: &ResolvedNode,
    progress: &Progress,
) -> Result<crate::render::k3s::K3sFiles> {
    use super::k3s_files::{at_hand, fetch};
    Ok(match &req.bases {
        Bases::Fetch(opts) => fetch(req.cluster, node, opts, progress)?,
        Bases::AtHand(dir) => at_hand(req.cluster, node, *dir),
    })
}

/// The cluster's nodes named in `names`, in that order.
/// The cluster's state: made and saved in its state directory with
/// `save`, else missing secrets made for this run only.
pub(crate) fn prepare_state(cluster: &Cluster, save: bool) -> Result<State> {
    let entropy = &mut crate::profile::state::OsEntropy;
    if save {
        State::prepare(cluster, entropy)
    } else {
        State::peek(cluster, entropy)
    }
    .with_context(|| {
        format!(
            "preparing the state directory {}",
            cluster.state_dir.display()
        )
    })
}

pub(crate) fn select<'a>(cluster: &'a Cluster, names: &[String]) -> Result<Vec<&'a ResolvedNode>> {
    names
        .iter()
        .map(|name| {
            cluster.node(name).ok_or_else(|| {
                let all: Vec<&str> = cluster.nodes.iter().map(|n| n.hostname.as_str()).collect();
                anyhow::anyhow!(
                    "node {name} is not in the profile (nodes: {})",
                    all.join(", ")
                )
            })
        })
        .collect()
}

/// The raw base image for a node: a local raw image is used where it is;
/// anything else (compressed files, catalog entries, URLs) goes through the
/// verified, cached sources of `pull`.
fn fetch_base(node: &ResolvedNode, opts: &SourceOptions, progress: &Progress) -> Result<PathBuf> {
    if let Some(p) = base_check::local_raw(node)
        .with_context(|| format!("node {}: reading its image.path", node.hostname))?
    {
        return Ok(p);
    }
    let spec = crate::source::SourceSpec::for_node(&node.image);
    let img = crate::source::ensure_base(&spec, opts, progress).with_context(|| {
        format!(
            "node {}: getting its base image {}",
            node.hostname,
            spec.describe()
        )
    })?;
    Ok(img.raw_path)
}
