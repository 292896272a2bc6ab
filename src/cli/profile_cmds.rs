//! Arguments of the commands that work on the profile: `init`, `check`,
//! `render`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing profile
    #[arg(long)]
    pub force: bool,
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

    /// Print SSH host private keys, the MicroCloud passphrase and Wi-Fi
    /// passwords instead of <secret: N bytes, hidden; ...>
    #[arg(long)]
    pub show_secrets: bool,
}
