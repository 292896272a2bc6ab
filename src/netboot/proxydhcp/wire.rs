//! DHCP messages on the wire (RFC 2131/2132) as far as a ProxyDHCP needs:
//! reading a client's request and writing our reply.
//!
//! The fixed BOOTP header is decoded and encoded by dhcproto. The options
//! are walked and written here, for two measured reasons: dhcproto's
//! `DhcpOptions` is a map ordered by option code, so it would send 43
//! before 53 where dnsmasq sends 53, 54, 60, 97, 43 (and the Pi
//! bootloader's option parser is closed and has had bugs, rpi-eeprom issue
//! 82); and its option decoder stops silently at the first option it cannot
//! read (a wrong length for option 53 even shifts it onto the next bytes),
//! where a hostile or broken datagram must be refused whole and counted.
//! Only the 240 bytes of header and cookie go through dhcproto, so none of
//! its per-option decoders ever sees untrusted bytes.
//!
//! Parsing is total: any byte string gives a `Request` or a `Malformed`
//! naming the offset and the field.

use std::fmt;
use std::net::Ipv4Addr;

use dhcproto::{Decodable, Decoder, Encodable, Encoder, v4};

/// BOOTP header (236 bytes) plus the DHCP magic cookie.
pub const HEADER_LEN: usize = 240;
/// RFC 2131's magic cookie, right after the BOOTP header.
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message size (RFC 951/1542); dnsmasq pads its replies
/// to it, so do we.
pub const MIN_REPLY_LEN: usize = 300;
/// The longest chaddr field.
const CHADDR_MAX: u8 = 16;

pub const OPT_PAD: u8 = 0;
pub const OPT_VENDOR_ENCAP: u8 = 43;
pub const OPT_MESSAGE_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PARAM_REQUEST: u8 = 55;
pub const OPT_VENDOR_CLASS: u8 = 60;
pub const OPT_RELAY_AGENT: u8 = 82;
pub const OPT_CLIENT_ARCH: u8 = 93;
pub const OPT_CLIENT_GUID: u8 = 97;
pub const OPT_END: u8 = 255;

/// DHCP message types (RFC 2132 9.6) this server reads or writes.
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;

/// The BOOTP broadcast flag (RFC 2131 figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Why a datagram is no DHCP request: the byte offset and what was wrong
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte {})", self.what, self.offset)
    }
}

fn malformed(offset: usize, what: &'static str) -> Malformed {
    Malformed { offset, what }
}

/// A client's BOOTREQUEST: the header fields a reply copies or looks at,
/// and the options in the order they came (pads dropped).
#[derive(Debug, Clone)]
pub struct Request {
    pub header: v4::Message,
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Request {
    /// The first option `code` at least `min_len` bytes long: dnsmasq's
    /// `option_find`, so both servers read the same option when a client
    /// repeats one.
    pub fn option(&self, code: u8, min_len: usize) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, v)| *c == code && v.len() >= min_len)
            .map(|(_, v)| v.as_slice())
    }

    /// Option 53, when present.
    pub fn message_type(&self) -> Option<u8> {
        self.option(OPT_MESSAGE_TYPE, 1).map(|v| v[0])
    }

    /// chaddr as the client filled it (at most 16 bytes; `parse` checked).
    pub fn chaddr(&self) -> &[u8] {
        self.header.chaddr()
    }

    /// The client's Ethernet address, when chaddr holds one.
    pub fn ethernet_mac(&self) -> Option<[u8; 6]> {
        if self.header.htype() != v4::HType::Eth {
            return None;
        }
        <[u8; 6]>::try_from(self.chaddr()).ok()
    }
}

/// Reads a client's request. Refuses what dnsmasq refuses (no BOOTREQUEST,
/// chaddr longer than 16 bytes, a hardware address without a type), what
/// is not DHCP (no magic cookie), and option areas whose lengths run past
/// the datagram or whose fixed-size options have the wrong size.
pub fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(malformed(
            bytes.len(),
            "shorter than a BOOTP header and cookie",
        ));
    }
    if bytes[0] != 1 {
        return Err(malformed(0, "op is not BOOTREQUEST"));
    }
    let hlen = bytes[2];
    if hlen > CHADDR_MAX {
        return Err(malformed(2, "hlen is larger than chaddr"));
    }
    if bytes[1] == 0 && hlen != 0 {
        return Err(malformed(1, "a hardware address without a type"));
    }
    if bytes[236..HEADER_LEN] != COOKIE {
        return Err(malformed(236, "no DHCP magic cookie"));
    }
    // dhcproto reads the header; given only the header and cookie its
    // option loop finds nothing to decode. hlen <= 16 was checked above, so
    // its `chaddr()` slice stays inside the 16-byte field.
    let header = v4::Message::decode(&mut Decoder::new(&bytes[..HEADER_LEN]))
        .map_err(|_| malformed(0, "the BOOTP header does not decode"))?;
    let options = walk_options(bytes, HEADER_LEN)?;
    Ok(Request { header, options })
}

