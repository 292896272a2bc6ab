//! The kernel command line of a netbooted node: its root disk is the NBD
//! export `serve` names after the node, and its address is set statically
//! by the initramfs (targets.md §4.4). `ip=dhcp` would be simpler, but the
//! initramfs's network config outranks the seed's `network-config` in
//! cloud-init, so a DHCP lease would replace the profile's static address.
//!
//! Every edit is a `Set`, so applying the ops again (a rebuild, or `serve`
//! filling in its own address when the profile names no server) changes
//! nothing but what differs.

use std::net::Ipv4Addr;

use crate::profile::resolved::ResolvedNode;
use crate::render::cmdline::CmdlineOp;

/// The block device of the NBD export's root partition (partition 2 of the
/// node's image, as on its SD card).
pub const NBD_ROOT: &str = "/dev/nbd0p2";

/// The `ip=` value for `node`:
/// `CLIENT::GATEWAY:NETMASK:HOSTNAME:DEVICE:off` (the kernel's
/// nfsroot.rst format; no server field, no autoconfiguration; an empty
/// GATEWAY when the profile has none). DEVICE is the profile's
/// `network.interface`: the initramfs configures it before netplan renames
/// anything, so for a netbooted node it must be the kernel's name for the
/// NIC (`eth0` for a Pi's onboard port; docs/PROFILE.md says so).
pub fn ip_param(node: &ResolvedNode) -> String {
    let net = &node.network;
    let gateway = net.gateway.map(|g| g.to_string()).unwrap_or_default();
    format!(
        "{}::{gateway}:{}:{}:{}:off",
        net.address.addr(),
        net.address.netmask(),
        node.hostname,
        net.interface
    )
}

/// The `nbdroot=` value: the server and the export, named after the node.
pub fn nbdroot(node: &ResolvedNode, server: Ipv4Addr) -> String {
    format!("{server}/{}", node.hostname)
}

/// The command line edits for a netbooted node (none for others). `server`
/// is the `serve` machine's address if known: the profile's
/// `netboot.server` at build time, `serve`'s own address when it serves
/// `cmdline.txt`. Without it `nbdroot=` is left for `serve` to set.
pub fn cmdline_ops(node: &ResolvedNode, server: Option<Ipv4Addr>) -> Vec<CmdlineOp> {
    if node.netboot.is_none() {
        return Vec::new();
    }
    let set = |key: &str, value: String| CmdlineOp::Set {
        key: key.to_owned(),
        value,
    };
    let mut ops = vec![set("ip", ip_param(node))];
    if let Some(server) = server {
        ops.push(set("nbdroot", nbdroot(node, server)));
    }
    ops.push(set("root", NBD_ROOT.to_owned()));
    ops
}
