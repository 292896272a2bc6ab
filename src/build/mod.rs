//! `build`: from the resolved profile and the base image to one finished
//! image per node. Numbered steps per node: patch the boot FAT and the root
//! ext4 into an in-memory overlay of the base; write the image in one pass
//! (reflink or sparse copy with the patched pages laid on, hashed for the
//! bmap, and for `.sha256` when asked, as it goes); re-read what was
//! written; write the bmap (and `.sha256`); rename into place. Partial
//! outputs are removed on any failure or interrupt.

pub mod base_check;
pub mod base_guard;
pub mod bmap;
pub mod compress;
pub mod emit;
pub mod k3s_files;
pub mod manifest;
pub mod mapped;
pub mod output;
pub mod patch;
mod pieces;
pub mod pipeline;
pub mod plan;
pub mod qcow2_out;
pub mod range_sums;
pub mod seed_disk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::image::Image;
use crate::progress::Progress;
use emit::CopyMethod;
use output::Partial;
use plan::{BuildPlan, NodePlan};
use range_sums::{Kept, PieceHashes};

/// What one node's build produced.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub image: String,
    pub bmap: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xz: Option<String>,
    /// `NODE.qcow2` (`--format qcow2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2: Option<String>,
    /// The image's SHA-256 (`--sha256`); `null` in JSON when not taken.
    pub sha256: Option<String>,
    pub size: u64,
    pub mapped_bytes: u64,
    pub copy: String,
    pub seconds: f64,
}

/// The files a build writes besides `NODE.img` and its `.bmap`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// `NODE.img.xz` with this many encoder threads (`--compress xz`).
    pub xz_threads: Option<u32>,
    /// `NODE.img.sha256` (`--sha256`).
    pub image_sha256: bool,
    /// `NODE.qcow2` (`--format qcow2`).
    pub qcow2: bool,
}

/// Builds every node of `plan` from its raw base image (each node's
/// `base_path`), at most `jobs` at a time, with the `extras` asked for. `stop` is set by SIGINT, SIGTERM, SIGHUP or SIGQUIT;
/// work checks it between steps and chunks.
pub fn run(
    plan: &BuildPlan,
    jobs: usize,
    extras: Extras,
    progress: &Progress,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<NodeResult>> {
    let mut bases = Vec::new();
    for n in &plan.nodes {
        match &n.base_path {
            Some(b) => bases.push(b),
            None => bail!("node {}: its base image was not fetched", n.name),
        }
    }
    base_guard::refuse_base_as_output(plan)?;
    std::fs::create_dir_all(&plan.out_dir)
        .with_context(|| format!("creating the output directory {}", plan.out_dir.display()))?;
    let jobs = jobs.max(1);
    // One table of range sums per distinct base, shared by its nodes, and
    // loaded from the sums kept beside a cached base.
    let mut tables: std::collections::HashMap<&Path, (Option<Kept>, Arc<PieceHashes>)> =
        Default::default();
    let work: Vec<(&NodePlan, &PathBuf, Arc<PieceHashes>)> = plan
        .nodes
        .iter()
        .zip(bases.iter().copied())
        .map(|(n, b)| {
            let (_, table) = tables.entry(b.as_path()).or_insert_with(|| {
                let kept = Kept::for_base(b, emit::PIECE_BLOCKS, bmap::BLOCK);
                let table = kept.as_ref().map(Kept::load).unwrap_or_default();
                (kept, Arc::new(table))
            });
            (n, b, Arc::clone(table))
        })
        .collect();
    let results: Vec<Result<NodeResult>> = std::thread::scope(|scope| {
        let mut out = Vec::new();
        for chunk in work.chunks(jobs) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(n, b, k)| {
                    scope.spawn(move || {
                        let size = base_guard::size_of(b);
                        let opts = NodeOptions {
                            epoch: plan.epoch,
                            extras,
                        };
                        build_node(n, b, &opts, k, progress, stop)
                            .map_err(|e| base_guard::explain_changed_base(e, b, size))
                    })
                })
                .collect();
            for h in handles {
                out.push(
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a build thread panicked"))),
                );
            }
        }
        out
    });
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let mut failed = std::collections::HashSet::new();
    for ((n, r), b) in plan.nodes.iter().zip(results).zip(bases.iter()) {
        match r {
            Ok(r) => ok.push(r),
            Err(e) => {
                errors.push(format!("node {}: {e:#}", n.name));
                failed.insert(b.as_path());
            }
        }
    }
    // The sums of a base whose nodes all built, while the cache's check
    // still finds the image as it was (a base that changed under a node is
    // one of the failures above).
    for (base, (kept, table)) in &tables {
        if let Some(kept) = kept
            && !failed.contains(base)
            && Kept::for_base(base, emit::PIECE_BLOCKS, bmap::BLOCK).as_ref() == Some(kept)
        {
            kept.store(table);
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(ok)
}

fn check_stop(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; partial output removed");
    }
    Ok(())
}

