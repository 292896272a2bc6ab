//! `build --compress xz`: the finished image as a multi-block `.xz` (the
//! threaded encoder, so decoders — ours, xz -T, bmaptool — can decode in
//! parallel too).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::progress::Task;

/// Compresses `src` into `dst` with `threads` encoder threads, reporting
/// the bytes read to `task`.
pub fn xz(src: &File, dst: File, threads: u32, task: &Task, stop: &AtomicBool) -> io::Result<()> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(threads.max(1))
        .preset(6)
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .map_err(io::Error::other)?;
    let mut enc = liblzma::write::XzEncoder::new_stream(io::BufWriter::new(dst), stream);
    let mut buf = vec![0u8; 4 << 20];
    // Positional reads: earlier passes moved the file offset (SEEK_DATA).
    let mut pos = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        let n = src.read_at(&mut buf, pos)?;
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n])?;
        pos += n as u64;
        task.set_position(pos);
    }
    let mut out = enc.finish()?;
    out.flush()
}
