//! The k3s release files a node's image gets from the download cache
//! (`source::k3s`): fetched and verified when missing (`build`, `pull`),
//! or only looked up (`render`, `build --dry-run`, `flash`'s stale check),
//! and handed to the renderer as `render::k3s::K3sFiles`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::profile::k3s::{K3s, node_arch};
use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::progress::Progress;
use crate::render::CachedBlob;
use crate::render::k3s::K3sFiles;
use crate::source::SourceOptions;
use crate::source::cache::Cache;
use crate::source::k3s::{K3sArtifact, K3sAsset, cached_k3s, ensure_k3s};

/// The assets a node of `k3s` needs.
fn assets(k3s: &K3s) -> Vec<K3sAsset> {
    let mut v = vec![K3sAsset::Binary];
    if k3s.airgap_images {
        v.push(K3sAsset::AirgapImages);
    }
    v
}

fn blob(a: K3sArtifact) -> CachedBlob {
    CachedBlob {
        path: a.path,
        sha256: a.sha256,
        len: a.len,
    }
}

fn files(found: impl Iterator<Item = (K3sAsset, Option<K3sArtifact>)>) -> K3sFiles {
    let mut out = K3sFiles::default();
    for (asset, a) in found {
        match asset {
            K3sAsset::Binary => out.binary = a.map(blob),
            K3sAsset::AirgapImages => out.airgap = a.map(blob),
        }
    }
    out
}

/// Fetches (once, verified) what `node` needs; nothing without `k3s:`.
pub fn fetch(
    cluster: &Cluster,
    node: &ResolvedNode,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<K3sFiles> {
    let Some(k3s) = &cluster.k3s else {
        return Ok(K3sFiles::default());
    };
    let cache = Cache::open(&opts.cache_dir)
        .with_context(|| format!("opening the cache {}", opts.cache_dir.display()))?;
    let arch = node_arch(node);
    let mut found = Vec::new();
    for asset in assets(k3s) {
        let a = ensure_k3s(&cache, &opts.http, &k3s.version, arch, asset, progress)
            .with_context(|| format!("node {}: getting k3s {}", node.hostname, k3s.version))?;
        found.push((asset, Some(a)));
    }
    Ok(files(found.into_iter()))
}

/// What the cache under `cache_dir` already holds for `node`; no network.
pub fn at_hand(cluster: &Cluster, node: &ResolvedNode, cache_dir: Option<&Path>) -> K3sFiles {
    let (Some(k3s), Some(dir)) = (&cluster.k3s, cache_dir) else {
        return K3sFiles::default();
    };
    // A cache that cannot be opened holds nothing at hand.
    let Ok(cache) = Cache::open(dir) else {
        return K3sFiles::default();
    };
    let arch = node_arch(node);
    files(
        assets(k3s)
            .into_iter()
            .map(|asset| (asset, cached_k3s(&cache, &k3s.version, arch, asset))),
    )
}
