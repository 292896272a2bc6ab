//! The network questions of `init`: the subnet and gateway, then each
//! node's hostname, address and MAC, each checked against the LAN and the
//! nodes answered before it (no duplicate names, addresses or MACs; no
//! address outside the subnet, on its network or broadcast address, or on
//! the gateway).

use std::net::Ipv4Addr;

use super::{AskError, Asker, MAX_NODES, ask};
use crate::profile::hostname::Hostname;
use crate::profile::net::{Ipv4Cidr, MacAddr};
use crate::profile::starter::{Starter, StarterNode};

/// The subnet and gateway, offered from the default route.
pub(super) fn ask_lan(
    a: &mut dyn Asker,
    detected: &Starter,
) -> Result<(Ipv4Cidr, Ipv4Addr), AskError> {
    let subnet = ask(
        a,
        "subnet",
        "Subnet of the nodes' LAN",
        Some(&detected.subnet.to_string()),
        |s| {
            let net = Ipv4Cidr::parse(s).map_err(|e| e.to_string())?;
            if !(8..=30).contains(&net.prefix()) {
                return Err(format!(
                    "{s} has a /{} prefix: give a LAN from /8 to /30",
                    net.prefix()
                ));
            }
            Ok(net.network())
        },
    )?;
    let offered = if subnet.contains(detected.gateway) {
        Some(detected.gateway)
    } else {
        subnet.nth_host(1)
    }
    .map(|g| g.to_string());
    let gateway = ask(a, "gateway", "Gateway", offered.as_deref(), |s| {
        let ip: Ipv4Addr = s
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address, like 192.168.1.1"))?;
        host_in(ip, subnet)?;
        Ok(ip)
    })?;
    Ok((subnet, gateway))
}

/// How many host addresses `net` has (network and broadcast excluded).
pub(super) fn hosts_in(net: Ipv4Cidr) -> usize {
    let bits = 32 - u32::from(net.prefix());
    // Only /8 to /30 reach here: 2^24 fits any usize this runs on.
    usize::try_from((1u64 << bits).saturating_sub(2)).unwrap_or(usize::MAX)
}

/// `ip` is a host of `net`: inside it, not its network or broadcast address.
fn host_in(ip: Ipv4Addr, net: Ipv4Cidr) -> Result<Ipv4Cidr, String> {
    if !net.contains(ip) {
        return Err(format!("{ip} is outside the subnet {net}"));
    }
    if ip == net.network().addr() {
        return Err(format!("{ip} is the subnet's network address"));
    }
    if ip == net.broadcast() {
        return Err(format!("{ip} is the subnet's broadcast address"));
    }
    Ipv4Cidr::new(ip, net.prefix()).ok_or_else(|| format!("{ip}/{} is not valid", net.prefix()))
}

/// The address offered to the next node: from .11 on, then from .2,
/// skipping the gateway and the addresses taken.
fn next_free(net: Ipv4Cidr, gateway: Ipv4Addr, taken: &[StarterNode]) -> Option<Ipv4Cidr> {
    let hosts = u32::try_from(hosts_in(net)).unwrap_or(u32::MAX);
    (11..=hosts)
        .chain(1..11.min(hosts + 1))
        .filter_map(|i| net.nth_host(i))
        .filter(|ip| *ip != gateway && taken.iter().all(|n| n.address.addr() != *ip))
        .find_map(|ip| host_in(ip, net).ok())
}

