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
/// nfsroot.rst format; no server field, no autoconfiguration). DEVICE is
/// empty when the profile matches the NIC by MAC: its `interface` is then
/// the name netplan gives the NIC later, which the initramfs does not know.
pub fn ip_param(node: &ResolvedNode) -> String {
    let net = &node.network;
    let gateway = net.gateway.map(|g| g.to_string()).unwrap_or_default();
    let device = if net.mac.is_some() {
        ""
    } else {
        net.interface.as_str()
    };
    format!(
        "{}::{gateway}:{}:{}:{device}:off",
        net.address.addr(),
        net.address.netmask(),
        node.hostname
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
