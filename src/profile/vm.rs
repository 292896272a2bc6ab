//! Virtual machine nodes (`board: vm`): the `vm:` section as written, what
//! it resolves to, and the rules `check` applies to it. A VM boots an
//! Ubuntu cloud image; its seed goes into the image's root file system and
//! its NIC is matched by MAC, so every VM has one: `network.mac`, or one
//! derived from its hostname (stable across runs, locally administered).
//! The hypervisor-side numbers (memory, cores, bridge, vmid) feed
//! `out/proxmox.sh`; `disk_size` grows the image file. docs/VMS.md.

use std::fmt;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::profile::hostname::Hostname;
use crate::profile::net::{InterfaceName, MacAddr};
use crate::profile::netboot::DiskSize;

/// `vm:` as written, per node or in `defaults` (merged field by field).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Guest memory, like `4GiB` or `2048MiB`.
    pub memory: Option<MemSize>,
    /// Virtual CPU cores.
    #[serde(default, deserialize_with = "cores_field")]
    pub cores: Option<u16>,
    /// The size the image file is grown to; cloud-init grows the root
    /// partition and file system into it on the first boot.
    pub disk_size: Option<DiskSize>,
    /// The host bridge the NIC is attached to.
    #[serde(default, deserialize_with = "bridge_field")]
    pub bridge: Option<InterfaceName>,
    /// The Proxmox VM id; without it `proxmox.sh` asks Proxmox for the
    /// next free one.
    #[serde(default, deserialize_with = "vmid_field")]
    pub vmid: Option<u32>,
}

/// A resolved VM node's hypervisor settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub memory: MemSize,
    pub cores: u16,
    pub disk_size: DiskSize,
    pub bridge: InterfaceName,
    pub vmid: Option<u32>,
}

impl Vm {
    /// What a VM gets when the profile says nothing: enough for cloud-init,
    /// the snaps or k3s, and a root with room to grow.
    pub const DEFAULT_CORES: u16 = 2;
    pub const DEFAULT_MEMORY: MemSize = MemSize(4096);
    /// Proxmox's default bridge.
    pub const DEFAULT_BRIDGE: &'static str = "vmbr0";
    /// Proxmox reserves ids below 100; its upper bound is 999999999.
    pub const VMIDS: std::ops::RangeInclusive<u32> = 100..=999_999_999;
    pub const CORES: std::ops::RangeInclusive<u16> = 1..=512;
}

/// The default `disk_size`: 20 GiB, the size Proxmox's cloud-init guide
/// grows its template to, with room for MicroCloud's snaps.
pub const DEFAULT_DISK_SIZE: DiskSize = DiskSize::gib(20);

/// Guest memory in MiB (what `qm`, libvirt and LXD take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemSize(u32);

/// Why a memory size was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0:?} is not a memory size: a whole number of MiB or GiB (M, MiB, G, GiB), \
     from 512MiB to 4096GiB, like 4GiB"
)]
pub struct MemSizeError(String);

impl MemSize {
    const MIN_MIB: u64 = 512;
    const MAX_MIB: u64 = 4096 << 10;

    pub fn parse(s: &str) -> Result<Self, MemSizeError> {
        let bad = || MemSizeError(s.to_owned());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mib = match unit.trim() {
            "M" | "MiB" => Some(n),
            "G" | "GiB" => n.checked_mul(1024),
            // A bare number is ambiguous (bytes? MiB?): refused.
            _ => return Err(bad()),
        }
        .filter(|m| (Self::MIN_MIB..=Self::MAX_MIB).contains(m))
        .ok_or_else(bad)?;
        // Within MAX_MIB, which fits in u32.
        u32::try_from(mib).map(Self).map_err(|_| bad())
    }

    pub fn mib(self) -> u32 {
        self.0
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1024) {
            write!(f, "{}GiB", self.0 >> 10)
        } else {
            write!(f, "{}MiB", self.0)
        }
    }
}

crate::profile::newtype::string_serde!(MemSize, MemSize::parse);

