//! The decision function against hand-built requests: who is answered, the
//! reply's bytes, and where it goes.

use super::*;
use crate::netboot::registry::NodeId;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
const PI4_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x2e, 0xf8, 0xed];
const PI5_MAC: [u8; 6] = [0x2c, 0xcf, 0x67, 0x01, 0x02, 0x03];
const STRANGER_MAC: [u8; 6] = [0xe4, 0x5f, 0x01, 0xaa, 0xbb, 0xcc];

fn registry() -> Registry {
    Registry::new(vec![
        NodeId {
            name: "pi4".into(),
            serial: Some(PiSerial::parse("5b154510").unwrap()),
            mac: None,
            address: None,
        },
        NodeId {
            name: "pi5".into(),
            serial: None,
            mac: Some(MacAddr::from_octets(PI5_MAC)),
            address: None,
        },
    ])
}

fn ctx(registry: &Registry, any: bool) -> Context<'_> {
    Context {
        registry,
        any,
        server: SERVER,
        server_port: 67,
        client_port: 68,
    }
}

fn guid(fourcc: &[u8; 4], mac: [u8; 6], serial: u32) -> Vec<u8> {
    let mut g = vec![0];
    g.extend_from_slice(fourcc);
    g.extend_from_slice(&0x00c0_3111u32.to_le_bytes());
    g.extend_from_slice(&mac[2..]);
    g.extend_from_slice(&serial.to_le_bytes());
    g
}

/// A Pi bootloader's request laid out by hand: message type, option 55 as
/// a Pi 4 sends it, 93, 94, 97 (when given), 60, then `extra`.
struct Req {
    kind: u8,
    mac: [u8; 6],
    guid: Option<Vec<u8>>,
    vendor: &'static [u8],
    arch: Option<u16>,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    flags: u16,
    extra: Vec<u8>,
}

impl Req {
    fn discover(mac: [u8; 6], guid: Option<Vec<u8>>) -> Req {
        Req {
            kind: wire::DISCOVER,
            mac,
            guid,
            vendor: b"PXEClient:Arch:00000:UNDI:002001",
            arch: Some(0),
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            flags: 0,
            extra: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[..4].copy_from_slice(&[1, 1, 6, 0]);
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&self.mac);
        b[236..240].copy_from_slice(&[99, 130, 83, 99]);
        b.extend_from_slice(&[53, 1, self.kind]);
        b.extend_from_slice(&[
            55, 14, 1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135,
        ]);
        if let Some(a) = self.arch {
            b.extend_from_slice(&[93, 2]);
            b.extend_from_slice(&a.to_be_bytes());
        }
        b.extend_from_slice(&[94, 3, 1, 2, 1]);
        if let Some(g) = &self.guid {
            b.extend_from_slice(&[97, g.len() as u8]);
            b.extend_from_slice(g);
        }
        b.extend_from_slice(&[60, self.vendor.len() as u8]);
        b.extend_from_slice(self.vendor);
        b.extend_from_slice(&self.extra);
        b.push(255);
        b
    }

    fn parsed(&self) -> Request {
        wire::parse(&self.bytes()).unwrap()
    }
}

fn client() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)
}

fn answer(d: Decision) -> Answer {
    match d {
        Decision::Answer(a) => a,
        Decision::Ignore(why) => panic!("ignored: {why:?}"),
    }
}

/// The options of a reply, in order, up to End.
fn options_of(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 240;
    while reply[at] != 255 {
        let len = usize::from(reply[at + 1]);
        out.push((reply[at], reply[at + 2..at + 2 + len].to_vec()));
        at += 2 + len;
    }
    out
}