/// The options from `start` to the End option or the datagram's end.
fn walk_options(bytes: &[u8], start: usize) -> Result<Vec<(u8, Vec<u8>)>, Malformed> {
    let mut options = Vec::new();
    let mut at = start;
    while at < bytes.len() {
        let code = bytes[at];
        match code {
            OPT_PAD => {
                at += 1;
                continue;
            }
            OPT_END => return Ok(options),
            _ => {}
        }
        let Some(&len) = bytes.get(at + 1) else {
            return Err(malformed(at, "an option without its length byte"));
        };
        let value_at = at + 2;
        let value = bytes
            .get(value_at..value_at + usize::from(len))
            .ok_or_else(|| malformed(at, "an option runs past the end of the datagram"))?;
        let fixed = match code {
            OPT_MESSAGE_TYPE => Some(1),
            OPT_SERVER_ID => Some(4),
            _ => None,
        };
        if fixed.is_some_and(|n| n != value.len()) {
            return Err(malformed(at, "option 53 or 54 has the wrong length"));
        }
        options.push((code, value.to_vec()));
        at = value_at + usize::from(len);
    }
    // No End option: dnsmasq accepts that too (its option search stops at
    // the datagram's end).
    Ok(options)
}

/// The fixed fields of a reply; everything else is copied from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub ciaddr: Ipv4Addr,
    pub flags: u16,
}

/// Writes a BOOTREPLY to `request`: its htype, hlen, hops, xid, secs,
/// giaddr and chaddr kept, yiaddr and siaddr zero, sname and file empty,
/// then `options` in the given order, End, and zero padding up to
/// `MIN_REPLY_LEN`. Each option value is at most 255 bytes (the callers
/// build them; `reply` checks).
pub fn reply(
    request: &Request,
    fields: ReplyHeader,
    options: &[(u8, &[u8])],
) -> Result<Vec<u8>, EncodeError> {
    let h = &request.header;
    let mut m = v4::Message::new_with_id(
        h.xid(),
        fields.ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        h.giaddr(),
        h.chaddr(),
    );
    m.set_opcode(v4::Opcode::BootReply)
        .set_htype(h.htype())
        .set_hops(h.hops())
        .set_secs(h.secs())
        .set_flags(v4::Flags::from(fields.flags));
    let mut out = Vec::with_capacity(MIN_REPLY_LEN);
    // With no options dhcproto writes the header and cookie only (no End),
    // leaving the option area to us.
    m.encode(&mut Encoder::new(&mut out))
        .map_err(|_| EncodeError::Header)?;
    for (code, value) in options {
        let len = u8::try_from(value.len()).map_err(|_| EncodeError::OptionTooLong(*code))?;
        out.push(*code);
        out.push(len);
        out.extend_from_slice(value);
    }
    out.push(OPT_END);
    if out.len() < MIN_REPLY_LEN {
        out.resize(MIN_REPLY_LEN, 0);
    }
    Ok(out)
}