fn step(node: &str, n: u32, what: &str) {
    tracing::info!("{node}: [{n}/5] {what}");
}

/// A node's files patched into an in-memory overlay of its base: what
/// the image will hold, before a byte of it is written.
pub struct Patched {
    /// The base under the node's patched pages.
    pub overlay: Arc<crate::io::overlay::Overlay>,
    /// What the image's structures and filesystems use (its bmap).
    pub usage: mapped::Usage,
    /// What re-reading the written files must find.
    pub expect: Vec<patch::Expectation>,
}

/// Patches `files` into an overlay of `base` (which is only read), grown
/// to `disk_size` when given, and maps the result.
pub fn patch_node(
    name: &str,
    base: &Path,
    files: &[crate::render::FileSpec],
    epoch: i64,
    disk_size: Option<u64>,
) -> Result<Patched> {
    let (image, overlay) = Image::open_overlay_grown(base, disk_size)?;
    let expect = patch::apply(&image, files, epoch)?;
    // What the bmap maps, read through the overlay: the patched image.
    let usage = mapped::used_blocks(&image);
    for (number, how) in &usage.partitions {
        match how {
            mapped::PartitionUse::Unreadable { .. } => {
                tracing::warn!("{name}: partition {number}: {how}")
            }
            _ => {
                tracing::info!("{name}: partition {number}: {how}")
            }
        }
    }
    Ok(Patched {
        overlay,
        usage,
        expect,
    })
}

/// The bmap ranges of a patched node — the mapped runs cut on the grid,
/// as `build` writes them in `NODE.img.bmap` — each with the SHA-256 the
/// cache keeps for it beside the base (`range_sums::Kept`) where no
/// patched page lies in it: what `flash` writes a node built straight to
/// its disk by, checking the base's bytes against the kept sums as it
/// reads them. Ranges the node changed, or the cache has no sum for, get
/// `None` (the writer takes their sums as it goes).
pub fn ranges_with_kept_sums(patched: &Patched, base: &Path) -> Vec<(u64, u64, Option<[u8; 32]>)> {
    let kept = Kept::for_base(base, emit::PIECE_BLOCKS, bmap::BLOCK).map(|k| k.load());
    pieces::ranges_by(&patched.usage.runs, |first, last| {
        patched.overlay.touched(first, last)
    })
    .into_iter()
    .map(|r| {
        let sum = match &kept {
            Some(table) if !r.patched => table.get((r.first, r.last)),
            _ => None,
        };
        (r.first, r.last, sum)
    })
    .collect()
}

/// What every node of a run is built with.
struct NodeOptions {
    epoch: i64,
    extras: Extras,
}