/// `cores` as written: a whole number within [`Vm::CORES`]. Read as text
/// so that `-1` or `two` get this message, not the YAML reader's.
fn cores_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let cores = match whole_number(&raw) {
        Some(n) => check_cores(n),
        None => Err(format!(
            "{raw:?} is not a number of cores: a VM has {} to {}",
            Vm::CORES.start(),
            Vm::CORES.end()
        )),
    };
    cores.map(Some).map_err(serde::de::Error::custom)
}

/// `vmid` as written: a whole number within [`Vm::VMIDS`].
fn vmid_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let id = match whole_number(&raw) {
        Some(n) => check_vmid(n),
        None => Err(vmid_refusal(&format!("{raw:?}"))),
    };
    id.map(Some).map_err(serde::de::Error::custom)
}

/// `bridge` as written: an interface name Proxmox takes as a bridge.
fn bridge_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InterfaceName>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let name = InterfaceName::parse(&raw).map_err(serde::de::Error::custom)?;
    check_bridge(&name).map_err(serde::de::Error::custom)?;
    Ok(Some(name))
}

/// Digits only (no sign, no fraction), within u64.
fn whole_number(raw: &str) -> Option<u64> {
    let t = raw.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn check_cores(n: u64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|c| Vm::CORES.contains(c))
        .ok_or_else(|| {
            format!(
                "{n} cores: a VM has {} to {}",
                Vm::CORES.start(),
                Vm::CORES.end()
            )
        })
}

fn check_vmid(n: u64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|id| Vm::VMIDS.contains(id))
        .ok_or_else(|| vmid_refusal(&n.to_string()))
}

fn vmid_refusal(what: &str) -> String {
    format!(
        "{what} is not a Proxmox VM id: ids run from {} to {} (Proxmox keeps 0-99 \
         for itself)",
        Vm::VMIDS.start(),
        Vm::VMIDS.end()
    )
}

/// Proxmox takes a bridge name of letters, digits, `-`, `_` and `.` only
/// (its `pve-bridge-id` format); anything else, a `,` or `=` above all,
/// would also change the meaning of the `--net0` option proxmox.sh writes.
fn check_bridge(name: &InterfaceName) -> Result<(), String> {
    let ok = name
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a bridge name Proxmox accepts: letters, digits, '-', '_' \
             and '.' only, like vmbr0",
            name.as_str()
        ))
    }
}

/// The node's `vm:` merged over the defaults' (field by field).
pub fn merge(node: Option<&VmSpec>, defaults: Option<&VmSpec>) -> Option<VmSpec> {
    match (node, defaults) {
        (None, None) => None,
        (Some(n), None) => Some(n.clone()),
        (None, Some(d)) => Some(d.clone()),
        (Some(n), Some(d)) => Some(VmSpec {
            memory: n.memory.or(d.memory),
            cores: n.cores.or(d.cores),
            disk_size: n.disk_size.or(d.disk_size),
            bridge: n.bridge.clone().or_else(|| d.bridge.clone()),
            vmid: n.vmid.or(d.vmid),
        }),
    }
}

/// A resolved VM, or the problems with `spec` as `(field, message)`.
pub fn resolve(spec: Option<&VmSpec>) -> Result<Vm, Vec<(&'static str, String)>> {
    let empty = VmSpec::default();
    let spec = spec.unwrap_or(&empty);
    let mut problems = Vec::new();
    let cores = spec.cores.unwrap_or(Vm::DEFAULT_CORES);
    // The YAML reader applies the same checks; a spec built in code may not
    // have been through it.
    if let Err(why) = check_cores(u64::from(cores)) {
        problems.push(("vm.cores", why));
    }
    if let Some(Err(why)) = spec.vmid.map(|id| check_vmid(u64::from(id))) {
        problems.push(("vm.vmid", why));
    }
    if let Some(Err(why)) = spec.bridge.as_ref().map(check_bridge) {
        problems.push(("vm.bridge", why));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Vm {
        memory: spec.memory.unwrap_or(Vm::DEFAULT_MEMORY),
        cores,
        disk_size: spec.disk_size.unwrap_or(DEFAULT_DISK_SIZE),
        bridge: spec.bridge.clone().unwrap_or_else(|| {
            InterfaceName::parse(Vm::DEFAULT_BRIDGE)
                .unwrap_or_else(|_| unreachable!("vmbr0 is a valid interface name"))
        }),
        vmid: spec.vmid,
    })
}

