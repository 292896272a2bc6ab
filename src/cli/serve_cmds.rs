//! Arguments of `serve`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
Netboots the profile's `netboot:` nodes (Raspberry Pi 4/5 with network in
their EEPROM's BOOT_ORDER) from this machine, with no SD card:
  ProxyDHCP (port 67)  tells each Pi's bootloader to fetch from us; never
                       hands out addresses (the router still does)
  TFTP (69)            the boot files, read in place from the FAT inside
                       the node's disk; cmdline.txt rewritten for NBD root
  NBD (10809)          each node's disk: the cached base image with the
                       node's files laid on, the node's writes kept in
                       OUT/netboot/NODE.delta
  HTTP (80)            a status page, /api/nodes, and the first-boot
                       reports of nodes whose profile names a status_url
Ports below 1024 need root or CAP_NET_BIND_SERVICE; --port-base N moves all
four up by N. Stops cleanly on Ctrl-C or SIGTERM, writes flushed. A node's
delta is kept across restarts; after the profile changed, serve refuses
it until --reset NODE. How to set up the Pis: docs/NETBOOT.md.")]
pub struct ServeArgs {
    /// Serve on this network interface (binds DHCP to it)
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,

    /// The address to bind and announce [default: the address of
    /// --interface, else the one this machine reaches the nodes from]
    #[arg(long, value_name = "IP")]
    pub address: Option<Ipv4Addr>,

    /// Serve only these nodes (repeatable) [default: every netboot node]
    #[arg(long, value_name = "NAME")]
    pub node: Vec<String>,

    /// Add N to every port (DHCP N+67, TFTP N+69, NBD N+10809, HTTP N+80)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub port_base: u16,

    /// Answer clients not in the profile too, and let any address use
    /// a node's disk
    #[arg(long)]
    pub any: bool,

    /// Throw away NODE's disk writes (its delta) and start from the
    /// image again (repeatable)
    #[arg(long, value_name = "NODE")]
    pub reset: Vec<String>,

    /// Only the HTTP status server (for SD-card nodes reporting their
    /// first boot)
    #[arg(long)]
    pub status_only: bool,

    /// Where the nodes' deltas are kept (OUT/netboot/)
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    #[command(flatten)]
    pub fetch: super::source_cmds::FetchArgs,
}
