//! `flash`: write node images (or any raw image) to disks — the safety
//! rules first (`flash::rules`, through an exclusive open that checks them
//! again), then the bmap-guided write (`flash::write`), the read-back and
//! the file check (`flash::verify`). Several disks are written in
//! parallel, one progress bar each. A node without a built image is built
//! straight onto its disk: its base under the build's overlay of patched
//! pages is the source, so no multi-GiB `.img` is written first.
//!
//! Test hook: `HOMELAB_IMAGE_TEST_PAUSE_AFTER=<bytes>` makes a write pause
//! (up to 20 s, printing "test hook: paused" on stderr) once that many
//! bytes are on the disk, so a test can send a real SIGINT mid-write. Read
//! in `pause_hook` only; not for users.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::json;

use crate::build::patch::Expectation;
use crate::cli::{FlashArgs, GlobalArgs};
use crate::flash::bmap_read::{self, Bmap, MapRange};
use crate::flash::devices::{self, Disk};
use crate::flash::rules::{self, Context, Overrides, Role, Verdict};
use crate::flash::write::{self, Source, Target};
use crate::flash::{exclusive, privileges, sysfs, verify};
use crate::io::Storage;
use crate::io::units::human_size;
use crate::profile::resolved::Cluster;
use crate::progress::Progress;

/// What one disk receives.
enum What {
    /// A raw image file (a built node's, or any), with its map.
    Image { path: PathBuf, node: Option<String> },
    /// A node with no built image: built straight onto the disk.
    Node(String),
}

struct Job {
    what: What,
    device: Option<PathBuf>,
}

impl Job {
    fn label(&self) -> String {
        match &self.what {
            What::Image { node: Some(n), .. } | What::Node(n) => n.clone(),
            What::Image { path, .. } => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
        }
    }
}

/// A job whose disk was found, judged by the rules and confirmed.
struct Chosen {
    job: Job,
    device: PathBuf,
    disk: Disk,
    /// The paths the disk must not hold (checked again at the open).
    ctx: Context,
}

/// A job whose disk was checked, confirmed and opened exclusively.
struct Ready {
    label: String,
    source: Prepared,
    target: Target,
    disk: Disk,
}

/// The bytes to write and what to check afterwards.
enum Prepared {
    File {
        path: PathBuf,
        file: std::fs::File,
        len: u64,
        map: Bmap,
        origin: String,
    },
    Built {
        node: String,
        overlay: Arc<crate::io::overlay::Overlay>,
        map: Bmap,
        expect: Vec<Expectation>,
        /// Ranges whose sums the cache kept for the base (the base's bytes
        /// are checked against them as they are read).
        known: usize,
    },
}

impl Prepared {
    fn source(&self) -> Source<'_> {
        match self {
            Prepared::File {
                path, file, len, ..
            } => verify::image_source(path, file, *len),
            Prepared::Built { node, overlay, .. } => Source {
                name: format!("node {node}"),
                bytes: &**overlay as &dyn Storage,
                len: overlay.len(),
            },
        }
    }

    fn map(&self) -> &Bmap {
        match self {
            Prepared::File { map, .. } | Prepared::Built { map, .. } => map,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Prepared::File { len, .. } => *len,
            Prepared::Built { overlay, .. } => overlay.len(),
        }
    }
}

