//! Who `serve` serves and what it has seen of them: one entry per netbooted
//! node (its name, Pi serial, MAC and static address from the profile) with
//! the activity each protocol records — the last DHCP answer, TFTP and NBD
//! traffic, the addresses the node was seen at, and the first-boot state
//! the node reports over HTTP. The servers share one `Registry`; the status
//! page and `/api/nodes` read `snapshot`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::profile::net::MacAddr;
use crate::profile::netboot::PiSerial;

/// What the profile says about one served node.
#[derive(Debug, Clone)]
pub struct NodeId {
    /// The node's name: its NBD export and the status page's key.
    pub name: String,
    pub serial: Option<PiSerial>,
    pub mac: Option<MacAddr>,
    /// The static address the node's kernel configures (`ip=`), which is
    /// where its NBD connection comes from.
    pub address: Option<Ipv4Addr>,
}

/// One protocol's traffic with a node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    /// Seconds since the Unix epoch of the last request.
    pub last: Option<u64>,
    pub requests: u64,
    /// Bytes the node read from us.
    pub bytes_served: u64,
    /// Bytes the node wrote to us (NBD only).
    pub bytes_written: u64,
    /// What the last request was (a file name, an export, a DHCP message type).
    pub last_what: Option<String>,
}

/// A first-boot state change the node reported.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub state: String,
    pub detail: Option<String>,
    /// Seconds since the Unix epoch when it was received.
    pub at: u64,
}

#[derive(Debug, Default)]
struct Activity {
    dhcp: Traffic,
    tftp: Traffic,
    nbd: Traffic,
    seen_at: BTreeSet<IpAddr>,
    reports: Vec<Report>,
}

/// The most first-boot reports kept per node (the oldest are dropped).
pub const MAX_REPORTS: usize = 64;

struct Entry {
    id: NodeId,
    activity: Mutex<Activity>,
}

/// Which protocol a `record` call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Dhcp,
    Tftp,
    Nbd,
}

/// The served nodes, in profile order.
pub struct Registry {
    nodes: Vec<Entry>,
}

