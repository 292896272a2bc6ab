//! The used-block map behind every `.bmap` (`build::mapped`), against maps
//! made from tools we did not write: `dumpe2fs` (ext4 free blocks, with
//! e2fsprogs' own handling of BLOCK_UNINIT groups), `fsck.fat -v` (where
//! the data area starts, cluster size, used-cluster count) with
//! `mshowfat` (each file's and directory's clusters), and `sfdisk` for the
//! partitions. On filesystems made with mke2fs/mkfs.vfat in shapes we
//! meet, on every fixture layout, and on a built image's `.bmap`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use homelab_image::build::mapped::{self, BlockRuns, PartitionUse};
use homelab_image::fs::ext4::{Content, Meta, Op};
use homelab_image::image::Image;
use homelab_image::io::{ByteLen, ByteOffset, ByteRange, PartitionWindow};

use crate::build::{build_ok, profile};
use crate::ext4_support::{CONFIGS, bytes, mkfs, window, write};
use crate::util::{blkid_at, copy_fixture, extract_partition, fixture, patch, stdout_of};

/// Byte spans `[start, end)`.
type Spans = Vec<(u64, u64)>;

/// The runs `(first, last)` of a sorted list of block numbers.
fn runs_of(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match runs.last_mut() {
            Some(r) if r.1 + 1 == b => r.1 = b,
            _ => runs.push((b, b)),
        }
    }
    runs
}

/// Parses `1-5, 7, 9-12` into runs.
fn parse_runs(list: &str) -> Vec<(u64, u64)> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('-') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => {
                let a = s.parse().unwrap();
                (a, a)
            }
        })
        .collect()
}

/// What dumpe2fs says an ext4 volume uses: every block its per-group
/// "Free blocks" lists leave out, and the boot block before a 1 KiB
/// volume's superblock (the map's rule; no bitmap covers it).
fn ext4_oracle(volume: &Path) -> Spans {
    let text = stdout_of(Command::new("dumpe2fs").arg(volume));
    let header = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("dumpe2fs printed no {name}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (count, bs, first) = (
        header("Block count:"),
        header("Block size:"),
        header("First block:"),
    );
    let mut free: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  Free blocks: "))
        .flat_map(parse_runs)
        .collect();
    free.sort_unstable();
    let mut used = Vec::new();
    let mut pos = first;
    for (a, b) in free {
        if a > pos {
            used.push((pos * bs, a * bs));
        }
        pos = pos.max(b + 1);
    }
    if pos < count {
        used.push((pos * bs, count * bs));
    }
    if first > 0 {
        used.insert(0, (0, first * bs));
    }
    used
}

