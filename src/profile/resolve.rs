//! `resolve`: from the `Profile` as written to the `Cluster` renderers use.
//! Defaults are merged into each node (a node's value wins; lists replace
//! rather than append; `network` and `uplink` merge field by field), files
//! and secrets are read, and every per-node rule is checked. Problems are
//! collected into one `Report`; cross-node and MicroCloud rules live in
//! `validate`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::profile::hostname::Hostname;
use crate::profile::ident::Shell;
use crate::profile::inventory::{
    ExtraFileSpec, ImageSpec, NetworkSpec, NodeSpec, Profile, SecretSpec, StorageSpec, UplinkSpec,
    UserSpec,
};
use crate::profile::load::Position;
use crate::profile::locate;
use crate::profile::named_file::{self, Kind};
use crate::profile::net::InterfaceName;
use crate::profile::platform::{Arch, Board, OsRelease};
use crate::profile::problem::{Problem, Report};
use crate::profile::resolved::{
    BaseImage, Cluster, ExtraFile, ImageSource, Netboot, Network, ResolvedNode, Storage, Uplink,
    User, UserPassword, Wifi,
};
use crate::profile::ssh::SshPublicKey;
use crate::profile::uid;
use crate::profile::validate;

/// The state directory's default name, next to the profile.
pub const DEFAULT_STATE_DIR: &str = ".homelab-state";
/// The first uid given to users without an explicit `uid`.
pub const FIRST_UID: u32 = 1000;

/// Looks up an environment variable (a closure, so tests need no real
/// environment).
pub type EnvLookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where relative paths, `~` and environment variables are looked up.
pub struct Context<'a> {
    pub profile_path: PathBuf,
    pub home: Option<PathBuf>,
    pub env: EnvLookup<'a>,
}

impl Context<'static> {
    /// The real process environment.
    pub fn from_process(profile_path: &Path) -> Self {
        Self {
            profile_path: profile_path.to_owned(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            env: Box::new(|name| std::env::var(name).ok()),
        }
    }
}

impl Context<'_> {
    pub fn profile_dir(&self) -> PathBuf {
        match self.profile_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// `~/x` → `$HOME/x`; relative → next to the profile.
    pub fn path(&self, p: &Path) -> PathBuf {
        if let (Ok(rest), Some(home)) = (p.strip_prefix("~"), &self.home) {
            return home.join(rest);
        }
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.profile_dir().join(p)
        }
    }
}

/// A resolved cluster and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub cluster: Cluster,
    pub warnings: Vec<Problem>,
}

/// A secret's value once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    Text(String),
    Generated,
}

/// Merges, reads and checks everything; all errors at once.
pub fn resolve(profile: &Profile, ctx: &Context<'_>) -> Result<Resolved, Report> {
    let mut report = Report::new(ctx.profile_path.clone());
    let source = &profile.source;
    check_defaults(&profile.defaults, &mut report);
    if profile.nodes.is_empty() && !source.nodes_dropped {
        report.error(None, "nodes", "the profile lists no nodes");
    }
    // Each node's index in the file: they differ from the profile's when
    // a node could not be read at all.
    let origin = |i: usize| source.origin.get(i).copied().unwrap_or(i);
    let labels: Vec<(String, usize)> = profile
        .nodes
        .iter()
        .enumerate()
        .map(|(i, spec)| (node_label(spec, origin(i)), origin(i)))
        .collect();
    let mut resolved_origin = Vec::new();
    let nodes: Vec<ResolvedNode> = profile
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let node = resolve_node(origin(i), spec, &profile.defaults, ctx, &mut report)?;
            resolved_origin.push(origin(i));
            Some(node)
        })
        .collect();
    let all_resolved = nodes.len() == profile.nodes.len() && !source.nodes_dropped;
    let hostname_at = locate::hostname_positions(source, &resolved_origin);
    validate::cross_node(&nodes, &hostname_at, &mut report);
    validate::node_settings(&nodes, &mut report);
    let microcloud = profile
        .microcloud
        .as_ref()
        .and_then(|mc| validate::microcloud(mc, &nodes, all_resolved, ctx, &mut report));
    for n in &nodes {
        crate::profile::k3s_rules::duplicate_keys(n, &mut report);
    }
    let k3s = match &profile.k3s {
        Some(spec) => crate::profile::k3s_rules::check(
            spec,
            &nodes,
            all_resolved,
            profile.microcloud.is_some(),
            ctx,
            &mut report,
        ),
        // A `k3s:` section that could not be read is reported already.
        None if !source
            .removed
            .iter()
            .any(|r| crate::profile::tree::join(r) == "k3s") =>
        {
            crate::profile::k3s_rules::labels_without_k3s(&nodes, &mut report);
            None
        }
        None => None,
    };
    locate::finish(&mut report, source, &labels);
    report.nodes = locate::file_nodes(source, &labels);
    if report.has_errors() {
        return Err(report);
    }
    let state_dir = ctx.path(
        profile
            .state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
    );
    Ok(Resolved {
        cluster: Cluster {
            nodes,
            microcloud,
            k3s,
            state_dir,
        },
        warnings: report.warnings,
    })
}