/// Node `i`'s name, address and MAC, checked against the nodes before it.
pub(super) fn ask_node(
    a: &mut dyn Asker,
    i: usize,
    before: &[StarterNode],
    subnet: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<StarterNode, AskError> {
    let free_name = (i..)
        .take(MAX_NODES + 1)
        .map(|n| format!("node{n}"))
        .find(|n| before.iter().all(|b| b.hostname.as_str() != n));
    let hostname = ask(
        a,
        &format!("node {i} hostname"),
        &format!("Node {i}: hostname"),
        free_name.as_deref(),
        |s| {
            let h = Hostname::parse(s).map_err(|e| e.to_string())?;
            match before.iter().position(|b| b.hostname == h) {
                Some(j) => Err(format!("{s} is node {}'s name already", j + 1)),
                None => Ok(h),
            }
        },
    )?;
    let offered = next_free(subnet, gateway, before).map(|c| c.addr().to_string());
    let address = ask(
        a,
        &format!("node {i} address"),
        &format!("Node {i} ({}): address in {subnet}", hostname.as_str()),
        offered.as_deref(),
        |s| node_address(s, subnet, gateway, before),
    )?;
    let mac = ask(
        a,
        &format!("node {i} MAC"),
        &format!(
            "Node {i} ({}): MAC address of its wired NIC (optional, Enter for none)",
            hostname.as_str()
        ),
        None,
        |s| {
            if s.is_empty() {
                return Ok(None);
            }
            let mac = MacAddr::parse(s).map_err(|e| e.to_string())?;
            // The group bit is the low bit of the first octet, shown first.
            let first = mac
                .to_string()
                .get(..2)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if first.is_some_and(|o| o & 1 == 1) {
                return Err(format!("{mac} is a multicast address, not a NIC's"));
            }
            match before.iter().find(|b| b.mac == Some(mac)) {
                Some(b) => Err(format!("{mac} is {}'s MAC already", b.hostname.as_str())),
                None => Ok(Some(mac)),
            }
        },
    )?;
    Ok(StarterNode {
        hostname,
        address,
        mac,
    })
}

/// A node address answer: `a.b.c.d` or `a.b.c.d/prefix` with the subnet's
/// prefix; a host of the subnet, not the gateway, not another node's.
fn node_address(
    s: &str,
    subnet: Ipv4Cidr,
    gateway: Ipv4Addr,
    before: &[StarterNode],
) -> Result<Ipv4Cidr, String> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address, like 192.168.1.11"))?;
    if let Some(p) = prefix
        && p != subnet.prefix().to_string()
    {
        return Err(format!(
            "the subnet is {subnet}: write {ip} or {ip}/{}",
            subnet.prefix()
        ));
    }
    let cidr = host_in(ip, subnet)?;
    if ip == gateway {
        return Err(format!("{ip} is the gateway"));
    }
    match before.iter().find(|b| b.address.addr() == ip) {
        Some(b) => Err(format!("{ip} is {}'s address already", b.hostname.as_str())),
        None => Ok(cidr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_checked_as_typed() {
        let net = Ipv4Cidr::parse("10.0.0.0/24").unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let before = [StarterNode {
            hostname: Hostname::parse("a").unwrap(),
            address: Ipv4Cidr::parse("10.0.0.11/24").unwrap(),
            mac: None,
        }];
        let why = |s| node_address(s, net, gw, &before).unwrap_err();
        assert_eq!(why("10.0.0.1"), "10.0.0.1 is the gateway");
        assert_eq!(why("10.0.0.11"), "10.0.0.11 is a's address already");
        assert_eq!(
            why("10.0.1.5"),
            "10.0.1.5 is outside the subnet 10.0.0.0/24"
        );
        assert_eq!(why("10.0.0.0"), "10.0.0.0 is the subnet's network address");
        assert_eq!(
            why("10.0.0.255"),
            "10.0.0.255 is the subnet's broadcast address"
        );
        assert!(why("10.0.0.x").contains("is not an IPv4 address"));
        assert_eq!(
            node_address("10.0.0.12/24", net, gw, &before)
                .unwrap()
                .to_string(),
            "10.0.0.12/24"
        );
        // The next offer skips the gateway and the taken .11.
        assert_eq!(
            next_free(net, gw, &before).unwrap().to_string(),
            "10.0.0.12/24"
        );
    }
}
