//! The MicroCloud preseed: one file for the whole cluster, byte-identical
//! on every node, fed to `microcloud preseed` on first boot. Field names
//! are MicroCloud 2.1's (`cmd/microcloud/preseed.go`, targets.md §3.4).

use serde::Serialize;

use crate::profile::resolved::{Cluster, Discovery, MicroCloud, Passphrase};
use crate::profile::state::State;
use crate::render::RenderError;

#[derive(Debug, Clone, Serialize)]
pub struct Preseed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator_address: Option<String>,
    pub lookup_timeout: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_passphrase: Option<String>,
    pub session_timeout: u32,
    pub systems: Vec<System>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovn: Option<OvnConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct System {
    pub name: String,
    /// Only in unicast mode, where every system must list its address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovn_uplink_interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<SystemStorage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<Disk>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ceph: Vec<Disk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    pub path: String,
    pub wipe: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OvnConfig {
    pub ipv4_gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_range: Option<String>,
    /// MicroCloud wants a comma-separated string, not a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<String>,
}

/// The preseed document for the cluster.
pub fn preseed(cluster: &Cluster, mc: &MicroCloud, state: &State) -> Result<Preseed, RenderError> {
    let (lookup_subnet, initiator, initiator_address, unicast) = match &mc.discovery {
        Discovery::Multicast {
            initiator,
            lookup_subnet,
        } => (
            Some(lookup_subnet.to_string()),
            Some(initiator.to_string()),
            None,
            false,
        ),
        Discovery::Unicast { initiator_address } => {
            (None, None, Some(initiator_address.to_string()), true)
        }
    };
    let session_passphrase = match &mc.passphrase {
        None => None,
        Some(Passphrase::Known(p)) => Some(p.clone()),
        Some(Passphrase::Generated) => Some(state.passphrase.clone().ok_or_else(|| {
            RenderError::MissingState("generated MicroCloud passphrase".to_owned())
        })?),
    };
    let systems = cluster
        .nodes
        .iter()
        .map(|n| {
            let disk = |d: &crate::profile::ident::DiskPath| Disk {
                path: d.to_string(),
                wipe: n.storage.wipe,
            };
            let has_storage = n.storage.local.is_some() || !n.storage.ceph.is_empty();
            System {
                name: n.hostname.to_string(),
                address: unicast.then(|| n.network.address.addr().to_string()),
                ovn_uplink_interface: n.network.uplink.as_ref().map(|u| u.interface_name()),
                storage: has_storage.then(|| SystemStorage {
                    local: n.storage.local.as_ref().map(disk),
                    ceph: n.storage.ceph.iter().map(disk).collect(),
                }),
            }
        })
        .collect();
    Ok(Preseed {
        lookup_subnet,
        initiator,
        initiator_address,
        lookup_timeout: mc.lookup_timeout,
        session_passphrase,
        session_timeout: mc.session_timeout,
        systems,
        ovn: mc.ovn.as_ref().map(|o| OvnConfig {
            ipv4_gateway: o.ipv4_gateway.to_string(),
            ipv4_range: o.ipv4_range.map(|r| r.to_string()),
            dns_servers: (!o.dns_servers.is_empty()).then(|| {
                o.dns_servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        }),
    })
}