/// Fields that identify one machine make no sense as defaults.
fn check_defaults(d: &NodeSpec, report: &mut Report) {
    let msg = "identifies one machine, so it belongs in a node, not in defaults";
    if d.hostname.is_some() {
        report.error(None, "defaults.hostname", msg);
    }
    if d.netboot.is_some() {
        report.error(None, "defaults.netboot", msg);
    }
    if d.vm.as_ref().is_some_and(|v| v.vmid.is_some()) {
        report.error(None, "defaults.vm.vmid", msg);
    }
    if let Some(net) = &d.network {
        if net.address.is_some() {
            report.error(None, "defaults.network.address", msg);
        }
        if net.mac.is_some() {
            report.error(None, "defaults.network.mac", msg);
        }
        if net.uplink.as_ref().is_some_and(|u| u.mac.is_some()) {
            report.error(None, "defaults.network.uplink.mac", msg);
        }
    }
}

/// Per-node reporting helper: every problem names the node.
struct NodeReport<'r> {
    label: String,
    report: &'r mut Report,
}

impl NodeReport<'_> {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.report.error(Some(&self.label), field, message);
    }
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.report.warn(Some(&self.label), field, message);
    }
    fn error_at(&mut self, field: impl Into<String>, at: Position, message: impl Into<String>) {
        self.report.error_at(Some(&self.label), field, at, message);
    }
}

/// How problems name a node: its hostname, else its place in `nodes`.
fn node_label(spec: &NodeSpec, index: usize) -> String {
    spec.hostname
        .as_ref()
        .map_or_else(|| format!("nodes[{index}]"), Hostname::to_string)
}