/// What the status page and `/api/nodes` show of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub address: Option<String>,
    pub seen_at: Vec<String>,
    pub dhcp: Traffic,
    pub tftp: Traffic,
    pub nbd: Traffic,
    /// The last reported first-boot state, if any.
    pub state: Option<String>,
    pub reports: Vec<Report>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Registry {
    pub fn new(nodes: Vec<NodeId>) -> Registry {
        Registry {
            nodes: nodes
                .into_iter()
                .map(|id| Entry {
                    id,
                    activity: Mutex::default(),
                })
                .collect(),
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.iter().map(|e| &e.id)
    }

    pub fn by_name(&self, name: &str) -> Option<&NodeId> {
        self.entry(name).map(|e| &e.id)
    }

    pub fn by_serial(&self, serial: &PiSerial) -> Option<&NodeId> {
        self.ids().find(|id| id.serial.as_ref() == Some(serial))
    }

    pub fn by_mac(&self, mac: &MacAddr) -> Option<&NodeId> {
        self.ids().find(|id| id.mac.as_ref() == Some(mac))
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.nodes.iter().find(|e| e.id.name == name)
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Activity) -> R) -> Option<R> {
        let e = self.entry(name)?;
        // A panic while the lock was held leaves counters at worst a step
        // behind, which a status page can live with.
        let mut a = e
            .activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut a))
    }

    /// Records one request of `node` from `from`: `served` bytes sent,
    /// `written` bytes received, `what` it asked for. Unknown names are
    /// ignored.
    pub fn record(
        &self,
        node: &str,
        protocol: Protocol,
        from: Option<IpAddr>,
        what: &str,
        served: u64,
        written: u64,
    ) {
        self.with(node, |a| {
            if let Some(ip) = from
                && !ip.is_unspecified()
            {
                a.seen_at.insert(ip);
            }
            let t = match protocol {
                Protocol::Dhcp => &mut a.dhcp,
                Protocol::Tftp => &mut a.tftp,
                Protocol::Nbd => &mut a.nbd,
            };
            t.last = Some(now());
            t.requests += 1;
            t.bytes_served += served;
            t.bytes_written += written;
            t.last_what = Some(what.to_owned());
        });
    }

    /// Adds bytes to a node's counters without counting a request (a long
    /// transfer or NBD session reports as it goes).
    pub fn add_bytes(&self, node: &str, protocol: Protocol, served: u64, written: u64) {
        self.with(node, |a| {
            let t = match protocol {
                Protocol::Dhcp => &mut a.dhcp,
                Protocol::Tftp => &mut a.tftp,
                Protocol::Nbd => &mut a.nbd,
            };
            t.last = Some(now());
            t.bytes_served += served;
            t.bytes_written += written;
        });
    }

    /// Whether `addr` may use `node`'s NBD export: the node's static
    /// address, or one it was seen at over DHCP or TFTP.
    pub fn may_connect(&self, node: &str, addr: IpAddr) -> bool {
        let Some(e) = self.entry(node) else {
            return false;
        };
        if let (Some(a), IpAddr::V4(v4)) = (e.id.address, addr)
            && a == v4
        {
            return true;
        }
        self.with(node, |a| a.seen_at.contains(&addr))
            .unwrap_or(false)
    }

    /// Stores a first-boot report; false for an unknown node.
    pub fn report(&self, node: &str, state: &str, detail: Option<&str>) -> bool {
        self.with(node, |a| {
            if a.reports.len() >= MAX_REPORTS {
                a.reports.remove(0);
            }
            a.reports.push(Report {
                state: state.to_owned(),
                detail: detail.map(str::to_owned),
                at: now(),
            });
        })
        .is_some()
    }

    /// Every node as the status page shows it.
    pub fn snapshot(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|e| {
                let a = e
                    .activity
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                NodeView {
                    name: e.id.name.clone(),
                    serial: e.id.serial.map(|s| s.to_string()),
                    mac: e.id.mac.map(|m| m.to_string()),
                    address: e.id.address.map(|a| a.to_string()),
                    seen_at: a.seen_at.iter().map(ToString::to_string).collect(),
                    dhcp: a.dhcp.clone(),
                    tftp: a.tftp.clone(),
                    nbd: a.nbd.clone(),
                    state: a.reports.last().map(|r| r.state.clone()),
                    reports: a.reports.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        Registry::new(vec![NodeId {
            name: "pi1".into(),
            serial: Some(PiSerial::parse("abcd1234").unwrap()),
            mac: Some(MacAddr::parse("dc:a6:32:01:02:03").unwrap()),
            address: Some(Ipv4Addr::new(10, 0, 0, 21)),
        }])
    }

    #[test]
    fn lookups_and_counters() {
        let r = reg();
        let serial = PiSerial::parse("ABCD1234").unwrap();
        assert_eq!(r.by_serial(&serial).unwrap().name, "pi1");
        let mac = MacAddr::parse("dc:a6:32:01:02:03").unwrap();
        assert_eq!(r.by_mac(&mac).unwrap().name, "pi1");
        let from: IpAddr = "192.168.1.57".parse().unwrap();
        assert!(!r.may_connect("pi1", from));
        r.record("pi1", Protocol::Tftp, Some(from), "start4.elf", 100, 0);
        r.add_bytes("pi1", Protocol::Tftp, 50, 0);
        assert!(r.may_connect("pi1", from));
        assert!(r.may_connect("pi1", "10.0.0.21".parse().unwrap()));
        assert!(!r.may_connect("pi2", from));
        let v = &r.snapshot()[0];
        assert_eq!(v.tftp.requests, 1);
        assert_eq!(v.tftp.bytes_served, 150);
        assert_eq!(v.seen_at, vec!["192.168.1.57".to_string()]);
    }

    #[test]
    fn reports_are_bounded_and_the_last_is_the_state() {
        let r = reg();
        for i in 0..(MAX_REPORTS + 5) {
            assert!(r.report("pi1", &format!("s{i}"), None));
        }
        assert!(!r.report("nope", "done", None));
        let v = &r.snapshot()[0];
        assert_eq!(v.reports.len(), MAX_REPORTS);
        assert_eq!(v.state.as_deref(), Some(&*format!("s{}", MAX_REPORTS + 4)));
    }
}
