//! Tests of the chain walker on FAT12/16/32 volumes fatfs makes, damaged
//! on purpose.

use super::*;
use crate::io::{ByteLen, ByteOffset, ByteRange, Storage};
use std::io::Write;
use std::sync::Arc;

/// A fresh volume of `fat_type` made by fatfs, with files of 0, 1 and
/// 5000 bytes in the root and one in a subdirectory.
fn volume(fat_type: fatfs::FatType, mib: u64) -> (tempfile::NamedTempFile, PartitionWindow, Bpb) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let len = mib << 20;
    tmp.as_file().set_len(len).unwrap();
    let mut f = tmp.reopen().unwrap();
    fatfs::format_volume(
        &mut f,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fat_type)
            .bytes_per_cluster(512),
    )
    .unwrap();
    let file: Arc<dyn Storage> = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp.path())
            .unwrap(),
    );
    let window = PartitionWindow::new(file, ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap());
    {
        let fs = fatfs::FileSystem::new(window.clone(), fatfs::FsOptions::new()).unwrap();
        let root = fs.root_dir();
        root.create_file("empty").unwrap();
        root.create_file("one").unwrap().write_all(b"1").unwrap();
        root.create_file("a-long-file-name.txt")
            .unwrap()
            .write_all(&[7; 5000])
            .unwrap();
        let d = root.create_dir("d").unwrap();
        d.create_file("c.txt")
            .unwrap()
            .write_all(&[3; 700])
            .unwrap();
        drop((d, root));
        fs.unmount().unwrap();
    }
    let mut sector = [0u8; 512];
    window.read_exact_at(0, &mut sector).unwrap();
    let bpb = Bpb::parse(&sector, len).unwrap();
    (tmp, window, bpb)
}

/// Sets the FAT entry of `c` in every FAT.
fn set(window: &PartitionWindow, bpb: &Bpb, c: u32, v: u32) {
    for copy in 0..u64::from(bpb.fats) {
        let fat =
            bpb.fat_offset() + copy * u64::from(bpb.fat_size) * u64::from(bpb.bytes_per_sector);
        let c64 = u64::from(c);
        match bpb.fat_type {
            FatType::Fat12 => {
                let at = fat + c64 + c64 / 2;
                let mut b = [0u8; 2];
                window.read_exact_at(at, &mut b).unwrap();
                let old = u16::from_le_bytes(b);
                let new = if c & 1 == 0 {
                    (old & 0xF000) | (v as u16 & 0x0FFF)
                } else {
                    (old & 0x000F) | ((v as u16) << 4)
                };
                window.write_all_at(at, &new.to_le_bytes()).unwrap();
            }
            FatType::Fat16 => window
                .write_all_at(fat + c64 * 2, &(v as u16).to_le_bytes())
                .unwrap(),
            FatType::Fat32 => window
                .write_all_at(fat + c64 * 4, &v.to_le_bytes())
                .unwrap(),
        }
    }
}

/// The chain of the file `name` in the root, read with our table.
fn chain_of(window: &PartitionWindow, bpb: &Bpb, name: &str) -> Vec<u32> {
    let short = {
        let fs = fatfs::FileSystem::new(window.clone(), fatfs::FsOptions::new()).unwrap();
        let e = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap())
            .find(|e| e.file_name() == name)
            .unwrap();
        e.short_file_name_as_bytes().to_vec()
    };
    let mut table = Table::new(window, bpb);
    let mut out = vec![first_cluster_of(window, bpb, &short)];
    loop {
        match table.link(*out.last().unwrap()).unwrap() {
            Link::Next(n) => out.push(n),
            Link::End => return out,
            other => panic!("{other:?} in the chain of {name}"),
        }
    }
}

/// First cluster of the root entry whose 8.3 name starts `short`.
fn first_cluster_of(window: &PartitionWindow, bpb: &Bpb, short: &[u8]) -> u32 {
    let (start, len) = if bpb.fat_type == FatType::Fat32 {
        (bpb.cluster_offset(bpb.root_cluster), bpb.cluster_size())
    } else {
        bpb.root_dir_region()
    };
    let mut buf = vec![0u8; len as usize];
    window.read_exact_at(start, &mut buf).unwrap();
    let want = short_field(short);
    for e in buf.chunks_exact(32) {
        if e[..11] == want && e[11] != 0x0F {
            return (u32::from(le_u16(e, 20)) << 16) | u32::from(le_u16(e, 26));
        }
    }
    panic!("no entry {short:?}");
}

