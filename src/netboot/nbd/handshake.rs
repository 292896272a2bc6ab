//! The fixed newstyle handshake: greeting, client flags, then option
//! haggling until `NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME` picks an export.
//! `NBD_OPT_LIST`, `INFO` and `ABORT` are answered; every other option
//! (`STRUCTURED_REPLY`, `STARTTLS`, meta contexts, extended headers...)
//! gets `NBD_REP_ERR_UNSUP`, so clients fall back to simple replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exports::{Exports, Refusal};
use super::proto::{self, *};
use super::{Ctx, End, Stream};
use crate::netboot::disk::Disk;

/// The most option data one option may carry: a 4096-byte name (the
/// spec's limit), its length, and a generous list of info items.
pub const MAX_OPTION_DATA: u32 = 16 * 1024;
/// Options one connection may send before we stop listening.
pub const MAX_OPTIONS: u32 = 64;

/// The export the client chose.
pub struct Chosen {
    pub name: String,
    pub disk: Arc<dyn Disk>,
}

async fn reply(s: &mut Stream, option: u32, kind: u32, data: &[u8]) -> Result<(), End> {
    s.write_all(&proto::option_reply(option, kind, data))
        .await?;
    Ok(())
}

/// Answers a refused `INFO`/`GO` the way the spec asks for each reason.
async fn refuse(
    s: &mut Stream,
    ctx: &Ctx,
    peer: SocketAddr,
    option: u32,
    refusal: &Refusal,
) -> Result<(), End> {
    ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, "nbd: refused: {refusal}");
    let kind = match refusal {
        Refusal::Unknown(_) => REP_ERR_UNKNOWN,
        Refusal::Denied(_) => REP_ERR_POLICY,
    };
    reply(s, option, kind, refusal.to_string().as_bytes()).await
}

fn info_export(disk: &dyn Disk) -> Vec<u8> {
    let mut d = Vec::with_capacity(12);
    d.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    d.extend_from_slice(&disk.size().to_be_bytes());
    d.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
    d
}

/// Runs the handshake to its end: an export chosen, or why not.
pub async fn negotiate(
    s: &mut Stream,
    peer: SocketAddr,
    ctx: &Ctx,
    exports: &dyn Exports,
) -> Result<Chosen, End> {
    let mut greeting = [0u8; 18];
    greeting[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    greeting[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    greeting[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&greeting).await?;

    let client_flags = s.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        // The spec: a server MUST drop a client with flags it does not know.
        return Err(End::Malformed(format!(
            "unknown client flags {client_flags:#010x}"
        )));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;

    for _ in 0..MAX_OPTIONS {
        if s.read_u64().await? != IHAVEOPT {
            return Err(End::Malformed(
                "an option without the IHAVEOPT magic".into(),
            ));
        }
        let option = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION_DATA {
            return Err(End::Malformed(format!(
                "option {option} announces {len} bytes of data (at most {MAX_OPTION_DATA})"
            )));
        }
        // At most MAX_OPTION_DATA: a u32 that fits usize.
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        match option {
            OPT_EXPORT_NAME => {
                let Ok(name) = String::from_utf8(data) else {
                    return Err(End::Malformed("an export name that is not UTF-8".into()));
                };
                // This option has no error reply: a refusal closes.
                let disk = exports
                    .open(&name, peer)
                    .map_err(|refusal| End::Refused(name.clone(), refusal))?;
                let mut d = Vec::with_capacity(10 + 124);
                d.extend_from_slice(&disk.size().to_be_bytes());
                d.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                if !no_zeroes {
                    d.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&d).await?;
                return Ok(Chosen { name, disk });
            }
            OPT_ABORT => {
                // The client may already be gone: its problem, not ours.
                let _ = reply(s, option, REP_ACK, &[]).await;
                return Err(End::Aborted);
            }
            OPT_LIST if !data.is_empty() => {
                reply(s, option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data").await?;
            }
            OPT_LIST => {
                for name in exports.names(peer) {
                    let mut d = Vec::with_capacity(4 + name.len());
                    // Export names are node names: far below 4 GiB.
                    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    d.extend_from_slice(name.as_bytes());
                    reply(s, option, REP_SERVER, &d).await?;
                }
                reply(s, option, REP_ACK, &[]).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some(request) = proto::parse_info(&data) else {
                    reply(
                        s,
                        option,
                        REP_ERR_INVALID,
                        b"malformed NBD_OPT_INFO/GO data",
                    )
                    .await?;
                    continue;
                };
                let disk = match exports.open(&request.name, peer) {
                    Ok(d) => d,
                    Err(refusal) => {
                        refuse(s, ctx, peer, option, &refusal).await?;
                        continue;
                    }
                };
                reply(s, option, REP_INFO, &info_export(disk.as_ref())).await?;
                if request.items.contains(&INFO_NAME) {
                    let mut d = INFO_NAME.to_be_bytes().to_vec();
                    d.extend_from_slice(request.name.as_bytes());
                    reply(s, option, REP_INFO, &d).await?;
                }
                if request.items.contains(&INFO_BLOCK_SIZE) {
                    // Any alignment works (sub-block writes are read-
                    // modify-written); 4 KiB is the delta's block.
                    let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                    d.extend_from_slice(&1u32.to_be_bytes());
                    d.extend_from_slice(&4096u32.to_be_bytes());
                    d.extend_from_slice(&ctx.config.max_request.to_be_bytes());
                    reply(s, option, REP_INFO, &d).await?;
                }
                reply(s, option, REP_ACK, &[]).await?;
                if option == OPT_GO {
                    return Ok(Chosen {
                        name: request.name,
                        disk,
                    });
                }
            }
            _ => {
                reply(s, option, REP_ERR_UNSUP, b"not supported by this server").await?;
            }
        }
    }
    Err(End::Malformed(format!(
        "more than {MAX_OPTIONS} options without choosing an export"
    )))
}
