//! The node's network as a netplan v2 document (`network:` wrapped, so the
//! same bytes serve as cloud-init's `network-config` and as a netplan file
//! on Armbian). Static addresses need `renderer: networkd`; a NIC with a
//! known MAC is matched by it and renamed with `set-name`; the OVN uplink
//! is brought up with no address, as MicroCloud requires.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::profile::resolved::{ResolvedNode, Uplink};
use crate::render::quirks::Quirks;

#[derive(Debug, Clone, Serialize)]
pub struct NetplanDoc {
    pub network: Netplan,
}

#[derive(Debug, Clone, Serialize)]
pub struct Netplan {
    pub version: u8,
    pub renderer: &'static str,
    pub ethernets: BTreeMap<String, Interface>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vlans: BTreeMap<String, Interface>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bridges: BTreeMap<String, Interface>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub wifis: BTreeMap<String, Interface>,
}

/// The keys of a netplan interface we use (ethernet, vlan, bridge, wifi).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Interface {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Match>,
    #[serde(rename = "set-name", skip_serializing_if = "Option::is_none")]
    pub set_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    pub dhcp4: bool,
    pub dhcp6: bool,
    #[serde(rename = "accept-ra", skip_serializing_if = "Option::is_none")]
    pub accept_ra: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Nameservers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BridgeParameters>,
    #[serde(rename = "regulatory-domain", skip_serializing_if = "Option::is_none")]
    pub regulatory_domain: Option<String>,
    #[serde(rename = "access-points", skip_serializing_if = "Option::is_none")]
    pub access_points: Option<BTreeMap<String, AccessPoint>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Match {
    pub macaddress: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub to: &'static str,
    pub via: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nameservers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BridgeParameters {
    pub stp: bool,
    #[serde(rename = "forward-delay")]
    pub forward_delay: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccessPoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A NIC with no address that is still brought up (MicroCloud's uplink,
/// or a bridge member).
fn unaddressed() -> Interface {
    Interface {
        dhcp4: false,
        dhcp6: false,
        accept_ra: Some(false),
        ..Interface::default()
    }
}

/// The netplan document for `node`.
pub fn document(node: &ResolvedNode, quirks: &Quirks) -> NetplanDoc {
    let net = &node.network;
    let main = net.interface.to_string();
    let mut doc = Netplan {
        version: 2,
        renderer: "networkd",
        ethernets: BTreeMap::new(),
        vlans: BTreeMap::new(),
        bridges: BTreeMap::new(),
        wifis: BTreeMap::new(),
    };
    let addressed = Interface {
        dhcp4: false,
        dhcp6: false,
        addresses: vec![net.address.to_string()],
        routes: net
            .gateway
            .map(|gw| Route {
                to: "default",
                via: gw.to_string(),
            })
            .into_iter()
            .collect(),
        nameservers: (!net.dns.is_empty() || !net.search.is_empty()).then(|| Nameservers {
            addresses: net.dns.iter().map(ToString::to_string).collect(),
            search: net.search.iter().map(ToString::to_string).collect(),
        }),
        ..Interface::default()
    };
    let by_mac =
        |mac: Option<crate::profile::net::MacAddr>, name: &str, iface: Interface| Interface {
            match_: mac.map(|m| Match {
                macaddress: m.to_string(),
            }),
            set_name: mac.map(|_| name.to_owned()),
            ..iface
        };
    match &net.uplink {
        Some(Uplink::Bridge { name }) => {
            doc.ethernets
                .insert(main.clone(), by_mac(net.mac, &main, unaddressed()));
            let bridge = Interface {
                interfaces: vec![main.clone()],
                parameters: Some(BridgeParameters {
                    stp: false,
                    forward_delay: 0,
                }),
                ..addressed
            };
            doc.bridges.insert(name.to_string(), bridge);
        }
        other => {
            doc.ethernets
                .insert(main.clone(), by_mac(net.mac, &main, addressed));
            match other {
                Some(Uplink::Nic { name, mac }) => {
                    let nic = Interface {
                        optional: Some(true),
                        ..unaddressed()
                    };
                    doc.ethernets
                        .insert(name.to_string(), by_mac(*mac, name.as_str(), nic));
                }
                Some(uplink @ Uplink::Vlan { id }) => {
                    let vlan = Interface {
                        id: Some(*id),
                        link: Some(main.clone()),
                        ..unaddressed()
                    };
                    doc.vlans.insert(uplink.interface_name(), vlan);
                }
                _ => {}
            }
        }
    }
    if let Some(w) = &node.wifi {
        let ap = AccessPoint {
            password: w.password.clone(),
        };
        let wifi = Interface {
            dhcp4: true,
            dhcp6: false,
            optional: Some(true),
            regulatory_domain: w
                .country
                .as_ref()
                .filter(|_| quirks.netplan_has_regulatory_domain())
                .map(ToString::to_string),
            access_points: Some(BTreeMap::from([(w.ssid.clone(), ap)])),
            ..Interface::default()
        };
        doc.wifis.insert(w.interface.to_string(), wifi);
    }
    NetplanDoc { network: doc }
}