fn resolve_node(
    index: usize,
    spec: &NodeSpec,
    defaults: &NodeSpec,
    ctx: &Context<'_>,
    report: &mut Report,
) -> Option<ResolvedNode> {
    let label = node_label(spec, index);
    let mut r = NodeReport { label, report };
    let hostname = spec.hostname.clone();
    if hostname.is_none() {
        r.error("hostname", "every node needs a hostname");
    }
    let choice = pick(&spec.image, &defaults.image)
        .and_then(|i| resolve_image(i, ctx, &mut r))
        .or_else(|| {
            r.error("image", "no base image: set `image` here or in defaults");
            None
        });
    let board = pick(&spec.board, &defaults.board).cloned();
    let arch = resolve_arch(board.as_ref(), pick(&spec.arch, &defaults.arch), &mut r);
    let image = match (&board, choice) {
        (None, _) => {
            r.error("board", "no board: set `board` here or in defaults");
            None
        }
        (Some(Board::Vm), Some((os @ OsRelease::Armbian, _))) => {
            r.error(
                "board",
                format!(
                    "{os} publishes no cloud image: a vm node runs an Ubuntu cloud image \
                     (os: ubuntu-24.04 or ubuntu-26.04)"
                ),
            );
            None
        }
        (Some(b), Some((os, _)))
            if os != OsRelease::Armbian && !b.is_raspberry_pi() && !b.is_vm() =>
        {
            r.error(
                "board",
                format!("{os} images run only on rpi4 or rpi5, not on {b}"),
            );
            None
        }
        (Some(b), Some((os, ImageChoice::Catalog(name)))) => {
            choose_catalog(name.as_deref(), os, b, arch, &mut r)
                .map(|source| BaseImage { os, source })
        }
        (_, Some((os, ImageChoice::Done(source)))) => Some(BaseImage { os, source }),
        (_, None) => None,
    };
    let mut network = resolve_network(spec.network.as_ref(), defaults.network.as_ref(), &mut r);
    let vm = resolve_vm(spec, defaults, board.as_ref(), &mut r);
    // The hypervisor gives the NIC this MAC: Proxmox and libvirt refuse a
    // group address.
    if let (Some(_), Some(mac)) = (&vm, network.as_ref().and_then(|n| n.mac))
        && mac.is_multicast()
    {
        r.error(
            "network.mac",
            format!(
                "{mac} is a multicast address: a VM's NIC needs a unicast one \
                 (an even first octet), like 52:54:00:12:34:56"
            ),
        );
    }
    // A VM's seed matches its NIC by MAC, and proxmox.sh gives the NIC
    // that MAC: one is derived from the hostname when the profile has none.
    if let (Some(_), Some(net), Some(h)) = (&vm, network.as_mut(), &hostname)
        && net.mac.is_none()
    {
        net.mac = Some(crate::profile::vm::derived_mac(h));
    }
    let users = resolve_users(
        pick(&spec.users, &defaults.users).map_or(&[][..], Vec::as_slice),
        ctx,
        &mut r,
    );
    let os = image.as_ref().map(|i| i.os);
    let files = resolve_files(spec, defaults, os, &users, ctx, &mut r);
    if board.as_ref().is_some_and(Board::is_vm) && pick(&spec.wifi, &defaults.wifi).is_some() {
        r.error(
            "wifi",
            "a vm node has no Wi-Fi: its NIC is virtual, on vm.bridge",
        );
    }
    let wifi = pick(&spec.wifi, &defaults.wifi).and_then(|w| {
        let password = match &w.password {
            Some(s) => match read_secret(s, "wifi.password", false, ctx, &mut r)? {
                SecretValue::Text(t) => Some(t),
                SecretValue::Generated => None,
            },
            None => None,
        };
        if w.ssid.is_empty() || w.ssid.len() > 32 {
            r.error("wifi.ssid", "an SSID is 1 to 32 bytes");
        }
        // IEEE 802.11i: 8 to 63 characters from ASCII 32-126; anything else
        // is refused by wpa_supplicant, and a newline would end its line.
        if password.as_ref().is_some_and(|p| {
            !(8..=63).contains(&p.len()) || !p.bytes().all(|b| (0x20..=0x7e).contains(&b))
        }) {
            r.error(
                "wifi.password",
                "a WPA passphrase is 8 to 63 printable ASCII characters",
            );
        }
        Some(Wifi {
            interface: w.interface.clone().unwrap_or_else(|| iface("wlan0")),
            ssid: w.ssid.clone(),
            password,
            country: w.country.clone(),
        })
    });
    let storage = resolve_storage(pick(&spec.storage, &defaults.storage), &mut r);
    let keyboard = pick(&spec.keyboard, &defaults.keyboard).cloned();
    validate::names(
        &r.label,
        pick(&spec.timezone, &defaults.timezone),
        keyboard.as_ref(),
        r.report,
    );
    let netboot = spec.netboot.as_ref().map(|nb| Netboot {
        serial: nb.serial,
        server: nb.server,
        disk_size: nb
            .disk_size
            .unwrap_or(crate::profile::netboot::DiskSize::DEFAULT),
    });
    if netboot.is_some() {
        check_netboot(board.as_ref(), image.as_ref(), &mut r);
    }
    if let (Some(nb), Some(net)) = (&netboot, &network)
        && nb.serial.is_none()
        && net.mac.is_none()
    {
        r.error(
            "netboot",
            "a netbooted node needs `serial` (the Pi's serial, its TFTP directory) \
             or `network.mac` to be recognised by",
        );
    }
    let firmware = pick(&spec.firmware, &defaults.firmware).and_then(|f| {
        crate::profile::firmware::resolve(&f.boot_order, board.as_ref(), netboot.is_some())
            .map_err(|(at, why)| r.error_at("firmware.boot_order", at, why))
            .ok()
    });
    let node = ResolvedNode {
        hostname: hostname?,
        domain: pick(&spec.domain, &defaults.domain).cloned(),
        image: image?,
        board: board?,
        network: network?,
        users,
        timezone: pick(&spec.timezone, &defaults.timezone).cloned(),
        locale: pick(&spec.locale, &defaults.locale).cloned(),
        keyboard,
        ntp: pick(&spec.ntp, &defaults.ntp).cloned().unwrap_or_default(),
        wifi,
        packages: pick(&spec.packages, &defaults.packages)
            .cloned()
            .unwrap_or_default(),
        files,
        ssh_password_auth: pick(&spec.ssh_password_auth, &defaults.ssh_password_auth)
            .copied()
            .unwrap_or(false),
        storage,
        allow_no_login: pick(&spec.allow_no_login, &defaults.allow_no_login)
            .copied()
            .unwrap_or(false),
        netboot,
        status_url: pick(&spec.status_url, &defaults.status_url).cloned(),
        firmware,
        node_labels: pick(&spec.node_labels, &defaults.node_labels)
            .cloned()
            .unwrap_or_default(),
        node_taints: pick(&spec.node_taints, &defaults.node_taints)
            .cloned()
            .unwrap_or_default(),
        arch,
        vm,
    };
    let file_specs = pick(&spec.files, &defaults.files).map_or(&[][..], Vec::as_slice);
    check_file_paths(&node, file_specs, &mut r);
    Some(node)
}

