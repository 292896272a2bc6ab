//! The inventory file as written by the user (`homelab.yaml`): serde types
//! only, every struct `deny_unknown_fields`, every value already a parsed
//! newtype. Merging defaults into nodes and cross-checks happen in
//! `resolve`; the format is documented in docs/PROFILE.md.
//!
//! A node and `defaults` share one type, `NodeSpec`: any field may be set
//! in `defaults` and overridden per node, except the few that identify one
//! machine (hostname, address, MAC, netboot), which `resolve` refuses in `defaults`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::profile::firmware::PresetName;
use crate::profile::hostname::{DomainName, Hostname};
use crate::profile::ident::{
    CountryCode, DiskPath, Gecos, GroupName, Locale, Mode, NtpServer, PackageName, Shell,
    SnapChannel, TargetPath, Timezone, UserName, XkbName,
};
use crate::profile::net::{InterfaceName, Ipv4Cidr, Ipv4Range, MacAddr};
use crate::profile::netboot::{DiskSize, PiSerial};
use crate::profile::password::PasswordHash;
use crate::profile::platform::{Board, OsRelease};
use crate::profile::ssh::SshPublicKey;
use crate::profile::status_url::StatusUrl;

/// The whole inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Where generated secrets and host keys are kept, relative to the
    /// profile's directory [default: .homelab-state].
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Values every node gets unless it sets its own.
    #[serde(default)]
    pub defaults: NodeSpec,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub microcloud: Option<MicroCloudSpec>,
    /// A k3s cluster instead of MicroCloud (docs/PROFILE.md, "k3s").
    #[serde(default)]
    pub k3s: Option<crate::profile::k3s::K3sSpec>,
    /// Positions and the mistakes met while reading (not a key of the file).
    #[serde(skip)]
    pub source: crate::profile::salvage::Source,
}

/// One node, or the defaults for all nodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub hostname: Option<Hostname>,
    pub domain: Option<DomainName>,
    pub image: Option<ImageSpec>,
    pub board: Option<Board>,
    pub network: Option<NetworkSpec>,
    pub users: Option<Vec<UserSpec>>,
    pub timezone: Option<Timezone>,
    pub locale: Option<Locale>,
    pub keyboard: Option<KeyboardSpec>,
    pub ntp: Option<Vec<NtpServer>>,
    pub wifi: Option<WifiSpec>,
    pub packages: Option<Vec<PackageName>>,
    pub files: Option<Vec<ExtraFileSpec>>,
    /// Allow SSH logins with a password [default: false].
    pub ssh_password_auth: Option<bool>,
    /// Disks MicroCloud may use on this node.
    pub storage: Option<StorageSpec>,
    /// Build the node even though no user can log in (no user has an SSH
    /// key or a password) [default: false].
    pub allow_no_login: Option<bool>,
    /// Boot this node over the network (`serve`) instead of from its own
    /// disk; per node only, a serial names one board.
    pub netboot: Option<NetbootSpec>,
    /// `http://HOST[:PORT]`: the first-boot unit reports each state change
    /// there (the status server of `serve`).
    pub status_url: Option<StatusUrl>,
    /// The Raspberry Pi bootloader configuration the first boot applies.
    pub firmware: Option<FirmwareSpec>,
    /// k3s `--node-label`s (`key=value`), with a `k3s:` section only.
    pub node_labels: Option<Vec<crate::profile::k3s::NodeLabel>>,
    /// k3s `--node-taint`s (`key=value:Effect`), with a `k3s:` section only.
    pub node_taints: Option<Vec<crate::profile::k3s::NodeTaint>>,
    /// The CPU architecture: arm64 (every board) or amd64 (`board: vm`).
    pub arch: Option<crate::profile::platform::Arch>,
    /// A VM's hypervisor settings (`board: vm` only).
    pub vm: Option<crate::profile::vm::VmSpec>,
}

/// `firmware: {boot_order: PRESET}` (docs/PROFILE.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSpec {
    /// A preset of `firmware/` by its file stem, e.g. `boot-usb-sd`;
    /// spanned, so a preset the board cannot use is refused at its place.
    pub boot_order: serde_saphyr::Spanned<PresetName>,
}

/// A Raspberry Pi 4/5 that boots over the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetbootSpec {
    /// The board's serial (8 hex digits; a leading `10000000` is dropped);
    /// may be left out when `network.mac` identifies the board.
    pub serial: Option<PiSerial>,
    /// The address of the machine running `serve`, written into the
    /// node's `nbdroot=`; without it `serve` writes its own address into
    /// `cmdline.txt` as it serves it.
    pub server: Option<Ipv4Addr>,
    /// The size `serve` gives the node's disk (default 16GiB): zeros past
    /// the image that the first boot grows the root into.
    pub disk_size: Option<DiskSize>,
}

