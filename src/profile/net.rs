//! IPv4 addressing and link identifiers: `Ipv4Cidr` (an address with its
//! prefix, e.g. `192.168.1.11/24`), `Ipv4Range` (`a.b.c.d-e.f.g.h`),
//! `MacAddr` and `InterfaceName`.

use std::fmt;
use std::net::Ipv4Addr;

use thiserror::Error;

/// Why an address, range, MAC or interface name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    #[error("{0:?} is not an IPv4 address with a prefix, like 192.168.1.11/24")]
    BadCidr(String),
    #[error("{0:?} has a prefix length over 32")]
    BadPrefix(String),
    #[error("{0:?} is not an IPv4 range, like 192.168.1.200-192.168.1.250")]
    BadRange(String),
    #[error("{0:?} is a range whose start is after its end")]
    ReversedRange(String),
    #[error("{0:?} is not a MAC address, like dc:a6:32:01:36:c2")]
    BadMac(String),
    #[error("{0:?} is not a network interface name (1-15 characters, no '/', ':' or spaces)")]
    BadInterface(String),
}

/// An IPv4 address together with the prefix length of its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    pub fn parse(s: &str) -> Result<Self, NetError> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| NetError::BadCidr(s.to_owned()))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| NetError::BadCidr(s.to_owned()))?;
        // A prefix is decimal digits only: "+8" or "08" would parse as u8
        // but nobody writes them on purpose.
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NetError::BadCidr(s.to_owned()));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| NetError::BadCidr(s.to_owned()))?;
        Self::new(addr, prefix).ok_or_else(|| NetError::BadPrefix(s.to_owned()))
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        // prefix ≤ 32 is an invariant of the type; checked_shl covers 32.
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The subnet mask in dotted form (`255.255.255.0` for a /24), as the
    /// kernel's `ip=` parameter wants it.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The subnet this address lies in, with host bits cleared.
    pub fn network(&self) -> Ipv4Cidr {
        Self {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies inside this address's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether this address is usable by a host: not the subnet's network
    /// or broadcast address (point-to-point /31 and /32 excepted).
    pub fn is_host_address(&self) -> bool {
        self.prefix >= 31 || (self.addr != self.network().addr && self.addr != self.broadcast())
    }

    /// The `offset`-th address of this subnet, if it is still inside it.
    pub fn nth_host(&self, offset: u32) -> Option<Ipv4Addr> {
        let ip = u32::from(self.network().addr).checked_add(offset)?;
        let ip = Ipv4Addr::from(ip);
        self.contains(ip).then_some(ip)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl Ipv4Range {
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| NetError::BadRange(s.to_owned()))?;
        let start: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| NetError::BadRange(s.to_owned()))?;
        let end: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|_| NetError::BadRange(s.to_owned()))?;
        if u32::from(start) > u32::from(end) {
            return Err(NetError::ReversedRange(s.to_owned()));
        }
        Ok(Self { start, end })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(ip))
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// An Ethernet MAC address, shown in lower case with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }

    /// A group address (the I/G bit of the first octet set): never a NIC's
    /// own.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The address a DHCP request's chaddr carries.
    pub fn from_octets(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A Linux network interface name (`eth0`, `end1`, `br0`): at most 15 bytes
/// (IFNAMSIZ − 1), no `/`, `:` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NetError::BadInterface(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::profile::newtype::string_serde!(Ipv4Cidr, Ipv4Cidr::parse);
crate::profile::newtype::string_serde!(Ipv4Range, Ipv4Range::parse);
crate::profile::newtype::string_serde!(MacAddr, MacAddr::parse);
crate::profile::newtype::string_serde!(InterfaceName, InterfaceName::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_computes_subnet() {
        let c = Ipv4Cidr::parse("192.168.1.11/24").unwrap();
        assert_eq!(c.network().to_string(), "192.168.1.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(192, 168, 1, 255));
        assert!(c.contains(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 2, 1)));
        assert!(c.is_host_address());
        assert!(!Ipv4Cidr::parse("192.168.1.0/24").unwrap().is_host_address());
        assert_eq!(
            Ipv4Cidr::parse("10.0.0.1/0").unwrap().network().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(c.nth_host(11), Some(Ipv4Addr::new(192, 168, 1, 11)));
        assert_eq!(c.nth_host(256), None);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        let wide = Ipv4Cidr::parse("10.1.2.3/16").unwrap();
        assert_eq!(wide.netmask(), Ipv4Addr::new(255, 255, 0, 0));
    }

    #[test]
    fn cidr_refuses_garbage() {
        for bad in [
            "192.168.1.11",
            "192.168.1.300/24",
            "1.2.3.4/33",
            "1.2.3.4/+8",
            "1.2.3.4/",
            "x/24",
        ] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_normalises_case_and_separator() {
        assert_eq!(
            MacAddr::parse("DC-A6-32-01-36-C2").unwrap().to_string(),
            "dc:a6:32:01:36:c2"
        );
        for bad in [
            "dc:a6:32:01:36",
            "dc:a6:32:01:36:c2:00",
            "dc:a6:32:01:36:g2",
            "dca6.3201.36c2",
        ] {
            assert!(MacAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_is_ordered() {
        let r = Ipv4Range::parse("10.0.0.200-10.0.0.250").unwrap();
        assert!(r.contains(Ipv4Addr::new(10, 0, 0, 210)));
        assert!(Ipv4Range::parse("10.0.0.250-10.0.0.200").is_err());
    }

    #[test]
    fn interface_names_are_short_and_plain() {
        assert!(InterfaceName::parse("enP4p65s0").is_ok());
        for bad in ["", "a/b", "eth0:1", "sixteen-chars-xx", "a b"] {
            assert!(InterfaceName::parse(bad).is_err(), "{bad}");
        }
    }
}