/// A node's architecture: every board is arm64; a VM is amd64 unless the
/// profile says arm64.
fn resolve_arch(board: Option<&Board>, given: Option<&Arch>, r: &mut NodeReport<'_>) -> Arch {
    match (board, given) {
        (Some(Board::Vm), None) => Arch::Amd64,
        (Some(b), Some(&Arch::Amd64)) if !b.is_vm() => {
            r.error(
                "arch",
                format!("{b} is an arm64 board; only a vm node can be amd64"),
            );
            Arch::Arm64
        }
        (_, given) => given.copied().unwrap_or_default(),
    }
}

/// `vm:` (merged over the defaults') for a vm node; refused on a board.
fn resolve_vm(
    spec: &NodeSpec,
    defaults: &NodeSpec,
    board: Option<&Board>,
    r: &mut NodeReport<'_>,
) -> Option<crate::profile::vm::Vm> {
    let merged = crate::profile::vm::merge(spec.vm.as_ref(), defaults.vm.as_ref());
    match board {
        Some(Board::Vm) => match crate::profile::vm::resolve(merged.as_ref()) {
            Ok(vm) => Some(vm),
            Err(problems) => {
                for (field, why) in problems {
                    r.error(field, why);
                }
                None
            }
        },
        Some(b) => {
            if spec.vm.is_some() {
                r.error(
                    "vm",
                    format!("`vm` is for `board: vm` nodes; this node is a {b}"),
                );
            }
            None
        }
        None => None,
    }
}

/// Only a Raspberry Pi 4/5 boots from the network this way (its EEPROM
/// bootloader does DHCP, TFTP by serial), and only an image whose kernel
/// command line we edit can be told to mount its root over NBD.
fn check_netboot(board: Option<&Board>, image: Option<&BaseImage>, r: &mut NodeReport<'_>) {
    if let Some(b) = board.filter(|b| !b.is_raspberry_pi()) {
        r.error(
            "netboot",
            format!("only rpi4 and rpi5 boot from the network, not {b}"),
        );
    }
    match image.map(|i| i.os) {
        Some(os @ OsRelease::Armbian) => r.error(
            "netboot",
            format!("{os} images cannot be netbooted: use an Ubuntu image"),
        ),
        // targets.md §4.4: a stock 22.04 initramfs has no nbd-client; a
        // custom image may, so this is only a warning.
        Some(os @ OsRelease::Ubuntu2204) => r.warn(
            "netboot",
            format!(
                "stock {os} images have no nbd-client in their initramfs and \
                 cannot mount a network root; use ubuntu-24.04 or later, or an \
                 image built with nbd-client"
            ),
        ),
        _ => {}
    }
}

