//! The resolved cluster: defaults merged into every node, files and
//! secrets read, every cross-field rule checked. Renderers take only these
//! types, so they never see an `Option` the profile left to a default.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::profile::firmware::Firmware;
use crate::profile::hostname::{DomainName, Hostname};
use crate::profile::ident::{
    CountryCode, DiskPath, GroupName, Locale, Mode, NtpServer, PackageName, Shell, SnapChannel,
    TargetPath, Timezone, UserName,
};
use crate::profile::inventory::{KeyboardSpec, SudoRule};
use crate::profile::net::{InterfaceName, Ipv4Cidr, Ipv4Range, MacAddr};
use crate::profile::netboot::{DiskSize, PiSerial};
use crate::profile::password::PasswordHash;
use crate::profile::platform::{Board, OsRelease};
use crate::profile::ssh::SshPublicKey;
use crate::profile::status_url::StatusUrl;

/// All nodes plus what they share.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub nodes: Vec<ResolvedNode>,
    pub microcloud: Option<MicroCloud>,
    pub k3s: Option<crate::profile::k3s::K3s>,
    /// The directory holding generated secrets and host keys.
    pub state_dir: PathBuf,
}

impl Cluster {
    pub fn node(&self, name: &str) -> Option<&ResolvedNode> {
        self.nodes.iter().find(|n| n.hostname.as_str() == name)
    }
}

#[derive(Debug, Clone)]
pub struct ResolvedNode {
    pub hostname: Hostname,
    pub domain: Option<DomainName>,
    pub image: BaseImage,
    pub board: Board,
    pub network: Network,
    pub users: Vec<User>,
    pub timezone: Option<Timezone>,
    pub locale: Option<Locale>,
    pub keyboard: Option<KeyboardSpec>,
    pub ntp: Vec<NtpServer>,
    pub wifi: Option<Wifi>,
    pub packages: Vec<PackageName>,
    pub files: Vec<ExtraFile>,
    pub ssh_password_auth: bool,
    pub storage: Storage,
    /// `allow_no_login: true`: nobody being able to log in is intended.
    pub allow_no_login: bool,
    /// The node boots over the network (`netboot:` in the profile).
    pub netboot: Option<Netboot>,
    /// Where the first-boot unit reports its state (`status_url`).
    pub status_url: Option<StatusUrl>,
    /// The bootloader preset the first boot applies (`firmware`).
    pub firmware: Option<Firmware>,
    /// k3s node labels and taints (empty without `k3s:`).
    pub node_labels: Vec<crate::profile::k3s::NodeLabel>,
    pub node_taints: Vec<crate::profile::k3s::NodeTaint>,
    /// The CPU architecture (arm64 unless a VM says amd64).
    pub arch: crate::profile::platform::Arch,
    /// A VM's settings (`board: vm`); `None` for a board.
    pub vm: Option<crate::profile::vm::Vm>,
}

/// How a netbooted node is found and where its root disk is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netboot {
    /// The board's serial; `None` when `network.mac` identifies it.
    pub serial: Option<PiSerial>,
    /// The `serve` machine, when the profile names it.
    pub server: Option<Ipv4Addr>,
    /// The size `serve` exports the node's disk at.
    pub disk_size: DiskSize,
}

impl ResolvedNode {
    /// `host.domain`, or the bare host name without a domain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}.{d}", self.hostname),
            None => self.hostname.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub os: OsRelease,
    pub source: ImageSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A catalog entry of the node's OS that runs on its board: the one the
    /// profile names (`named`), or the catalog's default.
    Catalog {
        entry: &'static crate::source::CatalogEntry,
        named: bool,
    },
    /// A download with its expected SHA-256 (of the file as downloaded).
    Url {
        url: crate::source::Url,
        sha256: crate::digest::Sha256,
    },
    /// A local image file (absolute, resolved against the profile).
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Network {
    pub interface: InterfaceName,
    pub mac: Option<MacAddr>,
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<DomainName>,
    pub uplink: Option<Uplink>,
}

/// The interface MicroCloud hands to OVN as its uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    Nic {
        name: InterfaceName,
        mac: Option<MacAddr>,
    },
    Vlan {
        id: u16,
    },
    Bridge {
        name: InterfaceName,
    },
}

impl Uplink {
    /// The interface name MicroCloud's `ovn_uplink_interface` gets.
    pub fn interface_name(&self) -> String {
        match self {
            Self::Nic { name, .. } | Self::Bridge { name } => name.to_string(),
            Self::Vlan { id } => format!("vlan{id}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: UserName,
    pub uid: u32,
    /// The profile sets `uid` (else `uid` is the default, and the build
    /// takes the next free uid of the image instead).
    pub uid_given: bool,
    pub gecos: Option<String>,
    pub groups: Vec<GroupName>,
    pub shell: Shell,
    pub sudo: SudoRule,
    pub ssh_keys: Vec<SshPublicKey>,
    pub password: Option<UserPassword>,
}

#[derive(Debug, Clone)]
pub enum UserPassword {
    Hash(PasswordHash),
    /// Opted in with `hash_password: true`; hashed at render time with the
    /// salt kept in the state directory.
    Plain(String),
}

#[derive(Debug, Clone)]
pub struct Wifi {
    pub interface: InterfaceName,
    pub ssid: String,
    pub password: Option<String>,
    pub country: Option<CountryCode>,
}

#[derive(Debug, Clone)]
pub struct ExtraFile {
    pub path: TargetPath,
    pub content: Vec<u8>,
    pub mode: Mode,
    pub owner: Option<UserName>,
    pub group: Option<GroupName>,
}

#[derive(Debug, Clone, Default)]
pub struct Storage {
    pub local: Option<DiskPath>,
    pub ceph: Vec<DiskPath>,
    pub wipe: bool,
}

#[derive(Debug, Clone)]
pub struct MicroCloud {
    pub channels: Channels,
    pub discovery: Discovery,
    pub lookup_timeout: u32,
    pub session_timeout: u32,
    pub passphrase: Option<Passphrase>,
    pub ovn: Option<Ovn>,
}

#[derive(Debug, Clone)]
pub struct Channels {
    pub lxd: SnapChannel,
    pub microceph: SnapChannel,
    pub microovn: SnapChannel,
    pub microcloud: SnapChannel,
}

impl Channels {
    /// The four snaps in install order, each with its channel.
    pub fn snaps(&self) -> [(&'static str, &SnapChannel); 4] {
        [
            ("lxd", &self.lxd),
            ("microceph", &self.microceph),
            ("microovn", &self.microovn),
            ("microcloud", &self.microcloud),
        ]
    }
}

/// How joiners find the initiator.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// Multicast on `lookup_subnet`; the initiator is named.
    Multicast {
        initiator: Hostname,
        lookup_subnet: Ipv4Cidr,
    },
    /// Unicast to the initiator's address; every system lists its address.
    Unicast { initiator_address: Ipv4Addr },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    Known(String),
    /// `generate: true`: read from (or created in) the state directory.
    Generated,
}

#[derive(Debug, Clone)]
pub struct Ovn {
    pub ipv4_gateway: Ipv4Cidr,
    pub ipv4_range: Option<Ipv4Range>,
    pub dns_servers: Vec<Ipv4Addr>,
}
