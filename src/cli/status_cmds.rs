//! Arguments of `status`.

use std::path::PathBuf;

use clap::Args;

use crate::profile::status_url::StatusUrl;

#[derive(Debug, Args)]
#[command(after_help = "\
Logs in to each node with the system's ssh (in parallel) as the profile's
admin user (the first with `sudo: nopasswd` and an SSH key; --user picks
another), trusting only the host keys in OUT/known_hosts that `build`
wrote (strict checking, no prompts), and runs one fixed command that
reads /var/lib/homelab-image/firstboot.status (through `sudo -n` unless
root), `cloud-init status` and, on the MicroCloud initiator, `microcloud
cluster list`. A node whose `status_url` server (`serve`) answers is read
from its /api/nodes instead, without SSH; --serve URL reads every node
from that server, --ssh never asks a server. Absent values print as `-`
(null in --json). Exits 0 once the table is printed; with --watch, 0 when
every node is done and 1 as soon as one has failed. docs/STATUS.md

Examples:
  homelab-image status
  homelab-image status --watch --node pi2 --node pi3
  homelab-image status --json | jq '.[] | select(.state != \"done\")'
  homelab-image status --serve http://192.168.1.5:8080")]
pub struct StatusArgs {
    /// Node (hostname) to ask; repeat for several [default: every node]
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,

    /// Print a JSON array of node objects (with --watch, one array per
    /// line each time something changes)
    #[arg(long)]
    pub json: bool,

    /// Ask again every --interval seconds until every node is done or
    /// one has failed; a terminal is redrawn, elsewhere only changes print
    #[arg(long)]
    pub watch: bool,

    /// Seconds between rounds of --watch
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,

    /// The build's output directory, which holds known_hosts
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// Log in as this user [default: the profile's admin user]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Private key to log in with (only it is offered)
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Seconds to wait for a node's SSH connection
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub connect_timeout: u64,

    /// Read every node from this status server (`serve`) instead of SSH
    #[arg(long, value_name = "URL", conflicts_with = "ssh")]
    pub serve: Option<StatusUrl>,

    /// Ask every node over SSH, even when its status server answers
    #[arg(long)]
    pub ssh: bool,
}