fn build_node(
    n: &NodePlan,
    base: &Path,
    opts: &NodeOptions,
    known: &PieceHashes,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<NodeResult> {
    let t0 = Instant::now();

    // The base is opened read-only under an overlay: patching changes
    // only pages in memory, and nothing is written until they are final.
    step(
        &n.name,
        1,
        "writing the node's files (in memory, over the base)",
    );
    let Patched {
        overlay,
        usage,
        expect,
    } = patch_node(&n.name, base, &n.files, opts.epoch, n.disk_size)?;
    let opened = base_guard::snapshot(overlay.base());
    let pages = overlay.take_pages();
    tracing::info!(
        "{}: {} blocks of the base changed ({})",
        n.name,
        pages.len(),
        crate::io::units::human_size(pages.len() as u64 * crate::io::overlay::PAGE)
    );
    check_stop(stop)?;

    step(&n.name, 2, "writing the image and its checksums");
    let mut partial = Partial::new();
    output::remove_stale_partials(&n.out);
    let tmp = output::partial_name(&n.out);
    let len = overlay.len();
    let dst = partial.create(&n.out)?;
    let task = progress.task(&format!("{} image", n.name), 0, None);
    let src = emit::Source {
        base: overlay.base(),
        len,
        pages: &pages,
        mapped: &usage.runs,
        image_sha256: opts.extras.image_sha256,
    };
    let fin = emit::emit(&src, &dst, known, &task, stop)
        .with_context(|| format!("writing {} from {}", tmp.display(), base.display()))?;
    task.done();
    drop(dst);
    base_guard::refuse_changed(overlay.base(), base, opened)?;
    tracing::info!(
        "{}: {} bmap ranges, {} hashed, {} sums known from the base",
        n.name,
        fin.ranges,
        fin.ranges - fin.known_ranges,
        fin.known_ranges
    );
    check_stop(stop)?;

    step(&n.name, 3, "re-reading the written files");
    patch::verify(&tmp, &expect)?;
    check_stop(stop)?;

    step(&n.name, 4, "writing the bmap (and SHA-256) files");
    let img_name = n
        .out
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let bmap_path = PathBuf::from(format!("{}.bmap", n.out.display()));
    let sha_path = PathBuf::from(format!("{}.sha256", n.out.display()));
    partial.write(&bmap_path, fin.bmap.as_bytes())?;
    match &fin.sha256 {
        Some(sum) => partial.write(&sha_path, format!("{sum}  {img_name}\n").as_bytes())?,
        // An older build's checksum would not match the new image.
        None => partial.remove_on_commit(&sha_path),
    }
    check_stop(stop)?;

    let mut xz_path = None;
    let fin_xz = PathBuf::from(format!("{}.xz", n.out.display()));
    if opts.extras.xz_threads.is_none() {
        // An older build's compressed image is not this image.
        partial.remove_on_commit(&fin_xz);
    }
    if let Some(threads) = opts.extras.xz_threads {
        tracing::info!("{}: compressing with xz", n.name);
        let p = output::partial_name(&fin_xz);
        let out = partial.create(&fin_xz)?;
        let f = std::fs::File::open(&tmp).with_context(|| format!("opening {}", tmp.display()))?;
        let task = progress.task(&format!("{} xz", n.name), 0, Some(len));
        compress::xz(&f, out, threads, &task, stop)
            .with_context(|| format!("compressing into {}", p.display()))?;
        task.done();
        xz_path = Some(fin_xz.display().to_string());
    }
    check_stop(stop)?;

    let fin_qcow2 = n.out.with_extension("qcow2");
    let mut qcow2_path = None;
    if opts.extras.qcow2 {
        tracing::info!("{}: writing qcow2", n.name);
        let p = output::partial_name(&fin_qcow2);
        let out = partial.create(&fin_qcow2)?;
        let f = std::fs::File::open(&tmp).with_context(|| format!("opening {}", tmp.display()))?;
        let task = progress.task(&format!("{} qcow2", n.name), 0, Some(len));
        qcow2_out::qcow2(&f, len, out, &task, stop)
            .with_context(|| format!("writing {}", p.display()))?;
        task.done();
        qcow2_path = Some(fin_qcow2.display().to_string());
    } else {
        // An older build's qcow2 is not this image.
        partial.remove_on_commit(&fin_qcow2);
    }
    check_stop(stop)?;

    step(&n.name, 5, "renaming into place");
    partial.commit()?;
    Ok(NodeResult {
        node: n.name.clone(),
        image: n.out.display().to_string(),
        bmap: bmap_path.display().to_string(),
        xz: xz_path,
        qcow2: qcow2_path,
        sha256: fin.sha256,
        size: len,
        mapped_bytes: fin.mapped_blocks * bmap::BLOCK,
        copy: match fin.method {
            CopyMethod::Reflink => "reflink".into(),
            CopyMethod::Sparse { data_bytes } => format!(
                "sparse ({} of data)",
                crate::io::units::human_size(data_bytes)
            ),
        },
        seconds: t0.elapsed().as_secs_f64(),
    })
}
