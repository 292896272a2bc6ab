//! TFTP packets on the wire (RFC 1350) with the option extension (RFC 2347):
//! parsing what a client sends, encoding what the server sends. Parsing is
//! total: any byte string yields a packet or a `Malformed` saying why.

use std::fmt;

/// Opcodes of RFC 1350 and RFC 2347 (OACK).
pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

/// Error codes of RFC 1350 and RFC 2347 that this server sends or reads.
pub const ERR_UNDEFINED: u16 = 0;
pub const ERR_NOT_FOUND: u16 = 1;
pub const ERR_ACCESS: u16 = 2;
pub const ERR_ILLEGAL: u16 = 4;

/// A request's options, at most this many (RFC 2347 bounds the request to
/// 512 bytes anyway; this bounds the work on a hostile datagram).
const MAX_OPTIONS: usize = 16;

/// Why a datagram is not a packet this server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A read or write request: file name, transfer mode and options in the
/// order the client sent them (names lowercased, RFC 2347: case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub filename: String,
    pub mode: String,
    pub options: Vec<(String, String)>,
}

/// A packet a client sends during a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Request(Request),
    Ack(u16),
    Error {
        code: u16,
        message: String,
    },
    /// DATA or OACK: a client never sends these to a read-only server.
    Unexpected(u16),
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Splits `rest` into NUL-terminated strings; a missing final NUL is an error.
fn strings(rest: &[u8]) -> Result<Vec<&[u8]>, Malformed> {
    if rest.last() != Some(&0) {
        return Err(Malformed("a request string is not NUL-terminated"));
    }
    let body = &rest[..rest.len() - 1];
    Ok(body.split(|&b| b == 0).collect())
}

fn text(bytes: &[u8], what: &'static str) -> Result<String, Malformed> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Malformed(what))
}

pub fn parse(datagram: &[u8]) -> Result<Packet, Malformed> {
    let opcode = be16(datagram, 0).ok_or(Malformed("shorter than an opcode"))?;
    let rest = &datagram[2..];
    match opcode {
        RRQ | WRQ => {
            let parts = strings(rest)?;
            if parts.len() < 2 {
                return Err(Malformed("a request without a file name and a mode"));
            }
            if parts.len() % 2 != 0 {
                return Err(Malformed("an option without a value"));
            }
            if (parts.len() - 2) / 2 > MAX_OPTIONS {
                return Err(Malformed("more than 16 options"));
            }
            let filename = text(parts[0], "the file name is not UTF-8")?;
            let mode = text(parts[1], "the mode is not UTF-8")?.to_ascii_lowercase();
            let mut options = Vec::new();
            for pair in parts[2..].chunks_exact(2) {
                let name = text(pair[0], "an option name is not UTF-8")?.to_ascii_lowercase();
                let value = text(pair[1], "an option value is not UTF-8")?;
                options.push((name, value));
            }
            Ok(Packet::Request(Request {
                write: opcode == WRQ,
                filename,
                mode,
                options,
            }))
        }
        ACK => be16(datagram, 2)
            .map(Packet::Ack)
            .ok_or(Malformed("an ACK without a block number")),
        ERROR => {
            let code = be16(datagram, 2).ok_or(Malformed("an ERROR without a code"))?;
            let msg = &datagram[4..];
            let msg = msg.split(|&b| b == 0).next().unwrap_or_default();
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(msg).into_owned(),
            })
        }
        DATA | OACK => Ok(Packet::Unexpected(opcode)),
        _ => Err(Malformed("an unknown opcode")),
    }
}

pub fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + payload.len());
    p.extend_from_slice(&DATA.to_be_bytes());
    p.extend_from_slice(&block.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut p = OACK.to_be_bytes().to_vec();
    for (name, value) in options {
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        p.push(0);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_with_options_parses_and_lowercases_names() {
        let d = b"\x00\x01dir/f\x00OCTET\x00BlkSize\x001468\x00tsize\x000\x00";
        let Ok(Packet::Request(r)) = parse(d) else {
            panic!("not a request: {:?}", parse(d));
        };
        assert_eq!(r.filename, "dir/f");
        assert_eq!(r.mode, "octet");
        assert_eq!(
            r.options,
            vec![
                ("blksize".to_owned(), "1468".to_owned()),
                ("tsize".to_owned(), "0".to_owned())
            ]
        );
    }

    #[test]
    fn truncated_and_odd_requests_are_malformed() {
        for d in [
            &b""[..],
            b"\x00",
            b"\x00\x01f",
            b"\x00\x01f\x00",
            b"\x00\x01f\x00octet\x00blksize\x00",
            b"\x00\x04\x00",
            b"\x00\x09",
            b"\x00\x01\xff\x00octet\x00",
        ] {
            assert!(parse(d).is_err(), "{d:?} parsed");
        }
    }

    #[test]
    fn encoders_match_rfc_layout() {
        assert_eq!(data(0x0102, b"ab"), b"\x00\x03\x01\x02ab");
        assert_eq!(error(1, "x"), b"\x00\x05\x00\x01x\x00");
        assert_eq!(
            oack(&[("tsize".into(), "5".into())]),
            b"\x00\x06tsize\x005\x00"
        );
    }
}
