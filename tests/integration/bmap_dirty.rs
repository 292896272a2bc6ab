//! A built image written by `bmaptool copy` onto a re-used card: a loop
//! device whose backing file is pre-filled with 0xA5 stands in for a card
//! that held something else. Only the bmap's ranges are written, so every
//! block a filesystem uses must be in them, zero or not. Judged by
//! fsck.fat -n, e2fsck -fn, the files themselves (mcopy, debugfs rdump,
//! diff -r against the image's) and a byte comparison over every mapped
//! range. Each built layout: Ubuntu raspi 24.04 and 26.04, Armbian RPi,
//! Armbian GPT with one root.
//!
//! Needs root and loop devices; without them the tests fail, saying so.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{build_ok, profile};
use crate::ext4_support::assert_fsck_clean;
use crate::util::{blkid_at, extract_partition, fixture, run_ok, sfdisk_json};

/// The card's old contents.
pub(crate) const DIRTY: u8 = 0xA5;
const BLOCK: u64 = 4096;

/// Why loop devices cannot be used here, if they cannot (for tests that
/// skip, with that reason printed, on such a machine).
pub(crate) fn no_loop_devices() -> Option<String> {
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    match Command::new("losetup").arg("-f").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "losetup -f: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run losetup: {e}")),
    }
}

/// A loop device over a file this test made; detached on drop.
pub(crate) struct Loop {
    pub(crate) dev: PathBuf,
}

impl Loop {
    /// Attaches `file` to the first free loop device (`losetup -f --show
    /// -P`). Fails the test when there is none to be had.
    pub(crate) fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-P"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run losetup (util-linux, root needed): {e}"));
        assert!(
            out.status.success(),
            "these tests need a loop device (run as root with /dev/loop-control): \
             losetup -f --show -P {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        // Made before checking, so a surprise is still detached.
        let made = Loop {
            dev: PathBuf::from(&dev),
        };
        assert!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
        made
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A file of `len` bytes, every one of them `DIRTY`.
pub(crate) fn dirty_file(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let chunk = vec![DIRTY; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        f.write_all(&chunk[..n as usize]).unwrap();
        left -= n;
    }
    f.into_inner().unwrap().sync_all().unwrap();
}

/// The bmap's mapped ranges as (first, last) blocks, and its image size.
pub(crate) fn bmap_ranges(bmap: &Path) -> (Vec<(u64, u64)>, u64) {
    let text = std::fs::read_to_string(bmap).unwrap();
    let field = |name: &str| -> u64 {
        let open = format!("<{name}>");
        let at = text.find(&open).unwrap() + open.len();
        text[at..]
            .split('<')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let ranges = text
        .lines()
        .filter(|l| l.contains("<Range"))
        .map(|l| {
            let span = l.split('>').nth(1).unwrap().split('<').next().unwrap();
            match span.trim().split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => {
                    let a = span.trim().parse().unwrap();
                    (a, a)
                }
            }
        })
        .collect();
    (ranges, field("ImageSize"))
}

/// Copies the tree of a FAT volume (mcopy -s) into `dst`.
fn mcopy_tree(volume: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    run_ok(
        Command::new("mcopy")
            .args(["-s", "-p", "-n", "-i"])
            .arg(volume)
            .arg("::*")
            .arg(dst)
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
}

/// Copies the tree of an ext4 volume (debugfs rdump) into `dst`.
fn rdump_tree(volume: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", dst.display()))
            .arg(volume),
    );
}

/// fsck.fat -n must exit 0; its first lines say why not.
fn assert_fsck_fat_clean(volume: &Path, what: &str) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(volume)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let head: Vec<&str> = text.lines().take(12).collect();
    assert!(
        out.status.success(),
        "{what}: fsck.fat -n exit {:?}:\n{}",
        out.status.code(),
        head.join("\n")
    );
}

fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: the files on the card differ from the image's:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts with `cmp` that `copy` holds `img`'s bytes over every range of
/// `img`'s bmap; returns the mapped blocks.
pub(crate) fn assert_mapped_ranges_equal(img: &Path, copy: &Path) -> BTreeSet<u64> {
    let bmap = PathBuf::from(format!("{}.bmap", img.display()));
    let (ranges, len) = bmap_ranges(&bmap);
    let mut mapped = BTreeSet::new();
    for &(first, last) in &ranges {
        let start = first * BLOCK;
        let n = ((last + 1) * BLOCK).min(len) - start;
        run_ok(
            Command::new("cmp")
                .arg(format!("--ignore-initial={start}"))
                .arg(format!("--bytes={n}"))
                .arg(img)
                .arg(copy),
        );
        mapped.extend(first..=last);
    }
    mapped
}

/// Writes `img` with bmaptool onto a dirty loop device and judges the card.
fn assert_survives_a_dirty_card(img: &Path, tmp: &Path) {
    let bmap = PathBuf::from(format!("{}.bmap", img.display()));
    assert_written_card_is_clean(img, tmp, &|dev: &Path| {
        run_ok(
            Command::new("bmaptool")
                .args(["-q", "copy", "--bmap"])
                .arg(&bmap)
                .arg(img)
                .arg(dev),
        );
    });
}