/// `files[]` entries may not land on, above or inside what homelab-image
/// writes itself, nor one inside another: caught here, the build never
/// meets them.
fn check_file_paths(node: &ResolvedNode, specs: &[ExtraFileSpec], r: &mut NodeReport<'_>) {
    let reserved = crate::render::reserved::paths(node);
    for (i, f) in specs.iter().enumerate() {
        let field = format!("files[{i}].path");
        if let Some(why) = crate::render::reserved::collision(f.path.as_str(), &reserved) {
            r.error(field, why);
            continue;
        }
        let path = f.path.as_str();
        if let Some(outer) = specs.iter().map(|o| o.path.as_str()).find(|o| {
            path.strip_prefix(o)
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            r.error(
                field,
                format!("{path} is inside {outer}, another entry of files, which is a file"),
            );
        }
    }
}

/// The node's value, else the default.
fn pick<'a, T>(node: &'a Option<T>, default: &'a Option<T>) -> Option<&'a T> {
    node.as_ref().or(default.as_ref())
}

fn iface(name: &str) -> InterfaceName {
    // A literal known to satisfy InterfaceName's rules.
    InterfaceName::parse(name).unwrap_or_else(|_| unreachable!("{name} is a valid interface name"))
}

/// A node's `image:` as written, its URL and checksum parsed; a catalog
/// choice is looked up once the board is known ([`choose_catalog`]).
enum ImageChoice {
    Catalog(Option<String>),
    Done(ImageSource),
}

fn resolve_image(
    spec: &ImageSpec,
    ctx: &Context<'_>,
    r: &mut NodeReport<'_>,
) -> Option<(OsRelease, ImageChoice)> {
    let given = [
        spec.catalog.is_some(),
        spec.url.is_some(),
        spec.path.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        r.error("image", "set at most one of catalog, url and path");
        return None;
    }
    let choice = match (&spec.catalog, &spec.url, &spec.path) {
        (_, Some(url), _) => {
            let Some(sha) = &spec.sha256 else {
                r.error("image.sha256", "an image url needs its sha256 checksum");
                return None;
            };
            let Ok(sha256) = sha.parse::<crate::digest::Sha256>() else {
                r.error("image.sha256", "a sha256 checksum is 64 hexadecimal digits");
                return None;
            };
            let Ok(url) = crate::source::http::parse_url(url) else {
                r.error("image.url", format!("{url:?} is not an http(s) URL"));
                return None;
            };
            ImageChoice::Done(ImageSource::Url { url, sha256 })
        }
        (_, None, Some(path)) => {
            let file = ctx.path(&path.value);
            if !file.exists() {
                let at = Position {
                    line: path.referenced.line(),
                    column: path.referenced.column(),
                };
                // Reported here; the node still resolves so that its
                // other fields are checked too.
                r.error_at(
                    "image.path",
                    at,
                    format!("{} does not exist", file.display()),
                );
            }
            ImageChoice::Done(ImageSource::Path(file))
        }
        (catalog, None, None) => {
            if spec.sha256.is_some() {
                r.error("image.sha256", "sha256 only goes with url");
            }
            if catalog.as_ref().is_some_and(|c| c.trim().is_empty()) {
                r.error("image.catalog", "catalog name is empty");
            }
            ImageChoice::Catalog(catalog.clone())
        }
    };
    Some((spec.os, choice))
}

/// A catalog image must exist, be of the node's OS and run on its board;
/// without a name, the catalog must have a default for the OS and board.
fn choose_catalog(
    name: Option<&str>,
    os: OsRelease,
    board: &Board,
    arch: Arch,
    r: &mut NodeReport<'_>,
) -> Option<ImageSource> {
    use crate::source::catalog;
    let Some(name) = name else {
        let found = catalog::default_for(os, board, arch);
        if found.is_none() {
            let what = if board.is_vm() {
                format!("{board} ({arch})")
            } else {
                board.to_string()
            };
            r.error(
                "image",
                format!(
                    "the catalog has no {os} image for {what}: set image.url \
                     (with image.sha256) or image.path"
                ),
            );
        }
        return found.map(|entry| ImageSource::Catalog {
            entry,
            named: false,
        });
    };
    match catalog::find(name) {
        None => r.error(
            "image.catalog",
            format!(
                "{name:?} is not in the catalog (`homelab-image images`): {}",
                catalog::names()
            ),
        ),
        Some(e) if e.os != os => r.error(
            "image.catalog",
            format!("{name} is an {} image, but image.os is {os}", e.os),
        ),
        Some(e) if !e.supports(board) => r.error(
            "image.catalog",
            format!("{name} is for {}, not {board}", e.boards.join(", ")),
        ),
        Some(e) if e.arch != arch => r.error(
            "image.catalog",
            format!("{name} is an {} image, but the node is {arch}", e.arch),
        ),
        Some(entry) => {
            return Some(ImageSource::Catalog { entry, named: true });
        }
    }
    None
}

fn merge_uplink(node: Option<&UplinkSpec>, default: Option<&UplinkSpec>) -> Option<UplinkSpec> {
    match (node, default) {
        (None, None) => None,
        (Some(n), None) => Some(n.clone()),
        (None, Some(d)) => Some(d.clone()),
        (Some(n), Some(d)) => Some(UplinkSpec {
            nic: n.nic.clone().or_else(|| d.nic.clone()),
            mac: n.mac.or(d.mac),
            vlan: n.vlan.or(d.vlan),
            bridge: n.bridge.clone().or_else(|| d.bridge.clone()),
        }),
    }
}

fn resolve_network(
    node: Option<&NetworkSpec>,
    default: Option<&NetworkSpec>,
    r: &mut NodeReport<'_>,
) -> Option<Network> {
    let empty = NetworkSpec::default();
    let (n, d) = (node.unwrap_or(&empty), default.unwrap_or(&empty));
    let interface = pick(&n.interface, &d.interface)
        .cloned()
        .unwrap_or_else(|| iface("eth0"));
    let Some(address) = n.address else {
        r.error(
            "network.address",
            "every node needs a static address, like 192.168.1.11/24",
        );
        return None;
    };
    let outside = pick(&n.subnet, &d.subnet)
        .filter(|subnet| !subnet.contains(address.addr()) || subnet.prefix() != address.prefix());
    if let Some(subnet) = outside {
        r.error(
            "network.address",
            format!("{address} is outside the subnet {}", subnet.network()),
        );
    }
    if !address.is_host_address() {
        r.error(
            "network.address",
            format!("{address} is the network or broadcast address of its subnet"),
        );
    }
    let gateway = pick(&n.gateway, &d.gateway).copied();
    // An address outside the subnet is one mistake: its gateway being
    // "outside" the address's subnet is the same one again.
    if let Some(gw) = gateway.filter(|_| outside.is_none()) {
        if !address.contains(gw) {
            r.error(
                "network.gateway",
                format!(
                    "{gw} is outside the subnet {} of network.address",
                    address.network()
                ),
            );
        } else if gw == address.addr() {
            r.error(
                "network.gateway",
                format!("{gw} is this node's own address"),
            );
        }
    }
    let uplink = merge_uplink(n.uplink.as_ref(), d.uplink.as_ref())
        .and_then(|u| resolve_uplink(&u, &interface, r));
    Some(Network {
        interface,
        mac: n.mac,
        address,
        gateway,
        dns: pick(&n.dns, &d.dns).cloned().unwrap_or_default(),
        search: pick(&n.search, &d.search).cloned().unwrap_or_default(),
        uplink,
    })
}

fn resolve_uplink(u: &UplinkSpec, main: &InterfaceName, r: &mut NodeReport<'_>) -> Option<Uplink> {
    let uplink = match (&u.nic, u.vlan, &u.bridge) {
        (Some(name), None, None) => Uplink::Nic {
            name: name.clone(),
            mac: u.mac,
        },
        (None, Some(id), None) if (1..=4094).contains(&id) => Uplink::Vlan { id },
        (None, Some(id), None) => {
            r.error(
                "network.uplink.vlan",
                format!("VLAN id {id} is outside 1-4094"),
            );
            return None;
        }
        (None, None, Some(name)) => Uplink::Bridge { name: name.clone() },
        _ => {
            r.error("network.uplink", "set exactly one of nic, vlan and bridge");
            return None;
        }
    };
    if u.mac.is_some() && u.nic.is_none() {
        r.error("network.uplink.mac", "mac only goes with nic");
    }
    if uplink.interface_name() == main.as_str() {
        r.error(
            "network.uplink",
            format!("the uplink cannot be the main interface {main}"),
        );
    }
    Some(uplink)
}

fn resolve_users(specs: &[UserSpec], ctx: &Context<'_>, r: &mut NodeReport<'_>) -> Vec<User> {
    let mut names = BTreeSet::new();
    let mut uids = BTreeSet::new();
    let mut users = Vec::new();
    for (i, u) in specs.iter().enumerate() {
        let field = |f: &str| format!("users[{i}].{f}");
        if !names.insert(u.name.clone()) {
            r.error(field("name"), format!("user {} is listed twice", u.name));
        }
        if let Some(why) = u.uid.and_then(|uid| uid::refusal(uid, u.system_uid)) {
            r.error(field("uid"), why);
        } else if u.system_uid && u.uid.is_none() {
            r.error(
                field("system_uid"),
                "system_uid: true goes with a uid below 1000",
            );
        }
        let offset = u32::try_from(i).unwrap_or(u32::MAX);
        let uid = u.uid.unwrap_or(FIRST_UID.saturating_add(offset));
        if u.uid != Some(0) && (uid == 0 || !uids.insert(uid)) {
            r.error(
                field("uid"),
                format!("uid {uid} is root's or already taken"),
            );
        }
        let mut ssh_keys = u.ssh_keys.clone();
        for (k, file) in u.ssh_key_files.iter().enumerate() {
            let path = ctx.path(file);
            match named_file::read_text(&path, Kind::SshKeys).map_err(|e| e.to_string()) {
                Ok(text) => match SshPublicKey::parse_many(&text) {
                    Ok(keys) => ssh_keys.extend(keys),
                    Err((line, e)) => r.error(
                        field(&format!("ssh_key_files[{k}]")),
                        format!("{}:{line}: {e}", path.display()),
                    ),
                },
                Err(e) => r.error(field(&format!("ssh_key_files[{k}]")), e),
            }
        }
        let password = match (&u.password_hash, &u.password) {
            (Some(_), Some(_)) => {
                r.error(field("password"), "set password_hash or password, not both");
                None
            }
            (Some(h), None) => Some(UserPassword::Hash(h.clone())),
            (None, Some(_)) if !u.hash_password => {
                r.error(
                    field("password"),
                    "a plaintext password is refused unless you opt in with \
                     `hash_password: true` (or give password_hash)",
                );
                None
            }
            (None, Some(secret)) => match read_secret(secret, &field("password"), false, ctx, r) {
                Some(SecretValue::Text(t)) if !t.is_empty() => Some(UserPassword::Plain(t)),
                Some(_) => {
                    r.error(field("password"), "the password is empty");
                    None
                }
                None => None,
            },
            (None, None) => None,
        };
        if ssh_keys.is_empty() && password.is_none() {
            r.warn(
                field("name"),
                format!(
                    "user {} has no SSH key and no password, so cannot log in",
                    u.name
                ),
            );
        }
        users.push(User {
            name: u.name.clone(),
            uid,
            uid_given: u.uid.is_some(),
            gecos: u.gecos.as_ref().map(ToString::to_string),
            groups: u.groups.clone(),
            // A literal known to satisfy Shell's rules.
            shell: u.shell.clone().unwrap_or_else(|| {
                Shell::parse("/bin/bash")
                    .unwrap_or_else(|_| unreachable!("/bin/bash is a valid shell"))
            }),
            sudo: u.sudo,
            ssh_keys,
            password,
        });
    }
    users
}

fn resolve_files(
    spec: &NodeSpec,
    defaults: &NodeSpec,
    os: Option<OsRelease>,
    users: &[User],
    ctx: &Context<'_>,
    r: &mut NodeReport<'_>,
) -> Vec<ExtraFile> {
    let specs = pick(&spec.files, &defaults.files).map_or(&[][..], Vec::as_slice);
    let mut paths = BTreeSet::new();
    let mut files = Vec::new();
    for (i, f) in specs.iter().enumerate() {
        let field = |name: &str| format!("files[{i}].{name}");
        if !paths.insert(f.path.clone()) {
            r.error(field("path"), format!("{} is listed twice", f.path));
        }
        let content = match (&f.content, &f.source) {
            (Some(c), None) => c.clone().into_bytes(),
            (None, Some(src)) => match named_file::read(&ctx.path(src), Kind::ExtraFile) {
                Ok(bytes) => bytes,
                Err(e) => {
                    r.error(field("source"), e.to_string());
                    continue;
                }
            },
            _ => {
                r.error(field("content"), "set exactly one of content and source");
                continue;
            }
        };
        // Without cloud-init we write owners as numbers, so they must be
        // root or a user this profile creates.
        let known = |name: &str| name == "root" || users.iter().any(|u| u.name.as_str() == name);
        if os == Some(OsRelease::Armbian) {
            if let Some(o) = f.owner.as_ref().filter(|o| !known(o.as_str())) {
                r.error(
                    field("owner"),
                    format!("{o} is neither root nor a user of this profile"),
                );
            }
            if let Some(g) = f.group.as_ref().filter(|g| !known(g.as_str())) {
                r.error(
                    field("group"),
                    format!("{g} is neither root nor a user of this profile"),
                );
            }
        }
        files.push(ExtraFile {
            path: f.path.clone(),
            content,
            mode: f.mode.unwrap_or(crate::profile::ident::Mode::new(0o644)),
            owner: f.owner.clone().filter(|o| o.as_str() != "root"),
            group: f.group.clone().filter(|g| g.as_str() != "root"),
        });
    }
    files
}

fn resolve_storage(spec: Option<&StorageSpec>, r: &mut NodeReport<'_>) -> Storage {
    let Some(s) = spec else {
        return Storage::default();
    };
    let mut seen = BTreeSet::new();
    for (i, disk) in s.local.iter().chain(&s.ceph).enumerate() {
        if !seen.insert(disk.clone()) {
            let field = if i == 0 {
                "storage.local".to_owned()
            } else {
                format!("storage.ceph[{}]", i - usize::from(s.local.is_some()))
            };
            r.error(field, format!("{disk} is used twice"));
        }
    }
    Storage {
        local: s.local.clone(),
        ceph: s.ceph.clone(),
        wipe: s.wipe,
    }
}

/// Reads a secret; `None` after reporting why it could not be read.
fn read_secret(
    spec: &SecretSpec,
    field: &str,
    allow_generate: bool,
    ctx: &Context<'_>,
    r: &mut NodeReport<'_>,
) -> Option<SecretValue> {
    match read_secret_plain(spec, allow_generate, ctx) {
        Ok(v) => Some(v),
        Err(msg) => {
            r.error(field, msg);
            None
        }
    }
}

/// Reads a secret: exactly one of env, file, value, generate.
pub fn read_secret_plain(
    spec: &SecretSpec,
    allow_generate: bool,
    ctx: &Context<'_>,
) -> Result<SecretValue, String> {
    let generate = spec.generate == Some(true);
    let count = [
        spec.env.is_some(),
        spec.file.is_some(),
        spec.value.is_some(),
        generate,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        let choices = if allow_generate {
            "env, file, value and generate: true"
        } else {
            "env, file and value"
        };
        return Err(format!("set exactly one of {choices}"));
    }
    if generate {
        return if allow_generate {
            Ok(SecretValue::Generated)
        } else {
            Err("generate: true is only for the MicroCloud session passphrase".to_owned())
        };
    }
    if let Some(var) = &spec.env {
        return (ctx.env)(var)
            .map(SecretValue::Text)
            .ok_or_else(|| format!("environment variable {var} is not set"));
    }
    if let Some(file) = &spec.file {
        let path = ctx.path(file);
        let text = named_file::read_text(&path, Kind::Secret).map_err(|e| e.to_string())?;
        return Ok(SecretValue::Text(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ));
    }
    Ok(SecretValue::Text(spec.value.clone().unwrap_or_default()))
}
