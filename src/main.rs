//! Thin binary: parse the command line, run it, map the outcome to an exit
//! code (0 ok, 1 failure, 2 usage error — clap exits 2 itself).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = homelab_image::cli::Cli::parse();
    homelab_image::app::init_logging(
        &cli.global,
        matches!(cli.command, homelab_image::cli::Command::Serve(_)),
    );
    match homelab_image::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            homelab_image::app::report_error(&err);
            ExitCode::FAILURE
        }
    }
}