#[test]
fn a_pi4_in_the_profile_by_serial_gets_dnsmasqs_offer() {
    let r = registry();
    let g = guid(b"RPi4", PI4_MAC, 0x5b15_4510);
    let a = answer(decide(
        &Req::discover(PI4_MAC, Some(g.clone())).parsed(),
        client(),
        ctx(&r, false),
    ));
    assert_eq!(a.node.as_deref(), Some("pi4"));
    assert_eq!(a.request, "DISCOVER");
    assert_eq!(a.to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    let b = &a.bytes;
    // 240 header and cookie, options 3 + 6 + 11 + 19 + 34, End: past the
    // 300-byte minimum, so no padding.
    assert_eq!(b.len(), 314);
    assert_eq!(&b[..4], &[2, 1, 6, 0]);
    assert_eq!(&b[4..8], &0x1234_5678u32.to_be_bytes());
    assert_eq!(&b[10..12], &[0x80, 0], "broadcast flag set");
    assert_eq!(
        &b[12..28],
        &[0; 16],
        "ciaddr, yiaddr 0 (no address handed out), siaddr, giaddr"
    );
    assert_eq!(&b[28..34], &PI4_MAC);
    let mut vendor = vec![6, 1, 3, 10, 4, 0, b'P', b'X', b'E', 9, 20, 0, 0, 17];
    vendor.extend_from_slice(b"Raspberry Pi Boot");
    vendor.push(255);
    assert_eq!(
        options_of(b),
        vec![
            (53, vec![2]),
            (54, SERVER.octets().to_vec()),
            (60, b"PXEClient".to_vec()),
            (97, g),
            (43, vendor),
        ]
    );
}

#[test]
fn a_pi5_in_the_profile_by_mac_is_answered_and_its_guid_echoed() {
    let r = registry();
    let g = guid(b"RPi5", PI5_MAC, 0x0102_0304);
    let a = answer(decide(
        &Req::discover(PI5_MAC, Some(g.clone())).parsed(),
        client(),
        ctx(&r, false),
    ));
    assert_eq!(a.node.as_deref(), Some("pi5"));
    assert_eq!(a.serial.map(|s| s.to_string()).as_deref(), Some("01020304"));
    assert!(options_of(&a.bytes).contains(&(97, g)));
    // Without option 97, the MAC alone is enough; no 97 is echoed.
    let a = answer(decide(
        &Req::discover(PI5_MAC, None).parsed(),
        client(),
        ctx(&r, false),
    ));
    assert!(options_of(&a.bytes).iter().all(|(c, _)| *c != 97));
}

#[test]
fn strangers_are_ignored_unless_any_and_a_pi() {
    let r = registry();
    let g = guid(b"RPi4", STRANGER_MAC, 0xdead_beef);
    let req = Req::discover(STRANGER_MAC, Some(g)).parsed();
    assert_eq!(
        decide(&req, client(), ctx(&r, false)),
        Decision::Ignore(Ignored::Unknown {
            mac: Some(STRANGER_MAC),
            serial: Some(PiSerial::parse("deadbeef").unwrap()),
        })
    );
    let a = answer(decide(&req, client(), ctx(&r, true)));
    assert_eq!(a.node, None);
    // `any` is about Pis: a PXE client without a Pi GUID is still ignored.
    let pc_guid: Vec<u8> = (0..17).map(|i| i * 7).collect();
    let pc = Req::discover(STRANGER_MAC, Some(pc_guid)).parsed();
    assert!(matches!(
        decide(&pc, client(), ctx(&r, true)),
        Decision::Ignore(Ignored::Unknown { .. })
    ));
}

#[test]
fn only_pxe_clients_of_arch_0_sending_discover_or_request_are_answered() {
    let r = registry();
    let mut q = Req::discover(PI5_MAC, None);
    q.vendor = b"MSFT 5.0";
    assert_eq!(
        decide(&q.parsed(), client(), ctx(&r, false)),
        Decision::Ignore(Ignored::NotPxe)
    );
    let mut q = Req::discover(PI5_MAC, None);
    q.arch = Some(7);
    assert_eq!(
        decide(&q.parsed(), client(), ctx(&r, false)),
        Decision::Ignore(Ignored::NotPiArch(Some(7)))
    );
    q.arch = None;
    assert_eq!(
        decide(&q.parsed(), client(), ctx(&r, false)),
        Decision::Ignore(Ignored::NotPiArch(None))
    );
    let mut q = Req::discover(PI5_MAC, None);
    q.kind = 8; // INFORM
    assert_eq!(
        decide(&q.parsed(), client(), ctx(&r, false)),
        Decision::Ignore(Ignored::NotDiscoverOrRequest(Some(8)))
    );
}

#[test]
fn a_request_is_acknowledged_only_when_it_names_us() {
    let r = registry();
    let mut q = Req::discover(PI5_MAC, None);
    q.kind = wire::REQUEST;
    q.extra = [&[54u8, 4][..], &ROUTER.octets()].concat();
    assert_eq!(
        decide(&q.parsed(), client(), ctx(&r, false)),
        Decision::Ignore(Ignored::OtherServer(Some(ROUTER)))
    );
    q.extra = [&[54u8, 4][..], &SERVER.octets()].concat();
    let a = answer(decide(&q.parsed(), client(), ctx(&r, false)));
    assert_eq!(a.request, "REQUEST");
    assert_eq!(options_of(&a.bytes)[0], (53, vec![wire::ACK]));
    assert_eq!(a.to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    // A client with an address keeps it and is answered there, unicast.
    let me = Ipv4Addr::new(10, 77, 0, 50);
    q.ciaddr = me;
    let a = answer(decide(
        &q.parsed(),
        SocketAddrV4::new(me, 1068),
        ctx(&r, false),
    ));
    assert_eq!(
        &a.bytes[10..16],
        &[0, 0, 10, 77, 0, 50],
        "no broadcast flag, ciaddr kept"
    );
    assert_eq!(
        a.to,
        SocketAddrV4::new(me, 1068),
        "back to the port it came from"
    );
    let a = answer(decide(&q.parsed(), client(), ctx(&r, false)));
    assert_eq!(a.to, SocketAddrV4::new(me, 68));
}

#[test]
fn a_relayed_request_goes_back_to_the_relay_with_option_82_last() {
    let r = registry();
    let relay = Ipv4Addr::new(192, 168, 9, 1);
    let mut q = Req::discover(PI5_MAC, None);
    q.giaddr = relay;
    q.extra = vec![82, 6, 1, 4, 0xa, 0xb, 0xc, 0xd];
    let a = answer(decide(
        &q.parsed(),
        SocketAddrV4::new(relay, 67),
        ctx(&r, false),
    ));
    assert_eq!(a.to, SocketAddrV4::new(relay, 67));
    assert_eq!(&a.bytes[24..28], &relay.octets(), "giaddr kept");
    assert_eq!(
        options_of(&a.bytes).last(),
        Some(&(82, vec![1, 4, 0xa, 0xb, 0xc, 0xd]))
    );
}

#[test]
fn a_long_option_97_is_echoed_cut_to_17_bytes_like_dnsmasq() {
    let r = registry();
    let mut g = guid(b"RPi5", PI5_MAC, 1);
    g.extend_from_slice(&[9, 9, 9]);
    let a = answer(decide(
        &Req::discover(PI5_MAC, Some(g.clone())).parsed(),
        client(),
        ctx(&r, false),
    ));
    assert!(options_of(&a.bytes).contains(&(97, g[..17].to_vec())));
}