/// Writes `img` with `write` onto a loop device pre-filled with `DIRTY`
/// and judges the card: mapped ranges equal, an unmapped block still
/// dirty, every filesystem clean and holding the image's files, every
/// byte outside the partitions the image's. `img.bmap` must exist.
pub(crate) fn assert_written_card_is_clean(img: &Path, tmp: &Path, write: &dyn Fn(&Path)) {
    let name = img.file_name().unwrap().to_string_lossy().to_string();
    let bmap = PathBuf::from(format!("{}.bmap", img.display()));
    let len = std::fs::metadata(img).unwrap().len();
    let (_, size) = bmap_ranges(&bmap);
    assert_eq!(size, len, "{name}: bmap ImageSize");
    let backing = tmp.join("card");
    dirty_file(&backing, len);
    let card = Loop::attach(&backing);
    write(&card.dev);
    // Every mapped range holds the image's bytes.
    let mapped = assert_mapped_ranges_equal(img, &card.dev);
    let image = std::fs::File::open(img).unwrap();
    let dev = std::fs::File::open(&card.dev).unwrap();
    let mut b = vec![0u8; BLOCK as usize];
    // The card was dirty and stays so where the bmap maps nothing: the
    // test is not passing because everything was written.
    let blocks = len.div_ceil(BLOCK);
    let free = (0..blocks).find(|b| !mapped.contains(b));
    let free = free.unwrap_or_else(|| panic!("{name}: the bmap maps every block"));
    dev.read_exact_at(&mut b, free * BLOCK).unwrap();
    assert!(
        b.iter().all(|&x| x == DIRTY),
        "{name}: unmapped block {free} was written"
    );
    let table = sfdisk_json(img);
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let parts: Vec<(u64, u64)> = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let start = p["start"].as_u64().unwrap() * sector;
            (start, start + p["size"].as_u64().unwrap() * sector)
        })
        .collect();
    assert!(!parts.is_empty(), "{name}: no partitions");
    // Each filesystem on the card: clean, and holding the image's files.
    let mut judged = 0;
    for (i, &(start, end)) in parts.iter().enumerate() {
        let size = end - start;
        let fs = blkid_at(img, start)
            .get("TYPE")
            .cloned()
            .unwrap_or_default();
        let on_card = tmp.join(format!("card-p{i}"));
        let in_image = tmp.join(format!("image-p{i}"));
        extract_partition(&card.dev, start, size, &on_card);
        extract_partition(img, start, size, &in_image);
        let what = format!("{name} partition {} ({fs})", i + 1);
        let (card_tree, image_tree) = (
            tmp.join(format!("card-t{i}")),
            tmp.join(format!("image-t{i}")),
        );
        match fs.as_str() {
            "vfat" => {
                assert_fsck_fat_clean(&on_card, &what);
                mcopy_tree(&on_card, &card_tree);
                mcopy_tree(&in_image, &image_tree);
            }
            "ext4" => {
                assert_fsck_clean(&on_card, &what);
                rdump_tree(&on_card, &card_tree);
                rdump_tree(&in_image, &image_tree);
            }
            other => panic!("{what}: unexpected filesystem {other:?}"),
        }
        assert_same_tree(&image_tree, &card_tree, &what);
        judged += 1;
        for f in [&on_card, &in_image] {
            let _ = std::fs::remove_file(f);
        }
    }
    assert!(judged > 0);
    // Every byte outside the partitions (tables, bootloaders) is the image's.
    let mut pos = 0;
    let mut outside = Vec::new();
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    for &(start, end) in &sorted {
        outside.push((pos, start));
        pos = pos.max(end);
    }
    outside.push((pos, len));
    for (start, end) in outside.into_iter().filter(|(s, e)| e > s) {
        let mut x = vec![0u8; (end - start) as usize];
        let mut y = vec![0u8; (end - start) as usize];
        image.read_exact_at(&mut x, start).unwrap();
        dev.read_exact_at(&mut y, start).unwrap();
        assert!(
            x == y,
            "{name}: bytes {start}..{end}, outside the partitions, differ"
        );
    }
}

/// Builds `node` of `example` from fixture `base` (with `os` replaced when
/// given) and returns the image.
pub(crate) fn built(
    tmp: &Path,
    base: &str,
    example: &str,
    node: &str,
    os: Option<&str>,
) -> PathBuf {
    let p = profile(tmp, example, &fixture(base));
    if let Some(os) = os {
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("os: ubuntu-24.04", os)).unwrap();
    }
    let out = tmp.join("out");
    build_ok(&p, &["--node", node, "--out", out.to_str().unwrap()]);
    out.join(format!("{node}.img"))
}

#[test]
fn bmap_of_ubuntu_raspi_writes_a_clean_card_over_old_data() {
    let tmp = tempfile::tempdir().unwrap();
    let img = built(
        tmp.path(),
        "ubuntu-raspi.img",
        "pi4-microcloud.yaml",
        "pi1",
        None,
    );
    assert_survives_a_dirty_card(&img, tmp.path());
}

#[test]
fn bmap_of_ubuntu_26_04_writes_a_clean_card_over_old_data() {
    let tmp = tempfile::tempdir().unwrap();
    let img = built(
        tmp.path(),
        "ubuntu-raspi-2604.img",
        "pi4-microcloud.yaml",
        "pi1",
        Some("os: ubuntu-26.04"),
    );
    assert_survives_a_dirty_card(&img, tmp.path());
}

#[test]
fn bmap_of_armbian_rpi_writes_a_clean_card_over_old_data() {
    let tmp = tempfile::tempdir().unwrap();
    let img = built(
        tmp.path(),
        "armbian-rpi.img",
        "armbian-rock5b.yaml",
        "rock1",
        None,
    );
    assert_survives_a_dirty_card(&img, tmp.path());
}

#[test]
fn bmap_of_armbian_gpt_writes_a_clean_card_over_old_data() {
    let tmp = tempfile::tempdir().unwrap();
    let img = built(
        tmp.path(),
        "armbian-single-gpt.img",
        "armbian-rock5b.yaml",
        "rock1",
        None,
    );
    assert_survives_a_dirty_card(&img, tmp.path());
}
