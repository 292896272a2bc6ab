//! The commented starter profile `init` writes: three Raspberry Pi 4 nodes
//! on Ubuntu 24.04 forming a MicroCloud, with the subnet and gateway of the
//! host's default route and the user's SSH public keys when known. What it
//! writes passes `check` and `render` as it stands (the MicroCloud
//! passphrase is generated into the state directory).

use std::net::Ipv4Addr;

use crate::profile::ident::UserName;
use crate::profile::net::Ipv4Cidr;
use crate::profile::ssh::SshPublicKey;
use crate::render::yaml::to_yaml;

/// What `init` found on the host.
#[derive(Debug, Clone, Default)]
pub struct Detected {
    /// The subnet of the default route's interface, and its gateway.
    pub route: Option<(Ipv4Cidr, Ipv4Addr)>,
    pub ssh_keys: Vec<SshPublicKey>,
    pub user: Option<UserName>,
}

/// The default route and its subnet from `/proc/net/route` text. The
/// kernel prints each address as the hex of a native-endian `u32` holding
/// network-order bytes, hence `to_ne_bytes`.
pub fn parse_proc_route(text: &str) -> Option<(Ipv4Cidr, Ipv4Addr)> {
    let addr = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    // f[0] below is safe: every row reaching it yielded f.get(1).
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (iface, gateway) = rows.iter().find_map(|f| {
        let (dest, gw, mask) = (addr(f.get(1)?)?, addr(f.get(2)?)?, addr(f.get(7)?)?);
        (dest.is_unspecified() && mask.is_unspecified() && !gw.is_unspecified()).then(|| (f[0], gw))
    })?;
    rows.iter().find_map(|f| {
        let (dest, gw, mask) = (addr(f.get(1)?)?, addr(f.get(2)?)?, addr(f.get(7)?)?);
        let prefix = u8::try_from(u32::from(mask).count_ones()).ok()?;
        let net = Ipv4Cidr::new(dest, prefix)?;
        let usable = f[0] == iface && gw.is_unspecified() && prefix > 0 && prefix <= 29;
        (usable && net.contains(gateway)).then_some((net, gateway))
    })
}

/// The first three free host addresses from .11 on (skipping the gateway).
fn node_addresses(net: Ipv4Cidr, gateway: Ipv4Addr) -> Option<Vec<Ipv4Cidr>> {
    let picked: Vec<Ipv4Cidr> = (11..)
        .take(20)
        .filter_map(|i| net.nth_host(i))
        .filter(|ip| *ip != gateway)
        .filter_map(|ip| Ipv4Cidr::new(ip, net.prefix()))
        .filter(Ipv4Cidr::is_host_address)
        .take(3)
        .collect();
    (picked.len() == 3).then_some(picked)
}

/// A YAML scalar for `s` (quoted when a YAML reader could misread it).
fn scalar(s: &str) -> String {
    to_yaml("starter profile", &s).map_or_else(|_| format!("{s:?}"), |y| y.trim_end().to_owned())
}

/// The starter profile text.
pub fn starter_profile(d: &Detected) -> String {
    let fallback_net = Ipv4Cidr::new(Ipv4Addr::new(192, 168, 1, 0), 24);
    let (net, gateway, detected) = match d
        .route
        .and_then(|(n, g)| Some((n, g, node_addresses(n, g)?)))
    {
        Some((n, g, addrs)) => (n, g, Some(addrs)),
        None => (
            fallback_net.unwrap_or_else(|| unreachable!("/24 is a valid prefix")),
            Ipv4Addr::new(192, 168, 1, 1),
            None,
        ),
    };
    let addrs = detected
        .or_else(|| node_addresses(net, gateway))
        .unwrap_or_default();
    let route_note = if d.route.is_some() && addrs.len() == 3 {
        "taken from this machine's default route"
    } else {
        "no default route found: adjust to your LAN"
    };
    let user = d.user.as_ref().map_or("admin", |u| u.as_str());
    let keys = if d.ssh_keys.is_empty() {
        // Without a key nobody could log in: the profile says so
        // explicitly, so that it still checks, and says how to fix it.
        "      ssh_keys: []               # no ~/.ssh/*.pub found: add yours here\n  \
         allow_no_login: true           # and remove this line once a user has a key\n"
            .to_owned()
    } else {
        let mut s = "      ssh_keys:                  # from ~/.ssh/*.pub\n".to_owned();
        for k in &d.ssh_keys {
            s.push_str(&format!("        - {}\n", scalar(k.as_str())));
        }
        s
    };
    let mut nodes = String::new();
    for (i, a) in addrs.iter().enumerate() {
        nodes.push_str(&format!(
            "  - hostname: node{}\n    network:\n      address: {a}\n",
            i + 1
        ));
    }
    format!(
        "# homelab.yaml: the inventory homelab-image builds one image per node from.
# Every field is described in docs/PROFILE.md.
#   homelab-image check                  validate this file
#   homelab-image render --node node1    show what node1's image gets
#   homelab-image build --all            build out/node1.img, …

# Values every node gets unless the node sets its own.
defaults:
  image:
    os: ubuntu-24.04             # ubuntu-22.04, ubuntu-24.04, ubuntu-26.04 or armbian
  board: rpi4                    # rpi4, rpi5 or an Armbian board (rock-5b, …)
  domain: home.arpa
  timezone: Etc/UTC
  locale: en_US.UTF-8
  ntp: [pool.ntp.org]
  network:
    interface: eth0              # or match a NIC per node with `mac:`
    subnet: {subnet:<21}# {route_note}
    gateway: {gateway}
    dns: [{gateway}]
  users:
    - name: {user}
      groups: [adm, sudo]
      sudo: nopasswd             # none, password or nopasswd
{keys}  # MicroCloud disks (whole disks, no partitions); uncomment to use:
  # storage:                    # stable names (ls -l /dev/disk/by-id), not /dev/sdX
  #   local: /dev/disk/by-id/usb-…     # LXD's local storage pool
  #   ceph: [/dev/disk/by-id/usb-…]    # MicroCeph (needs disks on 3 nodes)

nodes:
{nodes}
# One MicroCloud over all nodes, set up on first boot.
microcloud:
  initiator: node1
  lookup_subnet: {subnet}
  session_passphrase:
    generate: true               # kept in .homelab-state/microcloud-passphrase
",
        subnet = net.network().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn finds_default_route_and_subnet() {
        // The fixture is little-endian, like the machines we run on.
        if cfg!(target_endian = "little") {
            let (net, gw) = parse_proc_route(ROUTE).unwrap();
            assert_eq!(net.to_string(), "192.168.1.0/24");
            assert_eq!(gw, Ipv4Addr::new(192, 168, 1, 1));
        }
        assert_eq!(parse_proc_route("Iface\tDestination\n"), None);
    }

    #[test]
    fn picks_three_addresses_avoiding_the_gateway() {
        let net = Ipv4Cidr::parse("10.0.0.0/24").unwrap();
        let a = node_addresses(net, Ipv4Addr::new(10, 0, 0, 12)).unwrap();
        let shown: Vec<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.11/24", "10.0.0.13/24", "10.0.0.14/24"]);
        assert!(
            node_addresses(
                Ipv4Cidr::parse("10.0.0.0/29").unwrap(),
                Ipv4Addr::new(10, 0, 0, 1)
            )
            .is_none()
        );
    }
}