/// The MAC a VM without `network.mac` gets: locally administered, unicast
/// (first octet 0x02), the rest from a SHA-256 of its hostname, so the
/// same profile gives the same MAC on every run and machine.
pub fn derived_mac(hostname: &Hostname) -> MacAddr {
    let h = Sha256::digest(format!("homelab-image vm mac\0{hostname}").as_bytes());
    let text = format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0], h[1], h[2], h[3], h[4]
    );
    // Six hex octets separated by colons always parse.
    MacAddr::parse(&text).unwrap_or_else(|_| unreachable!("{text} is a MAC address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_mib_or_gib_with_a_unit_and_bounds() {
        assert_eq!(MemSize::parse("4GiB").unwrap().mib(), 4096);
        assert_eq!(MemSize::parse("4G").unwrap().mib(), 4096);
        assert_eq!(MemSize::parse("1536MiB").unwrap().mib(), 1536);
        assert_eq!(MemSize::parse("1536MiB").unwrap().to_string(), "1536MiB");
        assert_eq!(MemSize::parse("2048M").unwrap().to_string(), "2GiB");
        for bad in [
            "4096",
            "256MiB",
            "5000GiB",
            "4 TB",
            "",
            "-1G",
            "99999999999999999999G",
        ] {
            let e = MemSize::parse(bad).unwrap_err().to_string();
            assert!(e.contains("like 4GiB"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_fill_what_the_section_leaves_out() {
        let vm = resolve(None).unwrap();
        assert_eq!(vm.cores, 2);
        assert_eq!(vm.memory.to_string(), "4GiB");
        assert_eq!(vm.disk_size.to_string(), "20GiB");
        assert_eq!(vm.bridge.as_str(), "vmbr0");
        assert_eq!(vm.vmid, None);
    }

    #[test]
    fn cores_and_vmid_out_of_range_are_named() {
        let spec = VmSpec {
            cores: Some(0),
            vmid: Some(42),
            ..VmSpec::default()
        };
        let problems = resolve(Some(&spec)).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.0).collect();
        assert_eq!(fields, ["vm.cores", "vm.vmid"]);
        assert!(problems[1].1.contains("42 is not a Proxmox VM id"));
    }

    #[test]
    fn a_bridge_proxmox_would_refuse_is_named() {
        let spec = VmSpec {
            bridge: Some(InterfaceName::parse("br0,tag=5").unwrap()),
            ..VmSpec::default()
        };
        let problems = resolve(Some(&spec)).unwrap_err();
        assert_eq!(problems[0].0, "vm.bridge");
        assert!(
            problems[0].1.contains("Proxmox accepts"),
            "{}",
            problems[0].1
        );
        assert!(check_bridge(&InterfaceName::parse("vmbr0.20").unwrap()).is_ok());
    }

    #[test]
    fn counts_are_whole_numbers_within_range() {
        assert_eq!(whole_number(" 42 "), Some(42));
        for bad in ["-1", "2.5", "", "two", "99999999999999999999999"] {
            assert_eq!(whole_number(bad), None, "{bad}");
        }
        assert_eq!(check_cores(512), Ok(512));
        assert!(check_cores(70_000).unwrap_err().starts_with("70000 cores"));
        assert!(check_vmid(u64::MAX).is_err());
    }

    #[test]
    fn merge_takes_each_field_from_the_node_first() {
        let d = VmSpec {
            memory: Some(MemSize(2048)),
            cores: Some(4),
            ..VmSpec::default()
        };
        let n = VmSpec {
            cores: Some(8),
            vmid: Some(201),
            ..VmSpec::default()
        };
        let m = merge(Some(&n), Some(&d)).unwrap();
        assert_eq!(
            (m.memory, m.cores, m.vmid),
            (Some(MemSize(2048)), Some(8), Some(201))
        );
    }

    #[test]
    fn derived_macs_are_stable_local_unicast_and_differ_by_host() {
        let a = derived_mac(&Hostname::parse("vm1").unwrap());
        let b = derived_mac(&Hostname::parse("vm2").unwrap());
        assert_eq!(a, derived_mac(&Hostname::parse("vm1").unwrap()));
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("02:"), "{a}");
    }
}