/// What mtools and fsck.fat say a FAT volume uses: everything before the
/// data area, and the clusters of every file and directory (the root's
/// too on FAT32), their number checked against fsck.fat's count.
fn fat_oracle(volume: &Path) -> Spans {
    let v = volume.to_str().unwrap();
    let fsck = stdout_of(Command::new("fsck.fat").args(["-n", "-v"]).arg(volume));
    let number_before = |tail: &str| -> u64 {
        let line = fsck.lines().find(|l| l.contains(tail)).unwrap();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let cluster_bytes = number_before(" bytes per cluster");
    let data_start: u64 = fsck
        .lines()
        .find_map(|l| l.strip_prefix("Data area starts at byte "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let used_count: u64 = fsck
        .lines()
        .find(|l| l.contains(" files, "))
        .and_then(|l| l.split(" files, ").nth(1))
        .and_then(|t| t.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    let mtools = |cmd: &str, args: &[&str]| -> String {
        stdout_of(
            Command::new(cmd)
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(v)
                .args(args),
        )
    };
    let mut paths: Vec<String> = mtools("mdir", &["-/", "-b", "-a", "::/"])
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if fsck.contains("32 bit entries") {
        paths.push("::/".into());
    }
    let mut clusters = Vec::new();
    for p in &paths {
        let chain = mtools("mshowfat", &[p]);
        for group in chain.split('<').skip(1) {
            let inner = group.split('>').next().unwrap();
            for (a, b) in parse_runs(&inner.replace(' ', ",")) {
                clusters.extend(a..=b);
            }
        }
    }
    clusters.sort_unstable();
    clusters.dedup();
    assert_eq!(
        clusters.len() as u64,
        used_count,
        "{v}: mshowfat found other clusters than fsck.fat counts"
    );
    let mut spans = vec![(0, data_start)];
    for (a, b) in runs_of(&clusters) {
        spans.push((
            data_start + (a - 2) * cluster_bytes,
            data_start + (b - 1) * cluster_bytes,
        ));
    }
    spans
}

/// Merges touching spans, for comparing span lists.
fn merged(mut spans: Spans) -> Spans {
    spans.sort_unstable();
    let mut out: Spans = Vec::new();
    for (a, b) in spans.into_iter().filter(|(a, b)| b > a) {
        match out.last_mut() {
            Some(l) if l.1 >= a => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// sfdisk's view of `img`. The 4096-byte-sector fixture's was taken from a
/// loop device with that sector size (this sfdisk reads image files with
/// 512-byte sectors only), and is stored beside it.
fn sfdisk_of(img: &Path) -> serde_json::Value {
    let text = if img.ends_with("gpt-4k.img") {
        std::fs::read_to_string(img.with_file_name("gpt-4k.sfdisk.json")).unwrap()
    } else {
        stdout_of(Command::new("sfdisk").arg("--json").arg(img))
    };
    serde_json::from_str(&text).unwrap()
}

/// The map of a whole image made from the oracles: sfdisk's partitions,
/// blkid's filesystem types, and the two filesystem oracles above.
fn image_oracle(img: &Path, tmp: &Path) -> BlockRuns {
    let json = sfdisk_of(img);
    let table = &json["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let len = std::fs::metadata(img).unwrap().len();
    let mut spans = Vec::new();
    let mut data: Spans = Vec::new();
    for p in table["partitions"].as_array().unwrap() {
        let ty = p["type"].as_str().unwrap();
        if table["label"] == "dos" && ["5", "f", "85"].contains(&ty) {
            continue; // an extended container: its EBRs are outside data
        }
        let start = p["start"].as_u64().unwrap() * sector;
        let size = p["size"].as_u64().unwrap() * sector;
        data.push((start, start + size));
        let part = tmp.join("oracle-part");
        extract_partition(img, start, size, &part);
        let used = match blkid_at(img, start).get("TYPE").map(String::as_str) {
            Some("vfat") => fat_oracle(&part),
            Some("ext4") => ext4_oracle(&part),
            _ => vec![(0, size)],
        };
        spans.extend(used.into_iter().map(|(a, b)| (start + a, start + b)));
    }
    data.sort_unstable();
    let mut pos = 0;
    for (a, b) in data {
        spans.push((pos, a));
        pos = pos.max(b);
    }
    spans.push((pos, len));
    BlockRuns::from_spans(spans)
}

/// Asserts two block maps are equal, showing where they part.
fn assert_same_map(ours: &BlockRuns, oracle: &BlockRuns, what: &str) {
    if ours == oracle {
        return;
    }
    let a = ours.runs();
    let b = oracle.runs();
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: our map ({} blocks, {} runs) differs from the oracle's ({} blocks, {} runs) \
         at run {i}: ours {:?}, oracle {:?}",
        ours.blocks(),
        a.len(),
        oracle.blocks(),
        b.len(),
        &a[i..a.len().min(i + 3)],
        &b[i..b.len().min(i + 3)],
    );
}

#[test]
fn the_ext4_map_is_what_dumpe2fs_calls_used_in_every_shape_before_and_after_a_write() {
    let tmp = tempfile::tempdir().unwrap();
    for cfg in CONFIGS {
        let img = mkfs(tmp.path(), cfg);
        let what = format!("{} fresh", cfg.name);
        let ours = homelab_image::fs::ext4::used_spans(&window(&img))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(merged(ours), merged(ext4_oracle(&img)), "{what}");
        // Files big and small, some of them into groups mke2fs left
        // BLOCK_UNINIT.
        let meta = |mode| Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: crate::ext4_support::NOW,
        };
        let mut ops = vec![Op::Mkdir {
            path: "/d".into(),
            meta: meta(0o755),
            parents: false,
        }];
        for (i, len) in [0usize, 1, 4096, 70_000, 3 << 20, 9 << 20]
            .into_iter()
            .enumerate()
        {
            ops.push(Op::WriteFile {
                path: format!("/d/f{i}"),
                content: Content::Bytes(bytes(len, i as u64)),
                meta: meta(0o644),
            });
        }
        write(&img, &ops).unwrap_or_else(|e| panic!("{}: writing: {e}", cfg.name));
        let what = format!("{} after a write", cfg.name);
        let ours = homelab_image::fs::ext4::used_spans(&window(&img))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(merged(ours), merged(ext4_oracle(&img)), "{what}");
    }
}

/// A FAT volume made by mkfs.vfat with `args`, holding directories and
/// files of several sizes, one of them deleted (its clusters free again).
fn fat_volume(dir: &Path, name: &str, mib: u64, args: &[&str]) -> PathBuf {
    let img = dir.join(format!("{name}.fat"));
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(mib << 20).unwrap();
    stdout_of(Command::new("mkfs.vfat").args(args).arg(&img));
    let i = img.to_str().unwrap();
    let m = |cmd: &str, args: &[&str]| {
        stdout_of(
            Command::new(cmd)
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", i])
                .args(args),
        );
    };
    m("mmd", &["::/a", "::/a/b"]);
    for (k, len) in [0usize, 100, 5000, 70_000, 300_000].into_iter().enumerate() {
        let src = dir.join(format!("src{k}"));
        std::fs::write(&src, bytes(len, k as u64)).unwrap();
        let s = src.to_str().unwrap();
        m("mcopy", &[s, &format!("::/a/f{k}")]);
        m("mcopy", &[s, &format!("::/a/b/g{k}")]);
        m("mcopy", &[s, &format!("::/top{k}")]);
    }
    m("mdel", &["::/a/f3", "::/top1"]);
    img
}

fn file_window(img: &Path) -> PartitionWindow {
    let file = std::fs::File::open(img).unwrap();
    let len = file.metadata().unwrap().len();
    PartitionWindow::new(
        Arc::new(file),
        ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap(),
    )
}

#[test]
fn the_fat_map_is_what_mtools_and_fsck_fat_call_used_for_fat12_16_and_32() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, mib, args) in [
        ("fat12", 4, &["-F", "12"][..]),
        ("fat16", 32, &["-F", "16", "-s", "4"][..]),
        ("fat32", 64, &["-F", "32", "-s", "1"][..]),
        ("fat32-4k", 320, &["-F", "32", "-s", "8"][..]),
    ] {
        let img = fat_volume(tmp.path(), name, mib, args);
        let ours =
            mapped::fat::used_spans(&file_window(&img)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(merged(ours), merged(fat_oracle(&img)), "{name}");
    }
}

#[test]
fn a_cluster_that_only_the_second_fat_calls_used_is_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fat_volume(tmp.path(), "fat32", 64, &["-F", "32", "-s", "1"]);
    let fsck = stdout_of(Command::new("fsck.fat").args(["-n", "-v"]).arg(&img));
    let field = |prefix: &str| -> u64 {
        fsck.lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .and_then(|t| t.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let fat1 = field("First FAT starts at byte ");
    let fat_bytes: u64 = fsck
        .lines()
        .find(|l| l.contains(" bytes per FAT"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let data = field("Data area starts at byte ");
    // Cluster 50000 is free in both FATs; mark it end-of-chain in FAT 2.
    let cluster = 50_000u64;
    let at = data + (cluster - 2) * 512;
    let before = mapped::fat::used_spans(&file_window(&img)).unwrap();
    assert!(
        !before.iter().any(|&(a, b)| a <= at && at < b),
        "{before:?}"
    );
    patch(
        &img,
        fat1 + fat_bytes + cluster * 4,
        &0x0FFF_FFF8u32.to_le_bytes(),
    );
    let after = mapped::fat::used_spans(&file_window(&img)).unwrap();
    assert!(
        after.iter().any(|&(a, b)| a <= at && at + 512 <= b),
        "cluster {cluster} (byte {at}) is not mapped: {after:?}"
    );
}

#[test]
fn every_fixture_layout_maps_what_the_oracles_say_it_uses() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "ubuntu-raspi.img",
        "ubuntu-raspi-2604.img",
        "armbian-rpi.img",
        "armbian-single-gpt.img",
        "armbian-single-mbr.img",
        "mbr-logical.img",
        "gpt-4k.img",
    ] {
        let img = fixture(name);
        let usage = mapped::used_blocks(&Image::open(&img).unwrap());
        assert_same_map(&usage.runs, &image_oracle(&img, tmp.path()), name);
        let len = std::fs::metadata(&img).unwrap().len();
        assert!(
            usage.runs.blocks() < len / 4096,
            "{name}: everything is mapped"
        );
        if name == "mbr-logical.img" {
            // The unformatted logical partition is mapped whole.
            assert!(
                usage
                    .partitions
                    .iter()
                    .any(|(n, u)| *n == 6 && *u == PartitionUse::Unknown),
                "{:?}",
                usage.partitions
            );
        }
    }
}

#[test]
fn an_ext4_partition_that_cannot_be_read_is_mapped_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("mbr-logical.img", tmp.path());
    // Partition 5 (ext4, 1 KiB blocks): break group descriptor 0's
    // checksum. The superblock still reads, so the partition is ext4 to
    // the probe, but its bitmaps cannot be trusted.
    let p5 = 36864 * 512;
    let gd0 = p5 + 2048; // block 2 with 1 KiB blocks
    let raw = crate::util::read_at(&img, gd0 + 0x1E, 2);
    patch(&img, gd0 + 0x1E, &[raw[0] ^ 0xFF, raw[1]]);
    let usage = mapped::used_blocks(&Image::open(&img).unwrap());
    let how = &usage.partitions.iter().find(|(n, _)| *n == 5).unwrap().1;
    match how {
        PartitionUse::Unreadable { why } => {
            assert!(why.contains("group descriptor 0"), "{why}")
        }
        other => panic!("partition 5: {other:?}"),
    }
    let first = p5 / 4096;
    let last = (p5 + 32768 * 512 - 1) / 4096;
    assert!(
        usage
            .runs
            .runs()
            .iter()
            .any(|&(a, b)| a <= first && last <= b),
        "partition 5 is not mapped whole: {:?}",
        usage.runs
    );
}

#[test]
fn a_built_image_bmap_maps_exactly_what_the_oracles_say_it_uses() {
    let tmp = tempfile::tempdir().unwrap();
    for (base, example, node) in [
        ("ubuntu-raspi.img", "pi4-microcloud.yaml", "pi1"),
        ("armbian-single-gpt.img", "armbian-rock5b.yaml", "rock1"),
    ] {
        let dir = tmp.path().join(base);
        std::fs::create_dir_all(&dir).unwrap();
        let p = profile(&dir, example, &fixture(base));
        let out = dir.join("out");
        build_ok(&p, &["--node", node, "--out", out.to_str().unwrap()]);
        let img = out.join(format!("{node}.img"));
        let bmap = std::fs::read_to_string(format!("{}.bmap", img.display())).unwrap();
        let spans = bmap.lines().filter(|l| l.contains("<Range")).map(|l| {
            let span = l.split('>').nth(1).unwrap().split('<').next().unwrap();
            let (a, b) = match span.trim().split_once('-') {
                Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                None => {
                    let a = span.trim().parse::<u64>().unwrap();
                    (a, a)
                }
            };
            (a * 4096, (b + 1) * 4096)
        });
        let from_bmap = BlockRuns::from_spans(spans);
        assert_same_map(
            &from_bmap,
            &image_oracle(&img, &dir),
            &format!("{node} from {base}"),
        );
    }
}
