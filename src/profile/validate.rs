//! Rules that look at more than one node: unique hostnames, addresses and
//! MACs, and MicroCloud's preseed rules. MicroCloud silently ignores keys
//! it does not know and fails late on a node at first boot, so every rule
//! it enforces (see shared/reference/targets.md §3.4) is checked here.
//! Also the per-node settings that only fail on the node itself, at boot
//! (`node_settings`): names the image would not know, a node nobody can
//! log in to, disk names that change between boots.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::profile::ident::SnapChannel;
use crate::profile::ident::Timezone;
use crate::profile::inventory::{KeyboardSpec, MicroCloudSpec};
use crate::profile::known_names;
use crate::profile::load::Position;
use crate::profile::problem::Report;
use crate::profile::resolve::{Context, SecretValue, read_secret_plain};
use crate::profile::resolved::{Channels, Discovery, MicroCloud, Ovn, Passphrase, ResolvedNode};

/// Default snap channels: the MicroCloud 2 LTS set for Ubuntu 22.04/24.04.
pub const DEFAULT_CHANNELS: [(&str, &str); 4] = [
    ("lxd", "5.21/stable"),
    ("microceph", "squid/stable"),
    ("microovn", "24.03/stable"),
    ("microcloud", "2/stable"),
];
/// Joiners wait this long for the initiator; nodes boot minutes apart.
pub const DEFAULT_LOOKUP_TIMEOUT: u32 = 600;
pub const DEFAULT_SESSION_TIMEOUT: u32 = 3600;
/// Ceph keeps three replicas, so fewer members with disks lose redundancy.
const CEPH_MIN_NODES: usize = 3;

/// Duplicate hostnames, addresses, MACs and Pi serials; gateways that are
/// a node. `hostname_at[i]` is where node `i`'s hostname is written: a
/// duplicate names both places.
pub fn cross_node(nodes: &[ResolvedNode], hostname_at: &[Option<Position>], report: &mut Report) {
    let mut hostnames: BTreeMap<&str, usize> = BTreeMap::new();
    let mut addresses: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    let mut macs = BTreeMap::new();
    let mut serials = BTreeMap::new();
    let mut vmids = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = n.hostname.as_str();
        if let Some(first) = hostnames.get(name).copied() {
            let at = |k: usize| hostname_at.get(k).copied().flatten();
            match (at(first), at(i)) {
                (Some(was), Some(here)) => report.error_at(
                    Some(name),
                    "hostname",
                    here,
                    format!(
                        "{name} is also the hostname of the node at line {}",
                        was.line
                    ),
                ),
                _ => report.error(
                    Some(name),
                    "hostname",
                    format!("{name} is used by more than one node"),
                ),
            }
        } else {
            hostnames.insert(name, i);
        }
        let ip = n.network.address.addr();
        if let Some(other) = addresses.insert(ip, name) {
            report.error(
                Some(name),
                "network.address",
                format!("{ip} is also node {other}'s address"),
            );
        }
        if let Some(serial) = n.netboot.as_ref().and_then(|nb| nb.serial)
            && let Some(other) = serials.insert(serial, name)
        {
            report.error(
                Some(name),
                "netboot.serial",
                format!("serial {serial} is also node {other}'s"),
            );
        }
        if let Some(id) = n.vm.as_ref().and_then(|vm| vm.vmid)
            && let Some(other) = vmids.insert(id, name)
        {
            report.error(
                Some(name),
                "vm.vmid",
                format!("VM id {id} is also node {other}'s"),
            );
        }
        let uplink_mac = match &n.network.uplink {
            Some(crate::profile::resolved::Uplink::Nic { mac, .. }) => *mac,
            _ => None,
        };
        for (field, mac) in [
            ("network.mac", n.network.mac),
            ("network.uplink.mac", uplink_mac),
        ] {
            if let Some(mac) = mac
                && let Some(other) = macs.insert(mac, name)
            {
                report.error(
                    Some(name),
                    field,
                    format!("{mac} is also used by node {other}"),
                );
            }
        }
    }
    for n in nodes {
        if let Some(gw) = n.network.gateway
            && let Some(owner) = addresses.get(&gw).filter(|o| **o != n.hostname.as_str())
        {
            report.error(
                Some(n.hostname.as_str()),
                "network.gateway",
                format!("{gw} is node {owner}'s address"),
            );
        }
    }
}

