//! The finishing pass over a built image: one read of its data segments
//! gives both the bmap (bmaptool's format 2.0: mapped block ranges with a
//! SHA-256 each) and the SHA-256 of the whole image (holes hashed as the
//! zeros they read as).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::io::sparse_copy::data_segments;
use crate::profile::state::hex;

pub const BLOCK: u64 = 4096;
const BUF: usize = 4 << 20;

enum Feed {
    Data(Vec<u8>),
    Zeros(u64),
}

pub struct Finished {
    pub bmap: String,
    pub sha256: String,
    pub mapped_blocks: u64,
}

/// Reads the image once and produces its bmap and SHA-256.
pub fn finish(f: &File, len: u64, stop: &AtomicBool) -> io::Result<Finished> {
    // Mapped ranges in whole blocks, merged where segments touch.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (start, n) in data_segments(f, len)? {
        let first = start / BLOCK;
        let last = (start + n).div_ceil(BLOCK) - 1;
        match ranges.last_mut() {
            Some(r) if r.1 + 1 >= first => r.1 = r.1.max(last),
            _ => ranges.push((first, last)),
        }
    }
    // The whole-image hash runs on its own thread, fed the same buffers
    // (and runs of zeros for the holes): every data byte is hashed twice,
    // once per range and once for the image, so two cores halve the time.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Feed>(4);
    let image_thread = std::thread::spawn(move || {
        let zeros = vec![0u8; BUF];
        let mut image = Sha256::new();
        for feed in rx {
            match feed {
                Feed::Data(b) => image.update(&b[..]),
                Feed::Zeros(mut n) => {
                    while n > 0 {
                        // Bounded by BUF.
                        let k = n.min(BUF as u64) as usize;
                        image.update(&zeros[..k]);
                        n -= k as u64;
                    }
                }
            }
        }
        hex(&image.finalize())
    });
    let send = |f: Feed| {
        tx.send(f)
            .map_err(|_| io::Error::other("the image hasher stopped"))
    };
    let mut pos = 0u64;
    let mut lines = String::new();
    let mut mapped = 0;
    for &(first, last) in &ranges {
        let start = first * BLOCK;
        let end = ((last + 1) * BLOCK).min(len);
        if pos < start {
            send(Feed::Zeros(start - pos))?;
            pos = start;
        }
        let mut range = Sha256::new();
        while pos < end {
            if stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            let n = (end - pos).min(BUF as u64) as usize;
            let mut buf = vec![0u8; n];
            f.read_exact_at(&mut buf, pos)?;
            range.update(&buf);
            send(Feed::Data(buf))?;
            pos += n as u64;
        }
        mapped += last - first + 1;
        let span = if first == last {
            format!("{first}")
        } else {
            format!("{first}-{last}")
        };
        lines.push_str(&format!(
            "        <Range chksum=\"{}\"> {span} </Range>\n",
            hex(&range.finalize())
        ));
    }
    if pos < len {
        send(Feed::Zeros(len - pos))?;
    }
    drop(tx);
    let image_sha256 = image_thread
        .join()
        .map_err(|_| io::Error::other("the image hasher panicked"))?;
    let blocks = len.div_ceil(BLOCK);
    let template = |sum: &str| {
        format!(
            "<?xml version=\"1.0\" ?>\n\
             <!-- Made by homelab-image; use it with bmaptool copy -->\n\
             <bmap version=\"2.0\">\n    \
             <ImageSize> {len} </ImageSize>\n    \
             <BlockSize> {BLOCK} </BlockSize>\n    \
             <BlocksCount> {blocks} </BlocksCount>\n    \
             <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    \
             <ChecksumType> sha256 </ChecksumType>\n    \
             <BmapFileChecksum> {sum} </BmapFileChecksum>\n    \
             <BlockMap>\n{lines}    </BlockMap>\n</bmap>\n"
        )
    };
    // The file's own checksum is taken with the field all zeros.
    let unsigned = template(&"0".repeat(64));
    let sum = hex(&Sha256::digest(unsigned.as_bytes()));
    Ok(Finished {
        bmap: template(&sum),
        sha256: image_sha256,
        mapped_blocks: mapped,
    })
}
