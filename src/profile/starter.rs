//! The commented starter profile `init` writes: three Raspberry Pi 4 nodes
//! on Ubuntu 24.04 forming a MicroCloud, with the subnet and gateway of the
//! host's default route and the user's SSH public keys when known. What it
//! writes passes `check` and `render` as it stands (the MicroCloud
//! passphrase is generated into the state directory).

use std::net::Ipv4Addr;

use crate::profile::hostname::Hostname;
use crate::profile::ident::{CountryCode, UserName};
use crate::profile::net::{Ipv4Cidr, MacAddr};
use crate::profile::platform::Arch;
use crate::profile::platform::{Board, OsRelease};
use crate::profile::ssh::SshPublicKey;
use crate::render::yaml::to_yaml;
use crate::source::catalog::CatalogEntry;

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

/// `line` with `# comment` from column 34 on, as the starter aligns them;
/// a longer line keeps a space before the `#`, which YAML needs.
fn commented(line: &str, comment: &str) -> String {
    format!("{line:<32} # {comment}\n")
}

/// The base image a starter profile names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StarterImage {
    /// `os:` alone: the catalog's default entry for the OS and board.
    OsDefault(OsRelease),
    /// A catalog entry, by name.
    Catalog(&'static CatalogEntry),
    /// A local image file, spelled as the profile will read it (relative
    /// to the profile's directory, absolute, or `~/…`).
    Path { os: OsRelease, path: String },
}

/// One node of the starter profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterNode {
    pub hostname: Hostname,
    pub address: Ipv4Cidr,
    pub mac: Option<MacAddr>,
}

/// The Wi-Fi every node joins (DHCP, beside the static wired address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterWifi {
    pub ssid: String,
    /// The secret file holding the passphrase, relative to the profile;
    /// `None` for an open network.
    pub password_file: Option<String>,
    pub country: Option<CountryCode>,
}

/// Everything the starter profile says about the cluster: what `init`
/// detected, or what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Starter {
    pub image: StarterImage,
    pub board: Board,
    /// The nodes' subnet (host bits clear) and its gateway.
    pub subnet: Ipv4Cidr,
    pub gateway: Ipv4Addr,
    /// Where the subnet came from, shown beside it.
    pub subnet_note: &'static str,
    pub nodes: Vec<StarterNode>,
    pub wifi: Option<StarterWifi>,
}

impl Starter {
    /// The non-interactive starter: three Pi 4s on Ubuntu 24.04 in the
    /// subnet of the default route (or 192.168.1.0/24 when there is none).
    pub fn detected(d: &Detected) -> Self {
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
        let subnet_note = if d.route.is_some() && addrs.len() == 3 {
            "taken from this machine's default route"
        } else {
            "no default route found: adjust to your LAN"
        };
        let nodes = addrs
            .into_iter()
            .enumerate()
            .filter_map(|(i, address)| {
                Some(StarterNode {
                    hostname: Hostname::parse(&format!("node{}", i + 1)).ok()?,
                    address,
                    mac: None,
                })
            })
            .collect();
        Self {
            image: StarterImage::OsDefault(OsRelease::Ubuntu2404),
            board: Board::RaspberryPi4,
            subnet: net.network(),
            gateway,
            subnet_note,
            nodes,
            wifi: None,
        }
    }
}

/// The starter profile text `init --yes` writes.
pub fn starter_profile(d: &Detected) -> String {
    render(d, &Starter::detected(d))
}

/// The `image:` and `board:` lines.
fn image_lines(s: &Starter) -> String {
    let board = commented(
        &format!("  board: {}", s.board),
        "rpi4, rpi5 or an Armbian board (rock-5b, …)",
    );
    let image = match &s.image {
        StarterImage::OsDefault(os) => commented(
            &format!("    os: {os}"),
            "ubuntu-22.04, ubuntu-24.04, ubuntu-26.04 or armbian",
        ),
        StarterImage::Catalog(e) => {
            commented(&format!("    os: {}", e.os), "the catalog entry's OS")
                + &commented(
                    &format!("    catalog: {}", e.name),
                    "`homelab-image images` lists them",
                )
        }
        StarterImage::Path { os, path } => {
            commented(&format!("    os: {os}"), "the OS of the image file below")
                + &format!("    path: {}\n", scalar(path))
        }
    };
    // A vm is amd64 unless it says otherwise: an arm64 cloud image names
    // its architecture, or the node would not match its own catalog entry.
    let arch = match &s.image {
        StarterImage::Catalog(e) if s.board.is_vm() && e.arch != Arch::Amd64 => commented(
            &format!("  arch: {}", e.arch),
            "the catalog image's architecture",
        ),
        _ => String::new(),
    };
    format!("  image:\n{image}{board}{arch}")
}

