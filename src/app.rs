//! Ties a parsed command line to the work: one function per command, each a
//! thin call into the library. Errors are printed by `report_error`.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::cli::{CatArgs, Cli, ColorChoice, Command, GlobalArgs, InspectArgs, LsArgs};
use crate::image::Image;

mod build_cmds;
mod copy_cmds;
mod device_cmds;
mod firmware_cmds;
mod flash_cmds;
mod profile_cmds;
pub mod say;
mod serve_cmds;
pub mod source_cmds;
mod status_cmds;
mod tty_ask;

/// Sets up `tracing` on stderr: warnings by default, more with `-v`, errors
/// only with `-q`; a server (`serve`) logs each request it serves (info)
/// with the time. `RUST_LOG` overrides.
pub fn init_logging(global: &GlobalArgs, server: bool) {
    say::set_quiet(global.quiet);
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    // fatfs logs harmless compatibility notes about volumes it reads at
    // warn level; they are not the user's business unless asked (-vv).
    // rustls' certificate verifier logs the failure that our error line
    // reports anyway.
    let fatfs = if global.verbose >= 2 {
        ""
    } else {
        ",fatfs=error,rustls_platform_verifier=off"
    };
    let served = if server && !global.quiet && global.verbose == 0 {
        ",homelab_image::netboot=info"
    } else {
        ""
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level}{fatfs}{served}")));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color(global.color, &std::io::stderr()))
        .with_target(false);
    let _ = if server {
        fmt.try_init()
    } else {
        fmt.without_time().try_init()
    };
}

/// clap's colour choice from the raw arguments (`--color WHEN` or
/// `--color=WHEN`, the last one winning, as clap would take it), so its own
/// help and usage errors follow the flag; NO_COLOR is honoured by clap's
/// automatic choice. An invalid value is left for clap to report.
pub fn clap_color(args: &[std::ffi::OsString]) -> clap::ColorChoice {
    let mut choice = clap::ColorChoice::Auto;
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let value = match word.strip_prefix("--color") {
            Some("") => words.next().map(|v| v.into_owned()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        };
        match value.as_deref() {
            Some("always") => choice = clap::ColorChoice::Always,
            Some("never") => choice = clap::ColorChoice::Never,
            Some("auto") => choice = clap::ColorChoice::Auto,
            _ => {}
        }
    }
    choice
}

/// Whether the error is (or was caused by) writing to a pipe whose reader
/// has gone: `homelab-image manpage | head` ends quietly, with success.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether to colour output going to `stream`.
pub fn use_color(choice: ColorChoice, stream: &impl std::io::IsTerminal) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stream.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Prints an error and its causes on one line: `error: reading x.img: …`.
pub fn report_error(err: &anyhow::Error) {
    // A last guard for URL passwords in messages (the source module masks
    // the URLs it prints; this catches any quoted elsewhere).
    let text = crate::source::redact::text(&format!("{err:#}"));
    let _ = writeln!(std::io::stderr(), "error: {text}");
}

pub fn run(cli: Cli) -> Result<()> {
    let color = cli.global.color;
    match cli.command {
        Command::Init(args) => profile_cmds::init(&cli.global, &args),
        Command::Check(args) => profile_cmds::check(&cli.global, &args),
        Command::Render(args) => profile_cmds::render(&cli.global, &args),
        Command::Build(args) => build_cmds::build(&cli.global, &args),
        Command::Inspect(args) => inspect(&args, color),
        Command::Ls(args) => ls(&args),
        Command::Cat(args) => cat(&args),
        Command::Cp(args) => copy_cmds::cp(&args),
        Command::Rm(args) => copy_cmds::rm(&args),
        Command::Images(args) => source_cmds::images(&args),
        Command::Pull(args) => source_cmds::pull(&cli.global, &args),
        Command::Cache(args) => source_cmds::cache(&cli.global, &args),
        Command::Devices(args) => device_cmds::devices(&cli.global, &args),
        Command::Flash(args) => flash_cmds::flash(&cli.global, &args),
        Command::Serve(args) => serve_cmds::serve(&cli.global, &args),
        Command::Status(args) => status_cmds::status(&cli.global, &args),
        Command::Firmware(args) => firmware_cmds::firmware(&cli.global, &args),
        Command::Completions(args) => {
            write_stdout(&mut std::io::stdout().lock(), &completions(args.shell))
        }
        Command::Manpage => {
            let mut page = Vec::new();
            crate::cli::man::render(&mut page).context("rendering the man page")?;
            write_stdout(&mut std::io::stdout().lock(), &page)
        }
    }
}

