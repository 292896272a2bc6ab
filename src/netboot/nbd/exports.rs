//! What the NBD server serves and to whom: the `Exports` trait it asks at
//! each `NBD_OPT_INFO`/`GO`/`EXPORT_NAME`, and `ProfileExports`, the policy
//! `serve` uses — one disk per node, each served only to that node's
//! address (its static `ip=` or where the registry saw it boot from),
//! unless `--any`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::netboot::disk::Disk;
use crate::netboot::registry::Registry;

/// Why an export is not served; the client gets `NBD_REP_ERR_UNKNOWN` or
/// `NBD_REP_ERR_POLICY` with the message (or, after `EXPORT_NAME`, which
/// cannot carry an error, a closed connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No export by that name.
    Unknown(String),
    /// The export exists, but not for this client.
    Denied(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown(name) => write!(f, "no export named {name:?}"),
            Refusal::Denied(why) => f.write_str(why),
        }
    }
}

/// The exports a server offers. `open` decides per client.
pub trait Exports: Send + Sync {
    /// The names `client` may open, for `NBD_OPT_LIST` (listing one it
    /// would be refused makes clients such as `nbdinfo --list` fail whole).
    fn names(&self, client: SocketAddr) -> Vec<String>;
    /// The disk behind `name`, if `client` may use it.
    fn open(&self, name: &str, client: SocketAddr) -> Result<Arc<dyn Disk>, Refusal>;
}

/// `serve`'s exports: node name → its disk, each only for the node's own
/// address (`Registry::may_connect`) unless `any`.
pub struct ProfileExports {
    disks: BTreeMap<String, Arc<dyn Disk>>,
    registry: Arc<Registry>,
    any: bool,
}

impl ProfileExports {
    pub fn new(disks: BTreeMap<String, Arc<dyn Disk>>, registry: Arc<Registry>, any: bool) -> Self {
        Self {
            disks,
            registry,
            any,
        }
    }
}

impl ProfileExports {
    /// Flushes every disk (`serve`'s shutdown), whatever sessions still
    /// hold them; returns the nodes whose flush failed.
    pub fn flush_all(&self) -> Vec<(String, std::io::Error)> {
        self.disks
            .iter()
            .filter_map(|(name, disk)| disk.flush().err().map(|e| (name.clone(), e)))
            .collect()
    }

    fn allowed(&self, name: &str, client: SocketAddr) -> bool {
        // A listener on `[::]` sees IPv4 clients as `::ffff:a.b.c.d`.
        self.any || self.registry.may_connect(name, client.ip().to_canonical())
    }
}

impl Exports for ProfileExports {
    fn names(&self, client: SocketAddr) -> Vec<String> {
        self.disks
            .keys()
            .filter(|name| self.allowed(name, client))
            .cloned()
            .collect()
    }

    fn open(&self, name: &str, client: SocketAddr) -> Result<Arc<dyn Disk>, Refusal> {
        let disk = self
            .disks
            .get(name)
            .ok_or_else(|| Refusal::Unknown(name.into()))?;
        if self.allowed(name, client) {
            Ok(Arc::clone(disk))
        } else {
            Err(Refusal::Denied(format!(
                "export {name} is served only to node {name}'s own address, not {} (serve --any lifts this)",
                client.ip().to_canonical()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netboot::registry::{NodeId, Protocol};
    use std::io;
    use std::net::Ipv4Addr;

    struct Zeros;
    impl Disk for Zeros {
        fn size(&self) -> u64 {
            4096
        }
        fn read_at(&self, buf: &mut [u8], _: u64) -> io::Result<()> {
            buf.fill(0);
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
        fn trim(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    fn exports(any: bool) -> (ProfileExports, Arc<Registry>) {
        let registry = Arc::new(Registry::new(vec![
            NodeId {
                name: "pi1".into(),
                serial: None,
                mac: None,
                address: Some(Ipv4Addr::new(10, 0, 0, 21)),
            },
            NodeId {
                name: "pi2".into(),
                serial: None,
                mac: None,
                address: None,
            },
        ]));
        let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
        disks.insert("pi1".into(), Arc::new(Zeros));
        disks.insert("pi2".into(), Arc::new(Zeros));
        (
            ProfileExports::new(disks, Arc::clone(&registry), any),
            registry,
        )
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_export_is_served_only_to_its_nodes_address() {
        let (e, _) = exports(false);
        assert!(e.open("pi1", at("10.0.0.21:40000")).is_ok());
        // The same address as an IPv4-mapped IPv6 peer of a `[::]` listener.
        assert!(e.open("pi1", at("[::ffff:10.0.0.21]:40000")).is_ok());
        let Err(Refusal::Denied(why)) = e.open("pi1", at("10.0.0.22:40000")) else {
            panic!("another address was served pi1");
        };
        assert!(why.contains("10.0.0.22") && why.contains("--any"), "{why}");
        // pi2 has no static address and was never seen: nobody gets it.
        assert!(matches!(
            e.open("pi2", at("10.0.0.21:40000")),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(
            e.open("pi3", at("10.0.0.21:1")).err(),
            Some(Refusal::Unknown("pi3".into()))
        );
        // A client is listed only what it may open.
        assert_eq!(e.names(at("10.0.0.21:1")), vec!["pi1".to_string()]);
        assert!(e.names(at("10.0.0.99:1")).is_empty());
    }

    #[test]
    fn a_node_seen_booting_from_an_address_may_use_its_export_from_there() {
        let (e, registry) = exports(false);
        let dhcp_lease = at("192.168.1.57:40000");
        assert!(e.open("pi2", dhcp_lease).is_err());
        registry.record(
            "pi2",
            Protocol::Tftp,
            Some(dhcp_lease.ip()),
            "start4.elf",
            1,
            0,
        );
        assert!(e.open("pi2", dhcp_lease).is_ok());
        // Being seen as pi2 gives no claim on pi1.
        assert!(e.open("pi1", dhcp_lease).is_err());
    }

    /// Fails every flush.
    struct Broken;
    impl Disk for Broken {
        fn size(&self) -> u64 {
            0
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
        fn trim(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_all_reports_each_node_whose_flush_failed() {
        let (ok, registry) = exports(false);
        assert!(ok.flush_all().is_empty());
        let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
        disks.insert("pi1".into(), Arc::new(Zeros));
        disks.insert("pi2".into(), Arc::new(Broken));
        let failed = ProfileExports::new(disks, registry, false).flush_all();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "pi2");
        assert!(failed[0].1.to_string().contains("on fire"));
    }

    #[test]
    fn any_serves_every_address_but_not_unknown_names() {
        let (e, _) = exports(true);
        assert_eq!(
            e.names(at("203.0.113.9:1")),
            vec!["pi1".to_string(), "pi2".to_string()]
        );
        assert!(e.open("pi1", at("203.0.113.9:1")).is_ok());
        assert!(e.open("pi2", at("127.0.0.1:1")).is_ok());
        assert!(matches!(
            e.open("nope", at("127.0.0.1:1")),
            Err(Refusal::Unknown(_))
        ));
    }
}