/// The `wifi:` section of `defaults`, empty without Wi-Fi.
fn wifi_lines(w: Option<&StarterWifi>) -> String {
    let Some(w) = w else {
        return String::new();
    };
    let mut s = commented("  wifi:", "DHCP on wlan0, beside the wired address");
    s.push_str(&format!("    ssid: {}\n", scalar(&w.ssid)));
    match &w.password_file {
        Some(f) => s.push_str(&commented(
            &format!("    password: {{file: {}}}", scalar(f)),
            "0600, git-ignored",
        )),
        None => s.push_str("    # no password: an open network\n"),
    }
    if let Some(c) = &w.country {
        s.push_str(&commented(
            &format!("    country: {}", c.as_str()),
            "Wi-Fi regulatory domain",
        ));
    }
    s
}

/// The starter profile text for `s`, with the detected user and keys.
pub fn render(d: &Detected, s: &Starter) -> String {
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
    for n in &s.nodes {
        nodes.push_str(&format!(
            "  - hostname: {}\n    network:\n      address: {}\n",
            n.hostname.as_str(),
            n.address
        ));
        if let Some(mac) = n.mac {
            // Quoted: YAML 1.1 reads all-digit colon groups as base 60.
            nodes.push_str(&format!("      mac: \"{mac}\"\n"));
        }
    }
    let initiator = s.nodes.first().map_or("node1", |n| n.hostname.as_str());
    format!(
        "# homelab.yaml: the inventory homelab-image builds one image per node from.
# Every field is described in docs/PROFILE.md.
#   homelab-image check                  validate this file
#   homelab-image render --node {initiator:<8} show what {initiator}'s image gets
#   homelab-image build --all            build out/{initiator}.img, …

# Values every node gets unless the node sets its own.
defaults:
{image}  domain: home.arpa
  timezone: Etc/UTC
  locale: en_US.UTF-8
  ntp: [pool.ntp.org]
  network:
    interface: eth0              # or match a NIC per node with `mac:`
    subnet: {subnet:<21}# {note}
    gateway: {gateway}
    dns: [{gateway}]
  users:
    - name: {user}
      groups: [adm, sudo]
      sudo: nopasswd             # none, password or nopasswd
{keys}{wifi}  # MicroCloud disks (whole disks, no partitions); uncomment to use:
  # storage:                    # stable names (ls -l /dev/disk/by-id), not /dev/sdX
  #   local: /dev/disk/by-id/usb-…     # LXD's local storage pool
  #   ceph: [/dev/disk/by-id/usb-…]    # MicroCeph (needs disks on 3 nodes)

nodes:
{nodes}
# One MicroCloud over all nodes, set up on first boot.
microcloud:
  initiator: {initiator}
  lookup_subnet: {subnet}
  session_passphrase:
    generate: true               # kept in .homelab-state/microcloud-passphrase
",
        image = image_lines(s),
        subnet = s.subnet.to_string(),
        note = s.subnet_note,
        gateway = s.gateway,
        wifi = wifi_lines(s.wifi.as_ref()),
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

    /// Compares with a committed file (`UPDATE_GOLDEN=1` rewrites it).
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/starter")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert!(want == actual, "{} differs:\n{actual}", path.display());
    }

    /// `init --yes` writes today's bytes: with a route, a key and a user,
    /// and with nothing detected.
    #[test]
    fn the_non_interactive_starter_keeps_its_bytes() {
        let key = SshPublicKey::parse_many(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 me@host\n",
        )
        .unwrap();
        let d = Detected {
            route: Some((
                Ipv4Cidr::parse("10.1.2.0/24").unwrap(),
                Ipv4Addr::new(10, 1, 2, 1),
            )),
            ssh_keys: key,
            user: Some(UserName::parse("alice").unwrap()),
        };
        golden("detected.yaml", &starter_profile(&d));
        golden(
            "nothing-detected.yaml",
            &starter_profile(&Detected::default()),
        );
    }

    /// An arm64 cloud image's starter says `arch: arm64` (a vm is amd64
    /// otherwise, and would not match its own catalog entry).
    #[test]
    fn an_arm64_vm_catalog_image_writes_its_arch() {
        static ARM_CLOUD: CatalogEntry = CatalogEntry {
            name: "test-cloud-arm64",
            os: crate::profile::platform::OsRelease::Ubuntu2404,
            boards: &["vm"],
            arch: Arch::Arm64,
            publisher: crate::source::catalog::Publisher::Ubuntu,
            locator: crate::source::catalog::Locator::UbuntuRelease {
                dir: "https://example.net/",
                series: "24.04",
            },
            description: "test",
        };
        let d = Detected::default();
        let mut s = Starter::detected(&d);
        s.image = StarterImage::Catalog(&ARM_CLOUD);
        s.board = Board::Vm;
        let text = render(&d, &s);
        assert!(text.contains("\n  arch: arm64"), "{text}");
        s.board = Board::RaspberryPi4;
        assert!(!render(&d, &s).contains("arch:"));
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
