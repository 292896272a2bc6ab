//! Mounts mutated FAT volumes from memory the way every command does (the
//! boot-sector and cluster-chain checks, then fatfs), lists every
//! directory, reads every file, then replaces, creates and removes files
//! and checks the volume again. Any panic, hang or unbounded allocation
//! is a bug; so is a volume that passed the check, was edited without an
//! error, and then fails the check: fatfs would have left it damaged.
//! Seed the corpus with `fuzz/make-corpus` (FAT12/16/32 volumes stored
//! without their trailing zeros: an input is zero-extended to the size
//! its boot sector declares, at most 40 MiB, so FAT32 — 32 MiB at least —
//! fits in a small input).
#![no_main]

use std::sync::Arc;

use homelab_image::fs::FsError;
use homelab_image::fs::fat::FatVolume;
use homelab_image::io::{ByteLen, ByteOffset, ByteRange, MemStorage, PartitionWindow};
use libfuzzer_sys::fuzz_target;

/// Lists `dir` and below, reading every file; at most `budget` entries.
fn walk(vol: &FatVolume, dir: &str, depth: u32, budget: &mut u32) {
    let Ok(entries) = vol.list(dir) else { return };
    for e in entries {
        if *budget == 0 || depth > 32 {
            return;
        }
        *budget -= 1;
        let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
        if e.kind == homelab_image::fs::EntryKind::Dir {
            walk(vol, &path, depth + 1, budget);
        } else {
            let mut sink = std::io::sink();
            if let Ok(n) = vol.read_to(&path, &mut sink) {
                // A checked volume's files read back exactly their size.
                assert_eq!(n, e.size, "{path}: read {n} bytes of {}", e.size);
            }
        }
    }
}

/// The volume size the boot sector declares (capped), or the input's.
fn declared_len(data: &[u8]) -> usize {
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([data[o], data[o + 1]]));
    let bps = u16_at(11).min(4096);
    let sectors = match u16_at(19) {
        0 => u64::from(u32::from_le_bytes([data[32], data[33], data[34], data[35]])),
        n => n,
    };
    usize::try_from((bps * sectors).min(40 << 20)).unwrap().max(data.len())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 512 || data.len() > 4 << 20 {
        return;
    }
    let mut bytes = data.to_vec();
    bytes.resize(declared_len(data), 0);
    let len = bytes.len() as u64;
    let mem = Arc::new(MemStorage::new(bytes));
    let window = PartitionWindow::new(
        mem.clone(),
        ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap(),
    );
    let _ = FatVolume::probe_label(window.clone());
    let Ok(vol) = FatVolume::open(window.clone()) else { return };
    let _ = vol.label();
    let mut budget = 2000;
    walk(&vol, "/", 0, &mut budget);
    let edits: [Result<(), FsError>; 4] = [
        vol.write_file("/fuzz-new-file-with-a-long-name.txt", &[0x5A; 3000]),
        vol.write_file("/CMDLINE.TXT", b"console=tty1 root=/dev/mmcblk0p2\n"),
        vol.remove_file("/README").or_else(|e| match e {
            FsError::NotFound(_) | FsError::IsADirectory(_) => Ok(()),
            e => Err(e),
        }),
        vol.write_file("/d/inner.txt", b"x").or_else(|e| match e {
            FsError::NotFound(_) | FsError::NotADirectory(_) => Ok(()),
            e => Err(e),
        }),
    ];
    let all_ok = edits.iter().all(Result::is_ok);
    let after = vol.unmount_checked();
    if all_ok {
        if let Err(e) = after {
            panic!("fatfs left a checked volume failing the check: {e}");
        }
    }
});
