//! Arguments of the commands that work on the profile: `init`, `check`,
//! `render`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
On a terminal (stdin and stderr), init asks for the base image (a catalog
name or an image file), the board, the LAN, the number of nodes, each
node's name, address and MAC (optional) and Wi-Fi (optional; the passphrase
is read without echo and kept in .homelab-state/wifi-password, 0600), with
the detected defaults in brackets: Enter takes them. Ctrl-D or Ctrl-C
stops without writing anything. With --yes, or without a terminal, it
writes the starter without asking: three Pi 4s on Ubuntu 24.04 in the
subnet of this machine's default route, with your ~/.ssh/*.pub keys.

Examples:
  homelab-image init                  # ask, then write ./homelab.yaml
  homelab-image init --yes            # the starter, no questions (scripts)
  homelab-image --profile lab.yaml init --force")]
pub struct InitArgs {
    /// Overwrite an existing profile (and Wi-Fi passphrase file)
    #[arg(long)]
    pub force: bool,

    /// Ask nothing: write the starter with the detected defaults, as
    /// without a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Every mistake is reported in one run, each at its file:line:column, sorted
by position; a value written in defaults is reported once, at its line.
Exit status: 0 when the profile is good, 1 when it is not.

Examples:
  homelab-image check
  homelab-image --profile lab.yaml check --json | jq '.problems[]'")]
pub struct CheckArgs {
    /// Print one JSON object on stdout (problems with file, line, column,
    /// field, message and hint; one result per node), shape in
    /// docs/PROFILE.md
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Writes nothing to the state directory: where it has no host key (or
generated passphrase) yet, one made for this run only is shown, with a
warning; build creates the ones it keeps.")]
pub struct RenderArgs {
    /// Node (hostname) to render
    #[arg(long, value_name = "NAME")]
    pub node: String,

    /// Write the files as a tree (boot/, root/, manifest.json) into DIR instead
    /// of printing them; DIR must not exist or be empty. The tree holds the
    /// real files, secrets too: DIR is made 0700, secret files 0600
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print SSH host private keys, the MicroCloud passphrase, Wi-Fi
    /// passwords, status tokens and users' password hashes instead of
    /// <secret: N bytes, hidden; ...>
    #[arg(long)]
    pub show_secrets: bool,
}