/// The base image: its OS (which decides how the node is configured) and
/// where it comes from: the catalog (default), a URL with its checksum, or
/// a local file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub os: OsRelease,
    pub catalog: Option<String>,
    pub url: Option<String>,
    pub sha256: Option<String>,
    /// Spanned: a missing file is reported at its line and column.
    pub path: Option<serde_saphyr::Spanned<PathBuf>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Interface name to match, or to give the NIC when `mac` is set
    /// [default: eth0].
    pub interface: Option<InterfaceName>,
    /// Match the NIC by MAC address and rename it to `interface`.
    pub mac: Option<MacAddr>,
    /// The node's static address with prefix, e.g. 192.168.1.11/24.
    pub address: Option<Ipv4Cidr>,
    /// The subnet every address must lie in (usually set in defaults).
    pub subnet: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Option<Vec<Ipv4Addr>>,
    pub search: Option<Vec<DomainName>>,
    /// An interface for MicroCloud's OVN uplink network.
    pub uplink: Option<UplinkSpec>,
}

/// Exactly one of `nic`, `vlan` or `bridge`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSpec {
    /// A second NIC, brought up with no address.
    pub nic: Option<InterfaceName>,
    /// Match that second NIC by MAC (with `nic`).
    pub mac: Option<MacAddr>,
    /// A VLAN id on the main NIC; the VLAN interface has no address.
    pub vlan: Option<u16>,
    /// A bridge that takes over the main NIC and its address.
    pub bridge: Option<InterfaceName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: UserName,
    pub gecos: Option<Gecos>,
    #[serde(default)]
    pub groups: Vec<GroupName>,
    pub shell: Option<Shell>,
    #[serde(default)]
    pub sudo: SudoRule,
    #[serde(default)]
    pub ssh_keys: Vec<SshPublicKey>,
    /// authorized_keys-style files, relative to the profile (or `~/…`).
    #[serde(default)]
    pub ssh_key_files: Vec<PathBuf>,
    pub password_hash: Option<PasswordHash>,
    /// A plaintext password, hashed at build time; needs `hash_password`.
    pub password: Option<SecretSpec>,
    /// Opt-in: allow `password` and hash it at build time.
    #[serde(default)]
    pub hash_password: bool,
    pub uid: Option<u32>,
    /// Opt-in: allow a `uid` below 1000, the system accounts' range
    /// [default: false].
    #[serde(default)]
    pub system_uid: bool,
}

/// What `sudo` may do for a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SudoRule {
    /// No sudo rule.
    #[default]
    None,
    /// `ALL=(ALL:ALL) ALL`: sudo asks for the user's password.
    Password,
    /// `ALL=(ALL) NOPASSWD:ALL`.
    Nopasswd,
}

/// A secret that is not written in the profile: exactly one of an
/// environment variable, a file (relative to the profile), an inline value,
/// or `generate: true` (created once in the state directory).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
    pub value: Option<String>,
    pub generate: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyboardSpec {
    pub layout: XkbName,
    pub model: Option<XkbName>,
    pub variant: Option<XkbName>,
    pub options: Option<XkbName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiSpec {
    pub ssid: String,
    pub password: Option<SecretSpec>,
    pub country: Option<CountryCode>,
    /// [default: wlan0]
    pub interface: Option<InterfaceName>,
}

/// A file to place in the root file system: `content` inline or `source`
/// (a file relative to the profile).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFileSpec {
    pub path: TargetPath,
    pub content: Option<String>,
    pub source: Option<PathBuf>,
    /// [default: "0644"]
    pub mode: Option<Mode>,
    /// [default: root]
    pub owner: Option<UserName>,
    /// [default: the owner's group]
    pub group: Option<GroupName>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// A disk for LXD's local storage pool.
    pub local: Option<DiskPath>,
    /// Disks for MicroCeph.
    #[serde(default)]
    pub ceph: Vec<DiskPath>,
    /// Let MicroCloud wipe the disks [default: false].
    #[serde(default)]
    pub wipe: bool,
}

/// Cluster-wide MicroCloud settings; without this section no MicroCloud is
/// set up (the first-boot unit still runs for packages on Armbian).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicroCloudSpec {
    #[serde(default)]
    pub channels: ChannelSpec,
    /// The hostname of the node that initiates (multicast discovery).
    pub initiator: Option<Hostname>,
    /// The address of the node that initiates (no multicast).
    pub initiator_address: Option<Ipv4Addr>,
    /// The subnet searched for members (with `initiator`).
    pub lookup_subnet: Option<Ipv4Cidr>,
    /// Seconds joiners wait for the initiator [default: 600].
    pub lookup_timeout: Option<u32>,
    /// Seconds the join session stays open [default: 3600].
    pub session_timeout: Option<u32>,
    pub session_passphrase: Option<SecretSpec>,
    pub ovn: Option<OvnSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub lxd: Option<SnapChannel>,
    pub microceph: Option<SnapChannel>,
    pub microovn: Option<SnapChannel>,
    pub microcloud: Option<SnapChannel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvnSpec {
    /// The uplink's gateway with its prefix, e.g. 192.168.1.1/24.
    pub ipv4_gateway: Ipv4Cidr,
    /// Addresses OVN may hand out on the uplink.
    pub ipv4_range: Option<Ipv4Range>,
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
}
