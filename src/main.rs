//! Thin binary: parse the command line, run it, map the outcome to an exit
//! code (0 ok, 1 failure, 2 usage error — clap exits 2 itself).

use std::process::ExitCode;

use clap::FromArgMatches;
use homelab_image::app;
use homelab_image::cli::Cli;

fn main() -> ExitCode {
    // clap's own help and errors follow `--color` and NO_COLOR like the
    // rest of the output; its choice must be made before it parses.
    let args: Vec<_> = std::env::args_os().collect();
    let color = app::clap_color(&args);
    let cli = homelab_image::cli::command()
        .color(color)
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| {
            e.with_cmd(&homelab_image::cli::command().color(color))
                .exit()
        });
    app::init_logging(
        &cli.global,
        matches!(cli.command, homelab_image::cli::Command::Serve(_)),
    );
    match app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `manpage | head`: the reader went away; nothing is wrong.
        Err(err) if app::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            app::report_error(&err);
            ExitCode::FAILURE
        }
    }
}
