//! A netbooted node's disk before the node writes to it: the shared base
//! image, the node's patched pages on top (what `build` would write into
//! its image, kept in memory: a few MiB), and zeros past the base's end up
//! to the profile's virtual size (`netboot.disk_size`), so the node's
//! growpart/resizefs can extend its root on first boot without anyone
//! storing the zeros. On a GPT disk the backup header and entries move to
//! the new end and the primary header says so, as `sgdisk -e` would do.
//! The node's own writes go into a `delta` laid over this layer.

use std::fs::File;
use std::io;

use anyhow::{Result, bail};

use crate::digest::Sha256;
use crate::io::ReadAt;
use crate::io::overlay::{PAGE, Pages};

/// The base + the node's pages, `size` bytes long.
pub struct Lower {
    base: File,
    base_len: u64,
    pages: Pages,
    size: u64,
}

impl Lower {
    /// `pages` are the node's patched pages over `base` (`base_len` bytes);
    /// the disk is `size` bytes (at least `base_len`; a multiple of 4 KiB).
    pub fn new(base: File, base_len: u64, pages: Pages, size: u64) -> Result<Lower> {
        if size < base_len {
            bail!(
                "the disk size {size} is smaller than the image ({base_len} bytes); \
                 raise netboot.disk_size"
            );
        }
        if !size.is_multiple_of(PAGE) {
            bail!("the disk size {size} is not a multiple of 4096 bytes");
        }
        let mut lower = Lower {
            base,
            base_len,
            pages,
            size,
        };
        if size > base_len {
            lower.move_gpt_backup()?;
        }
        Ok(lower)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// What identifies this layer's bytes for a delta laid over it: the
    /// base's size and what identifies its content (`base_id`: a checksum
    /// or the cache path, from the caller), the disk size and every page.
    /// A rebuilt profile changes the pages, and so the fingerprint.
    pub fn fingerprint(&self, base_id: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(format!("{base_id}\0{}\0{}\0", self.base_len, self.size).as_bytes());
        for (idx, page) in &self.pages {
            h.update(idx.to_le_bytes());
            h.update(page);
        }
        Sha256::from_bytes(h.finalize().into()).to_string()
    }

    /// Reads `buf.len()` bytes at `offset` of the layer under the pages.
    fn read_under(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let avail = self.base_len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n > 0 {
            ReadAt::read_exact_at(&self.base, &mut buf[..n], offset)?;
        }
        buf[n..].fill(0);
        Ok(())
    }

    /// Writes `bytes` at `offset` into the pages (read-modify-write of the
    /// pages it touches).
    fn put(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < bytes.len() {
            let at = offset + done as u64; // as: usize fits u64
            let idx = at / PAGE;
            let in_page = (at % PAGE) as usize; // as: < PAGE
            let n = (PAGE as usize - in_page).min(bytes.len() - done); // as: PAGE is 4096
            if !self.pages.contains_key(&idx) {
                let mut page = vec![0u8; PAGE as usize].into_boxed_slice(); // as: 4096
                self.read_under(&mut page, idx * PAGE)?;
                self.pages.insert(idx, page);
            }
            if let Some(page) = self.pages.get_mut(&idx) {
                page[in_page..in_page + n].copy_from_slice(&bytes[done..done + n]);
            }
            done += n;
        }
        Ok(())
    }

    /// On a GPT disk grown past the base: writes the backup entries and
    /// header at the new end and points the primary header at them, with
    /// its last usable LBA moved so the free space can be used
    /// (`disk::grow`).
    fn move_gpt_backup(&mut self) -> Result<()> {
        let writes = crate::disk::grow::gpt_moves(
            &|buf, offset| self.read_at(buf, offset),
            self.base_len,
            self.size,
        )
        .map_err(anyhow::Error::msg)?;
        for (offset, bytes) in writes {
            self.put(offset, &bytes)?;
        }
        Ok(())
    }
}

impl ReadAt for Lower {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64) // as: usize fits u64
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "read past the disk's end")
            })?;
        let mut at = offset;
        while at < end {
            let idx = at / PAGE;
            let in_page = (at % PAGE) as usize; // as: < PAGE
            let n = ((PAGE - at % PAGE).min(end - at)) as usize; // as: <= PAGE
            let dst = &mut buf[(at - offset) as usize..][..n]; // as: inside buf
            match self.pages.get(&idx) {
                Some(page) => dst.copy_from_slice(&page[in_page..in_page + n]),
                None => self.read_under(dst, at)?,
            }
            at += n as u64; // as: usize fits u64
        }
        Ok(())
    }
}

impl Lower {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        ReadAt::read_exact_at(self, buf, offset)
    }
}

/// The lower layer as a read-only disk: what the node's delta is laid
/// over, and what a client sees before any write.
impl super::disk::Disk for Lower {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        ReadAt::read_exact_at(self, buf, offset)
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the image layer is read-only",
        ))
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn trim(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}