/// Time zones and keyboard layouts the image does not know (it falls
/// back to UTC / us). Checked on every node as written, resolved or not,
/// so that one node's other mistake does not hide these.
pub fn names(
    node: &str,
    timezone: Option<&Timezone>,
    keyboard: Option<&KeyboardSpec>,
    report: &mut Report,
) {
    let name = Some(node);
    if let Some(tz) = timezone
        && !known_names::is_timezone(tz.as_str())
    {
        report.error_with_hint(
            name,
            "timezone",
            format!("{tz} is not a time zone of the tz database"),
            known_names::suggest_timezone(tz.as_str()).map(|s| format!("did you mean {s}?")),
        );
    }
    if let Some(k) = keyboard {
        // XKB takes several layouts separated by commas (`us,de`).
        for layout in k.layout.as_str().split(',') {
            if !known_names::is_xkb_layout(layout) {
                let suggestion = known_names::suggest_xkb_layout(layout);
                report.error_with_hint(
                    name,
                    "keyboard.layout",
                    format!(
                        "{layout:?} is not an XKB keyboard layout{}",
                        if suggestion.is_none() {
                            " (like de or us)"
                        } else {
                            ""
                        }
                    ),
                    suggestion.map(|s| format!("did you mean {s}?")),
                );
            }
        }
    }
}

/// Settings each node's image would accept and then get wrong at boot:
/// time zones and keyboard layouts the image does not know (it falls back
/// to UTC / us), a node nobody can log in to, and kernel disk names
/// (`/dev/sdX`) for MicroCloud's disks.
pub fn node_settings(nodes: &[ResolvedNode], report: &mut Report) {
    for n in nodes {
        let name = Some(n.hostname.as_str());
        let can_log_in = n
            .users
            .iter()
            .any(|u| !u.ssh_keys.is_empty() || u.password.is_some());
        // A user whose key or password was refused already has an error.
        let users_refused = report
            .errors
            .iter()
            .any(|e| e.node.as_deref() == name && e.field.starts_with("users"));
        if !can_log_in && !n.allow_no_login && !users_refused {
            report.error(
                name,
                "users",
                "nobody could log in to this node: no user has an SSH key or a \
                 password; add one, or set `allow_no_login: true` if that is intended",
            );
        }
        let disks = n.storage.local.iter().map(|d| ("storage.local", d));
        let ceph = n.storage.ceph.iter().map(|d| ("storage.ceph", d));
        for (field, disk) in disks.chain(ceph) {
            if is_kernel_disk_name(disk.as_str()) {
                report.warn(
                    name,
                    field,
                    format!(
                        "{disk} is a name the kernel gives in the order disks appear, \
                         which can change between boots (and /dev/sda is the boot disk \
                         of a Pi booted from USB): use a stable name such as \
                         /dev/disk/by-id/…"
                    ),
                );
            }
        }
    }
}

/// `/dev/sda`, `/dev/sdb1`, `/dev/vdc`: names in order of discovery, as
/// opposed to `/dev/disk/by-id/…` or `/dev/nvme0n1` (which follows the
/// PCIe slot).
fn is_kernel_disk_name(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/dev/") else {
        return false;
    };
    ["sd", "hd", "vd", "xvd"].iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase())
        })
    })
}

fn channel(given: &Option<SnapChannel>, snap: &str) -> SnapChannel {
    given.clone().unwrap_or_else(|| {
        let default = DEFAULT_CHANNELS
            .iter()
            .find(|(s, _)| *s == snap)
            .map_or("latest/stable", |(_, c)| c);
        // The defaults above are valid channel literals.
        SnapChannel::parse(default).unwrap_or_else(|_| unreachable!("{default} is a valid channel"))
    })
}

