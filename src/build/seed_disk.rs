//! `NODE-cidata.img` (`build --seed-only`): a small FAT disk image labelled
//! `CIDATA` holding a node's `user-data`, `meta-data` and `network-config`
//! at its top — what cloud-init's NoCloud datasource looks for on any
//! attached disk. Made in memory by `fatfs` (FAT12, fixed dates and volume
//! id, so the same seed gives the same bytes), then written whole or not
//! at all by the caller.

use std::io::{Cursor, Write};

use anyhow::{Context, Result};

use crate::render::seed::Seed;

/// NoCloud's label (cloud-init matches `cidata` in either case).
pub const LABEL: &[u8; 11] = b"CIDATA     ";

/// The disk image for `seed`: at least 1 MiB, with room for the files
/// twice over, in whole MiB.
pub fn image(seed: &Seed, volume_id: u32) -> Result<Vec<u8>> {
    let files = [
        ("user-data", seed.user_data.as_bytes()),
        ("meta-data", seed.meta_data.as_bytes()),
        ("network-config", seed.network_config.as_bytes()),
    ];
    let content: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mib = 1usize << 20;
    let len = (2 * content + mib).div_ceil(mib) * mib;
    let mut disk = Cursor::new(vec![0u8; len]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat12)
            .volume_label(*LABEL)
            .volume_id(volume_id),
    )
    .context("formatting the seed's FAT")?;
    {
        let fs = fatfs::FileSystem::new(
            &mut disk,
            fatfs::FsOptions::new().time_provider(&crate::fs::fat::FIXED_TIME),
        )
        .context("opening the seed's FAT")?;
        for (name, bytes) in files {
            let root = fs.root_dir();
            let mut f = root
                .create_file(name)
                .with_context(|| format!("creating {name} on the seed's FAT"))?;
            f.truncate().with_context(|| format!("writing {name}"))?;
            f.write_all(bytes)
                .with_context(|| format!("writing {name} on the seed's FAT"))?;
            f.flush().with_context(|| format!("writing {name}"))?;
        }
        fs.unmount().context("closing the seed's FAT")?;
    }
    Ok(disk.into_inner())
}

/// A volume id derived from the node's name: stable across runs.
pub fn volume_id(node: &str) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("homelab-image cidata\0{node}").as_bytes());
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

/// What `build --seed-only` wrote for one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedResult {
    pub node: String,
    pub seed: String,
    pub size: u64,
}

/// `build --seed-only`: renders every named node's seed (all of them
/// before anything is written: a node that cannot have one stops the run
/// with nothing written), then writes `OUT/NODE-cidata.img` for each and
/// `OUT/known_hosts`, whole or not at all, under the output directory's
/// lock. No base image is read or fetched.
pub fn write_seeds(
    cluster: &crate::profile::resolved::Cluster,
    names: &[String],
    out: &std::path::Path,
) -> Result<(Vec<SeedResult>, std::path::PathBuf)> {
    let nodes = super::pipeline::select(cluster, names)?;
    crate::profile::tracked::refuse_tracked(&cluster.state_dir)?;
    let state = super::pipeline::prepare_state(cluster, true)?;
    for note in &state.notes {
        tracing::warn!("{note}");
    }
    let mut disks = Vec::new();
    for node in nodes {
        let seed = crate::render::seed::seed_only(node, cluster, &state)?;
        let name = node.hostname.to_string();
        let bytes = image(&seed, volume_id(&name))
            .with_context(|| format!("node {name}: making its seed disk"))?;
        disks.push((name, bytes));
    }
    let hosts = crate::render::known_hosts(cluster, &state).context("rendering known_hosts")?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating the output directory {}", out.display()))?;
    let _lock = crate::io::lock::lock_dir(out)?;
    let mut partial = super::output::Partial::new();
    let mut results = Vec::new();
    for (name, bytes) in &disks {
        let path = out.join(format!("{name}-cidata.img"));
        partial.write(&path, bytes)?;
        results.push(SeedResult {
            node: name.clone(),
            seed: path.display().to_string(),
            size: bytes.len() as u64, // as: usize fits u64
        });
    }
    let known_hosts = out.join("known_hosts");
    partial.write(&known_hosts, hosts.as_bytes())?;
    partial.commit()?;
    Ok((results, known_hosts))
}