pub fn flash(global: &GlobalArgs, args: &FlashArgs) -> Result<()> {
    // The profile, read once, when nodes are named.
    let resolved = (args.node.is_some() || args.all)
        .then(|| super::profile_cmds::load_and_resolve(&global.profile))
        .transpose()?;
    let cluster = resolved.as_ref().map(|r| &r.cluster);
    let jobs = jobs(global, args, cluster)?;
    for job in &jobs {
        if let (
            What::Image {
                path,
                node: Some(name),
            },
            Some(cluster),
        ) = (&job.what, cluster)
        {
            refuse_stale(global, args, cluster, name, path)?;
        }
    }
    let root = sysfs::system_root();
    let ov = Overrides {
        allow_internal: args.allow_internal,
        yes: args.yes,
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !interactive {
        bail!(
            "flash asks before it writes a disk, and there is no terminal to ask on: \
             name the DEVICE and pass --yes"
        );
    }
    let stop = super::interrupt_flag()?;
    let progress = if args.json {
        Progress::quiet()
    } else {
        Progress::for_stderr(global.quiet)
    };
    let events = Events::new(args.json);

    // Every disk is chosen, judged and confirmed before anything is built
    // or written; two jobs may not share a disk.
    let chosen = choose(global, args, jobs, &root, &ov, interactive)
        .map_err(|e| anyhow!("{e:#}; nothing was written"))?;

    // Sources: built images are opened (with their maps); nodes without
    // one are built into memory over their base.
    let mut ready = Vec::new();
    let built_nodes = build_in_memory(global, args, cluster, &chosen, &progress)?;
    let mut built_nodes = built_nodes.into_iter();
    for Chosen {
        job,
        device,
        disk,
        ctx,
    } in chosen
    {
        let source = match &job.what {
            What::Image { path, .. } => open_image(path, args.bmap.as_deref())?,
            What::Node(_) => built_nodes
                .next()
                .ok_or_else(|| anyhow!("{}: its build is missing", job.label()))?,
        };
        let target = if root == Path::new("/") {
            let ex = exclusive::open_exclusive(&device, &disk, &root, &ctx, &ov)?;
            Target::from_file(ex.file, &device)?
        } else {
            // A fake system tree (tests) has no device to open: the rules
            // above were the point.
            bail!(
                "{}: {} is a device of the test tree {}; nothing was written",
                job.label(),
                device.display(),
                root.display()
            );
        };
        if target.len() < source.len() {
            bail!(
                "{}: refused (rule too-small): the disk holds {}, less than the image ({}); \
                 nothing was written",
                device.display(),
                human_size(target.len()),
                human_size(source.len())
            );
        }
        ready.push(Ready {
            label: job.label(),
            source,
            target,
            disk,
        });
    }

    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = ready
            .iter_mut()
            .map(|r| {
                let (progress, stop, events) = (&progress, &stop, &events);
                scope.spawn(move || {
                    one(r, args, global.quiet, progress, stop, events)
                        .map_err(|e| format!("{}: {e:#}", r.label))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a flash thread panicked".to_owned()))
                    .err()
            })
            .collect()
    });
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// Every job's disk, found, judged by the rules and confirmed.
fn choose(
    global: &GlobalArgs,
    args: &FlashArgs,
    jobs: Vec<Job>,
    root: &Path,
    ov: &Overrides,
    interactive: bool,
) -> Result<Vec<Chosen>> {
    let disks = devices::scan(root).context("reading the devices from sysfs")?;
    let mut chosen: Vec<Chosen> = Vec::new();
    for job in jobs {
        let ctx = context_for(global, args, &job)?;
        let device = match job.device.clone() {
            Some(d) => {
                // Privileges before any question: a prompt the write then
                // fails is a wasted minute.
                if root == Path::new("/") {
                    privileges::ensure_can_write(&d)?;
                }
                d
            }
            None if args.yes => bail!(
                "{}: --yes needs the DEVICE to write: name it (`homelab-image devices` lists \
                 the candidates)",
                job.label()
            ),
            None => pick(&disks, &ctx, ov, &job.label(), root)?,
        };
        let disk = devices::find(&disks, root, &device)?.clone();
        if chosen.iter().any(|c| c.disk.dev == disk.dev) {
            bail!(
                "{} is named for two nodes; each node needs its own disk",
                disk.path.display()
            );
        }
        match rules::check(&disk, &ctx, ov)? {
            Verdict::Accepted => {}
            v @ Verdict::NeedsConfirmation { .. } => {
                eprintln!("{v}");
                if !interactive {
                    bail!("{v}");
                }
            }
        }
        if !args.yes {
            confirm(&disk, &job.label())?;
        }
        chosen.push(Chosen {
            job,
            device,
            disk,
            ctx,
        });
    }

    Ok(chosen)
}

/// A node's built image is written by `--node` only while it is what
/// `build` makes of the profile now: after the profile or the state
/// changed, the old image would put yesterday's node on the disk.
fn refuse_stale(
    global: &GlobalArgs,
    args: &FlashArgs,
    cluster: &Cluster,
    name: &str,
    path: &Path,
) -> Result<()> {
    use crate::flash::current::{self, Currency};
    let cache = super::source_cmds::cache_root(global).ok();
    match current::judge(cluster, name, path, &args.out, cache.as_deref())? {
        Currency::Current => Ok(()),
        Currency::Unknown(why) => {
            super::say::warning(format_args!(
                "{}: cannot tell whether it is what `build` makes of the profile now: \
                 {why}; writing it as built",
                path.display()
            ));
            Ok(())
        }
        Currency::Stale(files) => {
            let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
            let more = match files.len() {
                0..=3 => String::new(),
                n => format!(" and {} more", n - 3),
            };
            bail!(
                "{}: built from an older profile or state: {}{more} differ from what \
                 `build` makes now; run `homelab-image build --node {name}` first, or \
                 give the file's path (`flash {} DEVICE`) to write it as it is; \
                 nothing was written",
                path.display(),
                shown.join(", "),
                path.display()
            )
        }
    }
}

/// The jobs the command line names.
fn jobs(global: &GlobalArgs, args: &FlashArgs, cluster: Option<&Cluster>) -> Result<Vec<Job>> {
    let node_job = |name: &str, device: Option<PathBuf>| {
        let img = args.out.join(format!("{name}.img"));
        let what = if img.exists() {
            What::Image {
                path: img,
                node: Some(name.to_owned()),
            }
        } else {
            What::Node(name.to_owned())
        };
        Job { what, device }
    };
    if args.all {
        if !args.paths.is_empty() {
            bail!("--all takes its disks from --to, not from arguments");
        }
        let cluster = profile_of(cluster)?;
        let mut jobs = Vec::new();
        for pair in &args.to {
            let (node, dev) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--to {pair:?}: expected NODE=DEVICE"))?;
            if cluster.node(node).is_none() {
                bail!(
                    "--to {pair}: node {node} is not in {}",
                    global.profile.display()
                );
            }
            if jobs.iter().any(|j: &Job| j.label() == node) {
                bail!("--to names node {node} twice");
            }
            jobs.push(node_job(node, Some(PathBuf::from(dev))));
        }
        let missing: Vec<&str> = cluster
            .nodes
            .iter()
            .map(|n| n.hostname.as_str())
            .filter(|n| !jobs.iter().any(|j| j.label() == *n))
            .collect();
        if !missing.is_empty() {
            bail!(
                "--all: no disk named for {} in --to (NODE=DEVICE for every node of {})",
                missing.join(", "),
                global.profile.display()
            );
        }
        return Ok(jobs);
    }
    if let Some(node) = &args.node {
        if args.paths.len() > 1 {
            bail!("--node takes one DEVICE; to write an image file use `flash IMAGE DEVICE`");
        }
        if profile_of(cluster)?.node(node).is_none() {
            bail!("node {node} is not in {}", global.profile.display());
        }
        return Ok(vec![node_job(node, args.paths.first().cloned())]);
    }
    match args.paths.as_slice() {
        [image, rest @ ..] => Ok(vec![Job {
            what: What::Image {
                path: image.clone(),
                node: None,
            },
            device: rest.first().cloned(),
        }]),
        [] => bail!(
            "name what to write: `flash --node NAME`, `flash IMAGE DEVICE` or `flash --all --to …`"
        ),
    }
}

/// The cluster `flash` reads when nodes are named (it always is then).
fn profile_of(cluster: Option<&Cluster>) -> Result<&Cluster> {
    cluster.ok_or_else(|| anyhow!("no profile was read for the nodes named"))
}

/// The paths no target may hold: the image, the output directory, the
/// cache.
fn context_for(global: &GlobalArgs, args: &FlashArgs, job: &Job) -> Result<Context> {
    let mut ctx = Context::new();
    if let What::Image { path, .. } = &job.what {
        ctx = ctx
            .with_image(path)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    ctx = ctx.protect(Role::Output, &args.out);
    if let Ok(dir) = super::source_cmds::cache_root(global) {
        ctx = ctx.protect(Role::Cache, &dir);
    }
    Ok(ctx)
}

/// Asks which candidate disk to write.
fn pick(
    disks: &[Disk],
    ctx: &Context,
    ov: &Overrides,
    label: &str,
    root: &Path,
) -> Result<PathBuf> {
    let candidates = rules::candidates(disks, ctx, ov);
    if candidates.is_empty() {
        bail!(
            "no disk to write {label} to: no USB, SD/MMC or removable disk passes the safety \
             rules (`homelab-image devices` says why each is refused)"
        );
    }
    if root == Path::new("/")
        && !candidates
            .iter()
            .any(|(d, _)| privileges::ensure_can_write(&d.path).is_ok())
    {
        privileges::ensure_can_write(&candidates[0].0.path)?;
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "Which disk should {label} be written to?")?;
    for (i, (d, _)) in candidates.iter().enumerate() {
        writeln!(
            err,
            "  {}) {}  {}  {}  {}",
            i + 1,
            d.path.display(),
            human_size(d.size),
            d.transport,
            d.description().unwrap_or_default()
        )?;
    }
    write!(err, "number (or Enter to stop): ")?;
    err.flush()?;
    let answer = read_line()?;
    let n: usize = answer.trim().parse().map_err(|_| anyhow!("stopped"))?;
    let (d, _) = candidates
        .get(n.wrapping_sub(1))
        .ok_or_else(|| anyhow!("{n} is not on the list"))?;
    Ok(d.path.clone())
}

/// A typed confirmation: the disk's name.
fn confirm(disk: &Disk, label: &str) -> Result<()> {
    let mut err = std::io::stderr().lock();
    let name = disk.path.file_name().map_or_else(
        || disk.path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    writeln!(
        err,
        "{label} will replace everything on {} ({}, {}, {}).",
        disk.path.display(),
        human_size(disk.size),
        disk.transport,
        disk.description().unwrap_or_else(|| "unknown model".into())
    )?;
    write!(err, "Type {name} to go on: ")?;
    err.flush()?;
    if read_line()?.trim() != name {
        bail!("{} not confirmed", disk.path.display());
    }
    Ok(())
}

fn read_line() -> Result<String> {
    let mut line = String::new();
    // A terminal line is short; 4 KiB bounds a pasted novel.
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(line)
}

fn open_image(path: &Path, bmap: Option<&Path>) -> Result<Prepared> {
    let shown = path.display();
    let file = crate::profile::named_file::open_regular(path)?;
    let len = file
        .metadata()
        .with_context(|| format!("{shown}: reading its size"))?
        .len();
    let (map, origin) = bmap_read::for_image(path, len, bmap)?;
    Ok(Prepared::File {
        path: path.to_owned(),
        file,
        len,
        map,
        origin: origin.to_string(),
    })
}

/// Builds every node job without an image into memory: the build
/// pipeline (base fetched and checked, state saved, files rendered), then
/// each node's files patched into an overlay of its base.
fn build_in_memory(
    global: &GlobalArgs,
    args: &FlashArgs,
    cluster: Option<&Cluster>,
    chosen: &[Chosen],
    progress: &Progress,
) -> Result<Vec<Prepared>> {
    let names: Vec<String> = chosen
        .iter()
        .filter_map(|c| match &c.job.what {
            What::Node(n) => Some(n.clone()),
            What::Image { .. } => None,
        })
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let cluster = profile_of(cluster)?;
    let prepared = super::build_cmds::prepare_fetched(
        global,
        &args.fetch,
        cluster,
        &names,
        &args.out,
        progress,
    )?;
    let mut out = Vec::new();
    for n in &prepared.plan.nodes {
        super::say::line(format_args!(
            "{}: no {} yet: building it straight onto the disk",
            n.name,
            n.out.display()
        ));
        let base = n
            .base_path
            .as_deref()
            .ok_or_else(|| anyhow!("node {}: its base image was not fetched", n.name))?;
        let patched =
            crate::build::patch_node(&n.name, base, &n.files, prepared.plan.epoch, n.disk_size)?;
        let map = straight_map(&patched, base);
        let known = map.ranges.iter().filter(|r| r.sha256.is_some()).count();
        out.push(Prepared::Built {
            node: n.name.clone(),
            map,
            expect: patched.expect,
            overlay: patched.overlay,
            known,
        });
    }
    // known_hosts for the nodes built here, as `build` writes it (under
    // the same lock: one writer per output directory).
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let _out_lock = crate::io::lock::lock_dir(&args.out)?;
    crate::build::pipeline::write_known_hosts(&prepared, cluster)?;
    crate::build::pipeline::write_kubeconfig(&prepared)?;
    Ok(out)
}

/// The map of a node built straight to its disk: its bmap's ranges as
/// `build` would write them, with the base's kept sums where the node
/// changed nothing.
fn straight_map(patched: &crate::build::Patched, base: &Path) -> Bmap {
    let len = patched.overlay.len();
    let block_size = crate::build::bmap::BLOCK;
    let blocks = len.div_ceil(block_size);
    let ranges = crate::build::ranges_with_kept_sums(patched, base)
        .into_iter()
        .filter(|&(first, _, _)| first < blocks)
        .map(|(first, last, sha256)| MapRange {
            first,
            // A range cut short by the image's end has no kept sum of its
            // own: none is kept for a range past the end.
            last: last.min(blocks - 1),
            sha256: if last < blocks { sha256 } else { None },
        })
        .collect();
    Bmap {
        image_size: len,
        block_size,
        ranges,
    }
}

/// Writes, verifies and ejects one disk.
fn one(
    r: &mut Ready,
    args: &FlashArgs,
    quiet: bool,
    progress: &Progress,
    stop: &AtomicBool,
    events: &Events,
) -> Result<()> {
    let device = r.target.path().display().to_string();
    let src = r.source.source();
    let map = r.source.map();
    let total = map.mapped_bytes();
    events.emit(json!({"event": "start", "node": r.label, "device": device,
        "bytes": total}));
    let task = progress.task(&format!("{} → {device}", r.label), 0, Some(total));
    let t0 = Instant::now();
    let pause = pause_hook();
    let report = |done: u64, total: u64| {
        task.set_position(done);
        events.progress(&r.label, "write", done, total);
        pause(done, stop);
    };
    let written = write::flash(&src, map, &mut r.target, &report, stop)?;
    task.done();
    if let write::Reread::Failed(why) = &written.reread {
        super::say::warning(format_args!(
            "{device}: the kernel did not re-read the partition table ({why}); \
             unplug and replug the disk before using it"
        ));
    }
    events.emit(
        json!({"event": "written", "node": r.label, "device": device,
        "bytes": written.mapped_bytes, "seconds": written.seconds}),
    );
    let tell = !args.json && !quiet;
    if tell {
        eprintln!(
            "{}: wrote {} to {device} in {:.1} s",
            r.label,
            human_size(written.mapped_bytes),
            written.seconds
        );
    }
    if !args.no_verify {
        let task = progress.task(&format!("{} verify", r.label), 0, Some(total));
        let report = |done: u64, total: u64| {
            task.set_position(done);
            events.progress(&r.label, "verify", done, total);
        };
        verify::readback(&src, map, &written.sums, &r.target, &report, stop)?;
        task.done();
        let files = match &r.source {
            Prepared::Built { expect, .. } => Some(verify::files(&r.target, expect)?),
            Prepared::File { path, .. } => {
                match crate::image::Image::open(path)
                    .and_then(|i| verify::manifest_expectations(&i))
                {
                    Ok(Some(expect)) => Some(verify::files(&r.target, &expect)?),
                    Ok(None) => None,
                    Err(e) => bail!("{}: reading its build manifest: {e:#}", path.display()),
                }
            }
        };
        events.emit(
            json!({"event": "verified", "node": r.label, "device": device,
            "bytes": total, "files": files}),
        );
        if tell {
            let files = files.map_or_else(
                || "no build manifest, so no files compared".to_owned(),
                |n| format!("{n} injected files identical"),
            );
            eprintln!(
                "{}: read back {} from {device}: identical; {files}",
                r.label,
                human_size(total)
            );
        }
    }
    if args.eject {
        let how = eject(&r.disk, &sysfs::system_root());
        events.emit(
            json!({"event": "ejected", "node": r.label, "device": device,
            "how": how}),
        );
        if tell {
            eprintln!("{}: {device}: {how}", r.label);
        }
    }
    let origin = match &r.source {
        Prepared::File { origin, .. } => origin.clone(),
        Prepared::Built { map, known, .. } => format!(
            "built straight to the disk; {known} of {} ranges checked against the sums the \
             cache keeps for the base",
            map.ranges.len()
        ),
    };
    events.emit(json!({"event": "done", "node": r.label, "device": device,
        "seconds": t0.elapsed().as_secs_f64(), "map": origin}));
    if !args.json {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}  {device}  ok  (map: {}, {:.1} s)",
            r.label,
            origin,
            t0.elapsed().as_secs_f64()
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

/// The test hook of the module comment: a function of the bytes written.
fn pause_hook() -> impl Fn(u64, &AtomicBool) {
    let at: Option<u64> = std::env::var("HOMELAB_IMAGE_TEST_PAUSE_AFTER")
        .ok()
        .and_then(|s| s.parse().ok());
    let paused = AtomicBool::new(false);
    move |done, stop| {
        use std::sync::atomic::Ordering;
        if let Some(at) = at
            && done >= at
            && !paused.swap(true, Ordering::Relaxed)
        {
            eprintln!("test hook: paused after {done} bytes");
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed().as_secs() < 20 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Makes the disk safe to unplug: written and flushed already; a USB or
/// SCSI disk is then removed from the system (sysfs `device/delete`, what
/// `udisksctl power-off` starts with). Says what was done.
fn eject(disk: &Disk, root: &Path) -> String {
    use crate::flash::devices::Transport;
    let delete = root
        .join("sys/block")
        .join(&disk.name)
        .join("device/delete");
    match disk.transport {
        Transport::Usb | Transport::Scsi | Transport::Sata if delete.exists() => {
            match std::fs::write(&delete, "1\n") {
                Ok(()) => "ejected: it can be unplugged".to_owned(),
                Err(e) => format!("not ejected ({e}); it is flushed and can be unplugged"),
            }
        }
        _ => "flushed; nothing to eject for this kind of disk: it can be removed".to_owned(),
    }
}

/// JSON lines on stdout for scripts (`--json`), progress at most every
/// 64 MiB per disk.
struct Events {
    on: bool,
    out: Mutex<()>,
    last: Mutex<std::collections::HashMap<(String, &'static str), u64>>,
}

impl Events {
    fn new(on: bool) -> Self {
        Events {
            on,
            out: Mutex::new(()),
            last: Mutex::new(Default::default()),
        }
    }

    fn emit(&self, v: serde_json::Value) {
        if !self.on {
            return;
        }
        let _guard = self.out.lock();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
    }

    fn progress(&self, node: &str, phase: &'static str, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let key = (node.to_owned(), phase);
        {
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            let prev = last.get(&key).copied();
            if prev.is_some_and(|p| done < total && done - p.min(done) < (64 << 20)) {
                return;
            }
            last.insert(key, done);
        }
        self.emit(json!({"event": "progress", "node": node, "phase": phase,
            "done": done, "total": total}));
    }
}