/// Why a reply could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// An option value longer than 255 bytes.
    OptionTooLong(u8),
    /// dhcproto refused the header.
    Header,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::OptionTooLong(code) => {
                write!(f, "option {code} does not fit in a DHCP reply")
            }
            EncodeError::Header => f.write_str("the BOOTP header does not encode"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER laid out by hand (not by dhcproto), with `options` after
    /// the cookie.
    pub(crate) fn request_bytes(op: u8, options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = op;
        b[1] = 1;
        b[2] = 6;
        b[3] = 0;
        b[4..8].copy_from_slice(&0x2653_0339u32.to_be_bytes());
        b[8..10].copy_from_slice(&4u16.to_be_bytes());
        b[28..34].copy_from_slice(&[0xdc, 0xa6, 0x32, 0x2e, 0xf8, 0xed]);
        b[236..240].copy_from_slice(&COOKIE);
        b.extend_from_slice(options);
        b
    }

    #[test]
    fn a_request_keeps_its_header_and_options_in_order() {
        let b = request_bytes(1, &[53, 1, 1, 0, 0, 60, 3, b'P', b'X', b'E', 255, 7, 7]);
        let r = parse(&b).unwrap();
        assert_eq!(r.header.xid(), 0x2653_0339);
        assert_eq!(r.header.secs(), 4);
        assert_eq!(r.ethernet_mac(), Some([0xdc, 0xa6, 0x32, 0x2e, 0xf8, 0xed]));
        assert_eq!(r.message_type(), Some(DISCOVER));
        assert_eq!(
            r.options,
            vec![(53, vec![1]), (60, b"PXE".to_vec())],
            "pads skipped, nothing read past End"
        );
    }

    #[test]
    fn malformed_requests_name_the_offset_and_field() {
        let cases: Vec<(Vec<u8>, Malformed)> = vec![
            (
                vec![1; 100],
                malformed(100, "shorter than a BOOTP header and cookie"),
            ),
            (request_bytes(2, &[]), malformed(0, "op is not BOOTREQUEST")),
            (
                {
                    let mut b = request_bytes(1, &[]);
                    b[2] = 17;
                    b
                },
                malformed(2, "hlen is larger than chaddr"),
            ),
            (
                {
                    let mut b = request_bytes(1, &[]);
                    b[236] = 0;
                    b
                },
                malformed(236, "no DHCP magic cookie"),
            ),
            (
                request_bytes(1, &[53, 1, 1, 60, 200, b'P']),
                malformed(243, "an option runs past the end of the datagram"),
            ),
            (
                request_bytes(1, &[53, 1, 1, 97]),
                malformed(243, "an option without its length byte"),
            ),
            (
                request_bytes(1, &[53, 2, 1, 1]),
                malformed(240, "option 53 or 54 has the wrong length"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes).unwrap_err(), want);
        }
    }

    #[test]
    fn a_reply_is_header_options_end_and_padding() {
        let req = parse(&request_bytes(1, &[53, 1, 1, 255])).unwrap();
        let out = reply(
            &req,
            ReplyHeader {
                ciaddr: Ipv4Addr::UNSPECIFIED,
                flags: FLAG_BROADCAST,
            },
            &[(53, &[2]), (60, b"PXEClient")],
        )
        .unwrap();
        assert_eq!(out.len(), MIN_REPLY_LEN);
        assert_eq!(out[0], 2, "BOOTREPLY");
        assert_eq!(&out[1..4], &[1, 6, 0]);
        assert_eq!(&out[4..8], &0x2653_0339u32.to_be_bytes());
        assert_eq!(&out[8..10], &4u16.to_be_bytes(), "secs copied");
        assert_eq!(&out[10..12], &[0x80, 0]);
        assert_eq!(&out[12..28], &[0; 16], "ciaddr yiaddr siaddr giaddr");
        assert_eq!(&out[28..34], &[0xdc, 0xa6, 0x32, 0x2e, 0xf8, 0xed]);
        assert!(
            out[34..236].iter().all(|&b| b == 0),
            "chaddr pad, sname, file"
        );
        assert_eq!(&out[236..240], &COOKIE);
        let opts = [
            53, 1, 2, 60, 9, b'P', b'X', b'E', b'C', b'l', b'i', b'e', b'n', b't', 255,
        ];
        assert_eq!(&out[240..240 + opts.len()], &opts);
        assert!(out[240 + opts.len()..].iter().all(|&b| b == 0));
        let long = [0u8; 256];
        assert_eq!(
            reply(
                &req,
                ReplyHeader {
                    ciaddr: Ipv4Addr::UNSPECIFIED,
                    flags: 0
                },
                &[(43, &long)]
            ),
            Err(EncodeError::OptionTooLong(43))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_without_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..700)
        ) {
            let _ = parse(&bytes);
        }

        #[test]
        fn any_option_area_parses_or_is_refused_without_panic(
            opts in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            hlen in 0u8..=16,
        ) {
            let mut b = request_bytes(1, &opts);
            b[2] = hlen;
            if let Ok(r) = parse(&b) {
                proptest::prop_assert!(r.chaddr().len() == usize::from(hlen));
            }
        }
    }
}