/// Checks the `microcloud` section against the nodes. `all_resolved` is
/// false when some node failed to resolve; rules that need every node
/// (membership of the initiator) are then skipped to avoid noise.
pub fn microcloud(
    spec: &MicroCloudSpec,
    nodes: &[ResolvedNode],
    all_resolved: bool,
    ctx: &Context<'_>,
    report: &mut Report,
) -> Option<MicroCloud> {
    let errors_before = report.errors.len();
    let discovery = discovery(spec, nodes, all_resolved, report);
    let passphrase = match &spec.session_passphrase {
        None => None,
        Some(s) => match read_secret_plain(s, true, ctx) {
            Ok(SecretValue::Text(t)) if t.is_empty() => {
                report.error(
                    None,
                    "microcloud.session_passphrase",
                    "the passphrase is empty",
                );
                None
            }
            Ok(SecretValue::Text(t)) => Some(Passphrase::Known(t)),
            Ok(SecretValue::Generated) => Some(Passphrase::Generated),
            Err(msg) => {
                report.error(None, "microcloud.session_passphrase", msg);
                None
            }
        },
    };
    if spec.session_passphrase.is_none() && nodes.len() > 1 {
        report.error(
            None,
            "microcloud.session_passphrase",
            "a cluster of more than one node needs a session passphrase \
             (env, file, or generate: true)",
        );
    }
    check_uplinks(spec, nodes, report);
    let ovn = spec.ovn.as_ref().map(|o| {
        if !o.ipv4_gateway.is_host_address() {
            report.error(
                None,
                "microcloud.ovn.ipv4_gateway",
                "the gateway is its subnet's network or broadcast address",
            );
        }
        if let Some(range) = o.ipv4_range
            && (!o.ipv4_gateway.contains(range.start) || !o.ipv4_gateway.contains(range.end))
        {
            report.error(
                None,
                "microcloud.ovn.ipv4_range",
                format!(
                    "{range} is outside the gateway's subnet {}",
                    o.ipv4_gateway.network()
                ),
            );
        }
        if let Some(range) = o.ipv4_range {
            ovn_range_overlaps(&range, o.ipv4_gateway.addr(), nodes, report);
        }
        Ovn {
            ipv4_gateway: o.ipv4_gateway,
            ipv4_range: o.ipv4_range,
            dns_servers: o.dns_servers.clone(),
        }
    });
    let with_ceph = nodes.iter().filter(|n| !n.storage.ceph.is_empty()).count();
    if with_ceph > 0 && with_ceph < CEPH_MIN_NODES {
        report.warn(
            None,
            "microcloud",
            format!(
                "Ceph with disks on {with_ceph} node(s) keeps no redundant copies; \
                 it needs disks on at least {CEPH_MIN_NODES} nodes"
            ),
        );
    }
    for (field, value) in [
        ("lookup_timeout", spec.lookup_timeout),
        ("session_timeout", spec.session_timeout),
    ] {
        if value == Some(0) {
            report.error(
                None,
                format!("microcloud.{field}"),
                "a timeout of 0 seconds never succeeds",
            );
        }
    }
    if report.errors.len() > errors_before {
        return None;
    }
    let c = &spec.channels;
    Some(MicroCloud {
        channels: Channels {
            lxd: channel(&c.lxd, "lxd"),
            microceph: channel(&c.microceph, "microceph"),
            microovn: channel(&c.microovn, "microovn"),
            microcloud: channel(&c.microcloud, "microcloud"),
        },
        discovery: discovery?,
        lookup_timeout: spec.lookup_timeout.unwrap_or(DEFAULT_LOOKUP_TIMEOUT),
        session_timeout: spec.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT),
        passphrase,
        ovn,
    })
}

/// OVN hands out the addresses of `ipv4_range` to its routers and
/// floating IPs: one that is already the gateway or a node's address would
/// be answered twice on the uplink.
fn ovn_range_overlaps(
    range: &crate::profile::net::Ipv4Range,
    ovn_gateway: Ipv4Addr,
    nodes: &[ResolvedNode],
    report: &mut Report,
) {
    let field = "microcloud.ovn.ipv4_range";
    if range.contains(ovn_gateway) {
        report.error(
            None,
            field,
            format!("{range} contains the OVN gateway {ovn_gateway} (ovn.ipv4_gateway)"),
        );
    }
    let mut gateways = BTreeMap::new();
    for n in nodes {
        let ip = n.network.address.addr();
        if range.contains(ip) {
            report.error(
                None,
                field,
                format!("{range} contains node {}'s address {ip}", n.hostname),
            );
        }
        if let Some(gw) = n.network.gateway
            && gw != ovn_gateway
            && range.contains(gw)
        {
            gateways.entry(gw).or_insert(n.hostname.as_str());
        }
    }
    for (gw, node) in gateways {
        report.error(
            None,
            field,
            format!("{range} contains the gateway {gw} (network.gateway of node {node})"),
        );
    }
}

