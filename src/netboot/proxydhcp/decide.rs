//! Whether and how to answer one request: a pure function of the request,
//! where it came from, the served nodes and the server's settings. The
//! reply is dnsmasq's ProxyDHCP reply (`dhcp-range=…,proxy` +
//! `pxe-service=0,"Raspberry Pi Boot"`, rfc2131.c's proxy branch) byte for
//! byte, and it goes where dnsmasq's dhcp.c would send it.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::netboot::registry::Registry;
use crate::profile::net::MacAddr;
use crate::profile::netboot::PiSerial;

use super::pi;
use super::wire::{self, Request};

/// The vendor class a PXE client's option 60 starts with, and what the
/// reply's option 60 says.
const PXE_CLIENT: &[u8] = b"PXEClient";

/// What the server knows when it decides.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub registry: &'a Registry,
    /// Answer Pis that are not in the profile too.
    pub any: bool,
    /// Our address: option 54, where the Pi fetches its files by TFTP.
    pub server: Ipv4Addr,
    /// The port we listen on (67), where a relay agent gets the reply.
    pub server_port: u16,
    /// The port clients listen on (68).
    pub client_port: u16,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub to: SocketAddrV4,
    /// The profile node answered; None for a Pi served because of `any`.
    pub node: Option<String>,
    /// The request's message type (`DISCOVER`, `REQUEST`).
    pub request: &'static str,
    pub serial: Option<PiSerial>,
}

/// Why a request gets no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// BOOTP, or a DHCP message other than DISCOVER and REQUEST.
    NotDiscoverOrRequest(Option<u8>),
    /// Option 60 missing or not starting with `PXEClient`.
    NotPxe,
    /// Option 93 missing or not 0 (the Pi says 0; UEFI and others are not ours).
    NotPiArch(Option<u16>),
    /// A REQUEST for another server's offer (the LAN's DHCP server): its
    /// answer is that server's business.
    OtherServer(Option<Ipv4Addr>),
    /// Neither option 97's serial nor chaddr is in the profile (and not
    /// `any`, or `any` but no Pi GUID).
    Unknown {
        mac: Option<[u8; 6]>,
        serial: Option<PiSerial>,
    },
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Answer(Answer),
    Ignore(Ignored),
}

/// Decides about `request`, which arrived from `source`.
pub fn decide(request: &Request, source: SocketAddrV4, ctx: Context<'_>) -> Decision {
    match answer(request, source, ctx) {
        Ok(a) => Decision::Answer(a),
        Err(why) => Decision::Ignore(why),
    }
}

fn answer(request: &Request, source: SocketAddrV4, ctx: Context<'_>) -> Result<Answer, Ignored> {
    let kind = request.message_type();
    let (name, reply_type) = match kind {
        Some(wire::DISCOVER) => ("DISCOVER", wire::OFFER),
        Some(wire::REQUEST) => ("REQUEST", wire::ACK),
        other => return Err(Ignored::NotDiscoverOrRequest(other)),
    };
    if !request
        .option(wire::OPT_VENDOR_CLASS, PXE_CLIENT.len())
        .is_some_and(|v| v.starts_with(PXE_CLIENT))
    {
        return Err(Ignored::NotPxe);
    }
    let arch = request
        .option(wire::OPT_CLIENT_ARCH, 2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]));
    if arch != Some(0) {
        return Err(Ignored::NotPiArch(arch));
    }
    if kind == Some(wire::REQUEST) {
        // dnsmasq answers a PXE REQUEST only on its boot-server port 4011;
        // on port 67 a REQUEST normally selects the LAN server's offer, and
        // an ACK from us (yiaddr 0) must not race that server's. One that
        // names us as its server is ours to acknowledge.
        let named = request
            .option(wire::OPT_SERVER_ID, 4)
            .map(|v| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
        if named != Some(ctx.server) {
            return Err(Ignored::OtherServer(named));
        }
    }

    let guid = request
        .option(wire::OPT_CLIENT_GUID, pi::GUID_OPTION_LEN)
        .and_then(pi::parse_guid);
    let mac = request.ethernet_mac();
    let serial = guid.map(|g| g.serial);
    let node = serial
        .as_ref()
        .and_then(|s| ctx.registry.by_serial(s))
        .or_else(|| mac.and_then(|m| ctx.registry.by_mac(&MacAddr::from_octets(m))));
    if node.is_none() && !(ctx.any && guid.is_some()) {
        return Err(Ignored::Unknown { mac, serial });
    }

    let h = &request.header;
    let ciaddr = h.ciaddr();
    // rfc2131.c: a DISCOVER, or a client without an address, gets a
    // broadcast reply with ciaddr cleared.
    let fields = if kind == Some(wire::DISCOVER) || ciaddr.is_unspecified() {
        wire::ReplyHeader {
            ciaddr: Ipv4Addr::UNSPECIFIED,
            flags: u16::from(h.flags()) | wire::FLAG_BROADCAST,
        }
    } else {
        wire::ReplyHeader {
            ciaddr,
            flags: u16::from(h.flags()),
        }
    };
    let server_id = ctx.server.octets();
    let vendor = pi::pxe_vendor_options();
    let mut options: Vec<(u8, &[u8])> = vec![
        (wire::OPT_MESSAGE_TYPE, std::slice::from_ref(&reply_type)),
        (wire::OPT_SERVER_ID, &server_id),
        (wire::OPT_VENDOR_CLASS, PXE_CLIENT),
    ];
    // dnsmasq echoes the first option 97 of at least 17 bytes, cut to 17.
    if let Some(g) = request.option(wire::OPT_CLIENT_GUID, pi::GUID_OPTION_LEN) {
        options.push((wire::OPT_CLIENT_GUID, &g[..pi::GUID_OPTION_LEN]));
    }
    options.push((wire::OPT_VENDOR_ENCAP, &vendor));
    // A relay agent's option 82 goes back verbatim, last (RFC 3046 2.2).
    if let Some(agent) = request.option(wire::OPT_RELAY_AGENT, 1) {
        options.push((wire::OPT_RELAY_AGENT, agent));
    }
    // Every value above is at most 255 bytes: constants, 4 or 17 bytes, and
    // option 82 as it came in one option.
    let bytes = wire::reply(request, fields, &options)
        .unwrap_or_else(|e| unreachable!("a ProxyDHCP reply option is too long: {e}"));

    Ok(Answer {
        bytes,
        to: destination(request, fields, source, ctx),
        node: node.map(|n| n.name.clone()),
        request: name,
        serial,
    })
}

/// Where dnsmasq (dhcp.c) sends the reply: to the relay agent that
/// forwarded the request; to a client that has an address at that address
/// (at the port it sent from when it sent from there); else broadcast to
/// the client port, since every reply to an address-less client carries the
/// broadcast flag.
fn destination(
    request: &Request,
    fields: wire::ReplyHeader,
    source: SocketAddrV4,
    ctx: Context<'_>,
) -> SocketAddrV4 {
    let giaddr = request.header.giaddr();
    if !giaddr.is_unspecified() {
        return SocketAddrV4::new(giaddr, ctx.server_port);
    }
    if !fields.ciaddr.is_unspecified() {
        if *source.ip() == fields.ciaddr && source.port() != 0 {
            return source;
        }
        return SocketAddrV4::new(fields.ciaddr, ctx.client_port);
    }
    SocketAddrV4::new(Ipv4Addr::BROADCAST, ctx.client_port)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