/// "ONE" → "ONE        ", "A-LONG~1.TXT" → "A-LONG~1TXT".
fn short_field(name: &[u8]) -> [u8; 11] {
    let mut f = [b' '; 11];
    let s = String::from_utf8_lossy(name).to_string();
    let (b, e) = s.split_once('.').unwrap_or((&s, ""));
    f[..b.len()].copy_from_slice(b.as_bytes());
    f[8..8 + e.len()].copy_from_slice(e.as_bytes());
    f
}

const TYPES: [(fatfs::FatType, u64); 3] = [
    (fatfs::FatType::Fat12, 1),
    (fatfs::FatType::Fat16, 8),
    (fatfs::FatType::Fat32, 40),
];

#[test]
fn volumes_fatfs_makes_pass_the_full_check() {
    for (t, mib) in TYPES {
        let (_t, w, bpb) = volume(t, mib);
        assert_eq!(format!("{t:?}"), format!("{:?}", bpb.fat_type));
        check(&w, &bpb, Scope::Everything).unwrap();
        assert_eq!(chain_of(&w, &bpb, "a-long-file-name.txt").len(), 10);
    }
}

#[test]
fn a_looped_file_chain_is_refused_naming_the_file_and_cluster() {
    for (t, mib) in TYPES {
        let (_t, w, bpb) = volume(t, mib);
        let chain = chain_of(&w, &bpb, "a-long-file-name.txt");
        set(&w, &bpb, chain[9], chain[3]);
        let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
        let want = format!(
            "/a-long-file-name.txt: its cluster chain loops back to cluster {}",
            chain[3]
        );
        assert!(e.contains(&want), "{t:?}: {e}");
        // The root directory alone is fine: reading the label works.
        check(&w, &bpb, Scope::RootDir).unwrap();
    }
}

#[test]
fn broken_links_and_wrong_lengths_are_refused_naming_the_cluster() {
    for (t, mib) in TYPES {
        let (_t, w, bpb) = volume(t, mib);
        let chain = chain_of(&w, &bpb, "a-long-file-name.txt");
        let cases = [
            (
                chain[4],
                0,
                format!("cluster {} is marked free in the middle", chain[4]),
            ),
            (
                chain[4],
                1,
                format!(
                    "cluster {} links to cluster 1, which is not a data cluster",
                    chain[4]
                ),
            ),
            (
                chain[4],
                bpb.cluster_count + 2,
                format!("links to cluster {}", bpb.cluster_count + 2),
            ),
            (
                chain[8],
                0x0FFF_FFFF,
                "only 9 clusters (4608 bytes)".to_string(),
            ),
            (
                chain[9],
                chain_of(&w, &bpb, "one")[0],
                "also belongs to another file or directory".to_string(),
            ),
        ];
        for (c, v, want) in cases {
            let old = Table::new(&w, &bpb).link(c).unwrap();
            set(&w, &bpb, c, v);
            let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
            assert!(e.contains(&want), "{t:?}: {e}");
            set(
                &w,
                &bpb,
                c,
                match old {
                    Link::Next(n) => n,
                    _ => 0x0FFF_FFFF,
                },
            );
            check(&w, &bpb, Scope::Everything).unwrap();
        }
    }
}

#[test]
fn a_subdirectory_loop_and_a_wrong_dot_entry_are_refused() {
    for (t, mib) in TYPES {
        let (_t, w, bpb) = volume(t, mib);
        let d = first_cluster_of(&w, &bpb, b"D");
        set(&w, &bpb, d, d);
        let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
        assert!(
            e.contains(&format!("/d: its cluster chain loops back to cluster {d}")),
            "{t:?}: {e}"
        );
        set(&w, &bpb, d, 0x0FFF_FFFF);
        // `.` is in d's first cluster (after a long-name entry fatfs
        // writes for it).
        let mut first = vec![0u8; bpb.cluster_size() as usize];
        w.read_exact_at(bpb.cluster_offset(d), &mut first).unwrap();
        let dot = first
            .chunks_exact(32)
            .position(|e| dot_name(e) == Some("."))
            .unwrap() as u64;
        w.write_all_at(bpb.cluster_offset(d) + 32 * dot + 26, &5u16.to_le_bytes())
            .unwrap();
        let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
        assert!(
            e.contains(&format!("/d: its \".\" entry points to cluster 5, not {d}")),
            "{t:?}: {e}"
        );
    }
}

#[test]
fn a_looped_fat32_root_is_refused_when_reading_the_label() {
    let (_t, w, bpb) = volume(fatfs::FatType::Fat32, 40);
    set(&w, &bpb, bpb.root_cluster, bpb.root_cluster);
    let e = check(&w, &bpb, Scope::RootDir).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "/: its cluster chain loops back to cluster {}",
            bpb.root_cluster
        )),
        "{e}"
    );
}