fn discovery(
    spec: &MicroCloudSpec,
    nodes: &[ResolvedNode],
    all_resolved: bool,
    report: &mut Report,
) -> Option<Discovery> {
    match (&spec.initiator, spec.initiator_address) {
        (Some(initiator), None) => {
            if all_resolved && !nodes.iter().any(|n| &n.hostname == initiator) {
                report.error(
                    None,
                    "microcloud.initiator",
                    format!("{initiator} is not a node of this profile"),
                );
            }
            let Some(subnet) = spec.lookup_subnet else {
                report.error(
                    None,
                    "microcloud.lookup_subnet",
                    "initiator needs lookup_subnet (the subnet searched by multicast)",
                );
                return None;
            };
            for n in nodes {
                let ip = n.network.address.addr();
                // An address already refused (outside `subnet`, say) is
                // not reported a second time for the same mistake.
                let refused = report.errors.iter().any(|e| {
                    e.node.as_deref() == Some(n.hostname.as_str()) && e.field == "network.address"
                });
                if !subnet.contains(ip) && !refused {
                    report.error(
                        Some(n.hostname.as_str()),
                        "network.address",
                        format!(
                            "{ip} is outside microcloud.lookup_subnet {}",
                            subnet.network()
                        ),
                    );
                }
            }
            Some(Discovery::Multicast {
                initiator: initiator.clone(),
                lookup_subnet: subnet.network(),
            })
        }
        (None, Some(address)) => {
            if spec.lookup_subnet.is_some() {
                report.error(
                    None,
                    "microcloud.lookup_subnet",
                    "lookup_subnet goes with initiator, not with initiator_address",
                );
            }
            if all_resolved && !nodes.iter().any(|n| n.network.address.addr() == address) {
                report.error(
                    None,
                    "microcloud.initiator_address",
                    format!("{address} is not the address of a node of this profile"),
                );
            }
            Some(Discovery::Unicast {
                initiator_address: address,
            })
        }
        (Some(_), Some(_)) => {
            report.error(
                None,
                "microcloud.initiator",
                "set initiator or initiator_address, not both",
            );
            None
        }
        (None, None) => {
            report.error(
                None,
                "microcloud.initiator",
                "set initiator (multicast discovery) or initiator_address",
            );
            None
        }
    }
}

/// MicroCloud wants `ovn_uplink_interface` on every system or on none, and
/// an OVN gateway when there is one.
fn check_uplinks(spec: &MicroCloudSpec, nodes: &[ResolvedNode], report: &mut Report) {
    let (with, without): (Vec<&ResolvedNode>, Vec<&ResolvedNode>) =
        nodes.iter().partition(|n| n.network.uplink.is_some());
    if !with.is_empty() && !without.is_empty() {
        let names: Vec<&str> = with.iter().map(|n| n.hostname.as_str()).collect();
        // A node whose uplink was refused has one, written wrong: that
        // error is the one to fix, not a "missing" uplink.
        let refused = |n: &ResolvedNode| {
            report.errors.iter().any(|e| {
                e.node.as_deref() == Some(n.hostname.as_str())
                    && e.field.starts_with("network.uplink")
            })
        };
        let without: Vec<&ResolvedNode> = without.into_iter().filter(|n| !refused(n)).collect();
        for n in without {
            report.error(
                Some(n.hostname.as_str()),
                "network.uplink",
                format!(
                    "MicroCloud needs the OVN uplink on all nodes or none, and {} {} one",
                    names.join(", "),
                    if names.len() == 1 { "has" } else { "have" }
                ),
            );
        }
    }
    if !with.is_empty() && spec.ovn.is_none() {
        report.error(
            None,
            "microcloud.ovn",
            "an OVN uplink needs ovn.ipv4_gateway",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_kernel_disk_name;

    #[test]
    fn kernel_disk_names_are_told_from_stable_ones() {
        for name in [
            "/dev/sda",
            "/dev/sdb1",
            "/dev/sdaa",
            "/dev/vdc",
            "/dev/hda2",
            "/dev/xvdb",
        ] {
            assert!(is_kernel_disk_name(name), "{name}");
        }
        for name in [
            "/dev/disk/by-id/usb-Samsung_T7-0:0",
            "/dev/disk/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1:1.0-scsi-0:0:0:0",
            "/dev/nvme0n1",
            "/dev/mmcblk0",
            "/dev/sd",
            "/dev/md0",
        ] {
            assert!(!is_kernel_disk_name(name), "{name}");
        }
    }
}
