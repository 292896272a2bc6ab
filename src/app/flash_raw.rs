//! The hidden `flash-raw IMAGE TARGET` command: the flash library
//! (`flash::write`, `flash::verify`) without the safety rules, so the
//! tests can drive the real binary against loop devices they made. The
//! `flash` command replaces it.
//!
//! Test hook: `HOMELAB_IMAGE_TEST_PAUSE_AFTER=<bytes>` makes the write
//! pause (up to 20 s, printing "test hook: paused" on stderr) once that
//! many bytes are on the target, so a test can send a real SIGINT
//! mid-write. Read here only; not for users.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::FlashRawArgs;
use crate::flash::{bmap_read, verify, write};
use crate::image::Image;
use crate::io::units::human_size;

const PAUSE_ENV: &str = "HOMELAB_IMAGE_TEST_PAUSE_AFTER";

pub fn flash_raw(args: &FlashRawArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the interrupt handler")?;
    }
    let shown = args.image.display();
    let file = std::fs::File::open(&args.image).with_context(|| format!("{shown}: cannot open"))?;
    let len = file
        .metadata()
        .with_context(|| format!("{shown}: reading its size"))?
        .len();
    let (map, origin) = bmap_read::for_image(&args.image, len, args.bmap.as_deref())?;
    tracing::info!("{shown}: map: {origin}");
    let mut target = write::Target::open(&args.target)?;
    if target.is_same_file(&file) {
        anyhow::bail!(
            "{}: is the image itself; nothing was written",
            args.target.display()
        );
    }
    let src = verify::image_source(&args.image, &file, len);
    let pause_at: Option<u64> = std::env::var(PAUSE_ENV).ok().and_then(|s| s.parse().ok());
    let paused = AtomicBool::new(false);
    let progress = |done: u64, _total: u64| {
        if let Some(at) = pause_at
            && done >= at
            && !paused.swap(true, Ordering::Relaxed)
        {
            eprintln!("test hook: paused after {done} bytes");
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let written = write::flash(&src, &map, &mut target, &progress, &stop)?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| writeln!(out, "{line}").context("writing to stdout");
    say(format!(
        "wrote {} of {shown} to {} in {:.2} s (map: {origin})",
        human_size(written.mapped_bytes),
        args.target.display(),
        written.seconds
    ))?;
    if let write::Reread::Failed(why) = &written.reread {
        tracing::warn!(
            "{}: the kernel did not re-read the partition table ({why}); replug the disk",
            args.target.display()
        );
    }
    if args.no_verify {
        return Ok(());
    }
    let t0 = Instant::now();
    verify::readback(&src, &map, &written.sums, &target, &|_, _| {}, &stop)?;
    say(format!(
        "read back {} from {}: identical ({:.2} s)",
        human_size(written.mapped_bytes),
        args.target.display(),
        t0.elapsed().as_secs_f64()
    ))?;
    match Image::open(&args.image).and_then(|i| verify::manifest_expectations(&i)) {
        Ok(Some(expect)) => {
            let n = verify::files(&target, &expect)?;
            say(format!(
                "checked {n} injected files on {}",
                args.target.display()
            ))?;
        }
        Ok(None) => say(format!("{shown}: no build manifest; files not compared"))?,
        Err(e) => say(format!("{shown}: files not compared: {e:#}"))?,
    }
    Ok(())
}