/// The completion script for `shell`. clap_complete's bash script names
/// each subcommand's branch differently in the two places it uses it when
/// the binary's name has a hyphen (`homelab__image__subcmd__build` when
/// walking the words, `homelab__subcmd__image__subcmd__build` in the
/// options table, clap#6421), so nothing after a subcommand was ever
/// offered; the second spelling is rewritten to the first. A clap_complete
/// that fixes the bug makes this a no-op.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), "homelab-image", &mut out);
    if shell == clap_complete::Shell::Bash {
        let text = String::from_utf8_lossy(&out);
        out = text
            .replace("homelab__subcmd__image__", "homelab__image__")
            .into_bytes();
    }
    out
}

/// Prints the report, then fails (exit 1, the first problem on stderr)
/// when any part of the image could not be read: the report marks those.
fn inspect(args: &InspectArgs, color: ColorChoice) -> Result<()> {
    let image = Image::open(&args.image)?;
    let report = crate::inspect::inspect(&image);
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&report).context("encoding the report as JSON")?;
        json.push('\n');
        json
    } else {
        crate::inspect::render_human(&report, use_color(color, &std::io::stdout()))
    };
    write_stdout(&mut out, text.as_bytes())?;
    match report.problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("{}: {one}", args.image.display()),
        [first, rest @ ..] => bail!(
            "{}: {first} (and {} more problem{}, listed in the report)",
            args.image.display(),
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

fn ls(args: &LsArgs) -> Result<()> {
    let image = Image::open(&args.image)?;
    let (n, fs) = image.filesystem(&args.partition)?;
    // Like ls(1): a directory lists its entries, anything else itself.
    let entries = match fs.list(&args.path) {
        Err(crate::fs::FsError::NotADirectory(_)) => fs.stat(&args.path).map(|e| vec![e]),
        other => other,
    }
    .with_context(|| format!("{}: partition {n}", args.image.display()))?;
    let mut text = String::new();
    for e in &entries {
        text.push_str(&crate::fs::format_entry(e, args.long));
        text.push('\n');
    }
    write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
}

/// Streams the file to stdout: a file inside an image can be larger than
/// memory, or claim to be.
fn cat(args: &CatArgs) -> Result<()> {
    let image = Image::open(&args.image)?;
    let (n, fs) = image.filesystem(&args.partition)?;
    let mut out = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let copied = fs
        .stream(&args.path, &mut out)
        .and_then(|_| out.flush().map_err(crate::fs::StreamError::Write));
    match copied {
        Ok(()) => Ok(()),
        Err(crate::fs::StreamError::Read(e)) => {
            Err(e).with_context(|| format!("{}: partition {n}", args.image.display()))
        }
        // A closed pipe (`| head`) is not an error.
        Err(crate::fs::StreamError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(crate::fs::StreamError::Write(e)) => Err(e).context("writing to stdout"),
    }
}

/// A flag set by every signal that ends a terminal session or asks the
/// process to quit (SIGINT, SIGTERM, SIGHUP, SIGQUIT): long work checks it,
/// stops and cleans up (a build removes its partial files, a flash wipes
/// the half-written partition table) rather than dying midway.
fn interrupt_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))
            .context("installing the interrupt handler")?;
    }
    Ok(stop)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
