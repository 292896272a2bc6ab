//! Ties a parsed command line to the work: one function per command, each a
//! thin call into the library. Errors are printed by `report_error`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ColorChoice, Command, GlobalArgs};

mod profile_cmds;

/// Sets up `tracing` on stderr: warnings by default, more with `-v`, errors
/// only with `-q`. `RUST_LOG` overrides.
pub fn init_logging(global: &GlobalArgs) {
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color(global.color, &std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
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
    let _ = writeln!(std::io::stderr(), "error: {err:#}");
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => profile_cmds::init(&cli.global, &args),
        Command::Check => profile_cmds::check(&cli.global),
        Command::Render(args) => profile_cmds::render(&cli.global, &args),
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(
                args.shell,
                &mut cmd,
                "homelab-image",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Manpage => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())
                .context("writing the man page to stdout")
        }
    }
}
