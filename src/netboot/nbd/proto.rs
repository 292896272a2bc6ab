//! The NBD protocol's numbers and message layouts, as NetworkBlockDevice/nbd
//! `doc/proto.md` names them: the fixed newstyle handshake, option replies,
//! and the simple transmission request and reply. Everything is big-endian.

/// `NBDMAGIC`, the first thing the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: after `NBDMAGIC` in the greeting, and before every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Starts every option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const FLAG_SEND_FUA: u16 = 1 << 3;
pub const FLAG_SEND_TRIM: u16 = 1 << 5;

/// What every export advertises: exactly the commands `transmission`
/// implements (READ, WRITE, DISC always; FLUSH, FUA, TRIM here). No
/// WRITE_ZEROES, CACHE, BLOCK_STATUS, structured replies or multi-conn.
pub const TRANSMISSION_FLAGS: u16 =
    FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR + 1;
pub const REP_ERR_POLICY: u32 = REP_ERR + 2;
pub const REP_ERR_INVALID: u32 = REP_ERR + 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;

// `NBD_INFO_*` in `NBD_REP_INFO` replies.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_FLAG_FUA: u16 = 1 << 0;

// Error values of a simple reply.
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;

/// An option reply header and its data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    // Our replies carry an export name (at most 4096 bytes) or a short
    // message: far below u32::MAX.
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The 16-byte simple reply header; a successful READ's data follows it.
pub fn simple_reply(error: u32, handle: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&handle.to_be_bytes());
    out
}

/// A transmission request header (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

pub const REQUEST_LEN: usize = 28;

/// Parses a request header; `None` when the magic is wrong (the stream is
/// out of step, and only a disconnect is left).
pub fn parse_request(b: &[u8; REQUEST_LEN]) -> Option<Request> {
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
    if u32_at(0) != REQUEST_MAGIC {
        return None;
    }
    Some(Request {
        flags: u16_at(4),
        kind: u16_at(6),
        handle: u64_at(8),
        offset: u64_at(16),
        length: u32_at(24),
    })
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: an export name and the
/// `NBD_INFO_*` items the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub items: Vec<u16>,
}

/// Parses `NBD_OPT_INFO`/`GO` data; `None` when its lengths disagree or the
/// name is not UTF-8 (answered with `NBD_REP_ERR_INVALID`).
pub fn parse_info(data: &[u8]) -> Option<InfoRequest> {
    let len_bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let name_len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let name = data.get(4..4usize.checked_add(name_len)?)?;
    let rest = &data[4 + name_len..];
    let count_bytes: [u8; 2] = rest.get(..2)?.try_into().ok()?;
    let count = usize::from(u16::from_be_bytes(count_bytes));
    let list = &rest[2..];
    if list.len() != count * 2 {
        return None;
    }
    let items = list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some(InfoRequest {
        name: String::from_utf8(name.to_vec()).ok()?,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_lengths_must_agree() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"pi1");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            parse_info(&d),
            Some(InfoRequest {
                name: "pi1".into(),
                items: vec![INFO_NAME, INFO_BLOCK_SIZE]
            })
        );
        // One item short, a name longer than the data, bad UTF-8.
        assert_eq!(parse_info(&d[..d.len() - 2]), None);
        let mut long = d.clone();
        long[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_info(&long), None);
        let mut bad = d.clone();
        bad[4] = 0xff;
        assert_eq!(parse_info(&bad), None);
        assert_eq!(parse_info(&[]), None);
    }

    #[test]
    fn request_needs_its_magic() {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        b[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..].copy_from_slice(&512u32.to_be_bytes());
        let r = parse_request(&b).unwrap();
        assert_eq!(
            (r.kind, r.handle, r.offset, r.length),
            (CMD_WRITE, 0x1122_3344_5566_7788, 4096, 512)
        );
        b[0] ^= 1;
        assert_eq!(parse_request(&b), None);
    }
}