#[test]
fn a_damaged_fs_info_sector_is_named() {
    let (_t, w, bpb) = volume(fatfs::FatType::Fat32, 40);
    let at = u64::from(bpb.fs_info_sector) * 512 + 484;
    w.write_all_at(at, &[0; 4]).unwrap();
    let e = check(&w, &bpb, Scope::RootDir).unwrap_err().to_string();
    assert!(
        e.contains("FSInfo sector 1: FSI_StrucSig is 0x00000000"),
        "{e}"
    );
}

#[test]
fn long_names_and_case_flags_name_files_as_fatfs_does() {
    let mut lfn = LongName::default();
    // "Ab.txt" as one long-name part before the short entry AB.TXT.
    let mut short = [b' '; 32];
    short[..11].copy_from_slice(b"AB      TXT");
    short[11] = 0x20;
    let sum = short[..11]
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
    let mut part = [0xFFu8; 32];
    part[0] = 0x41;
    part[11] = 0x0F;
    part[13] = sum;
    for (i, ch) in "Ab.txt\0".encode_utf16().enumerate() {
        let off = [1, 3, 5, 7, 9, 14, 16][i];
        part[off..off + 2].copy_from_slice(&ch.to_le_bytes());
    }
    lfn.push(&part);
    assert_eq!(lfn.take(&short).as_deref(), Some("Ab.txt"));
    // A wrong checksum: the short name, lower-cased by its flags.
    part[13] = sum.wrapping_add(1);
    lfn.push(&part);
    assert_eq!(lfn.take(&short), None);
    short[12] = 0x18;
    assert_eq!(short_name(&short), "ab.txt");
}

#[test]
fn the_whole_root_sector_is_checked_as_fatfs_reads_it() {
    // Found by the fat_rw fuzz target: a FAT12/16 root of 4 entries takes
    // a whole sector, and fatfs lists all 16 slots of it; an entry in slot
    // 6 used to escape the check and send fatfs outside the partition.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let len = 1u64 << 20;
    tmp.as_file().set_len(len).unwrap();
    fatfs::format_volume(
        tmp.reopen().unwrap(),
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat12)
            .max_root_dir_entries(4),
    )
    .unwrap();
    let file: Arc<dyn Storage> = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp.path())
            .unwrap(),
    );
    let w = PartitionWindow::new(file, ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap());
    let mut sector = [0u8; 512];
    w.read_exact_at(0, &mut sector).unwrap();
    let bpb = Bpb::parse(&sector, len).unwrap();
    assert_eq!(bpb.root_entries, 4);
    let (root, _) = bpb.root_dir_region();
    let mut deleted = [0u8; 32];
    deleted[0] = 0xE5;
    for slot in 0..6 {
        w.write_all_at(root + slot * 32, &deleted).unwrap();
    }
    let mut dir = [0u8; 32];
    dir[..11].copy_from_slice(b"ESCAPED    ");
    dir[11] = 0x10;
    dir[26..28].copy_from_slice(&5000u16.to_le_bytes());
    w.write_all_at(root + 6 * 32, &dir).unwrap();
    let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
    assert!(e.contains("/ESCAPED: starts at cluster 5000"), "{e}");
    assert_eq!(bpb.root_dir_region().1, 512, "the root is one whole sector");
}

#[test]
fn names_that_lead_to_two_entries_or_none_are_refused() {
    let (_t, w, bpb) = volume(fatfs::FatType::Fat16, 8);
    let (root, len) = bpb.root_dir_region();
    let mut buf = vec![0u8; len as usize];
    w.read_exact_at(root, &mut buf).unwrap();
    let one = buf
        .chunks_exact(32)
        .position(|e| &e[..11] == b"ONE        ")
        .unwrap() as u64;
    let free = buf.chunks_exact(32).position(|e| e[0] == 0).unwrap() as u64;
    let mut entry = [0u8; 32];
    w.read_exact_at(root + one * 32, &mut entry).unwrap();
    // A second entry named ONE (its name differs only in case).
    let mut twin = entry;
    twin[12] = 0x08; // shown as "one"
    twin[26..28].copy_from_slice(&0u16.to_le_bytes());
    twin[28..32].copy_from_slice(&0u32.to_le_bytes());
    w.write_all_at(root + free * 32, &twin).unwrap();
    let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
    assert!(e.contains("/: more than one entry is named \"one\""), "{e}");
    // A name no path can hold.
    twin[..11].copy_from_slice(b"A/B        ");
    w.write_all_at(root + free * 32, &twin).unwrap();
    let e = check(&w, &bpb, Scope::Everything).unwrap_err().to_string();
    assert!(e.contains("an entry is named \"a/b\""), "{e}");
}
