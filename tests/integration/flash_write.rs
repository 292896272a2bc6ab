//! `flash IMAGE DEVICE` (the writer `flash::write` and `flash::verify`
//! behind the safety rules) against loop devices whose backing files are
//! pre-filled with 0xA5, standing in for a card that held something else.
//! Judged by cmp of every mapped range, fsck.fat -n, e2fsck -fn, the
//! files (mcopy, debugfs rdump), sfdisk --verify and our own `inspect` of
//! the device. The faults: a disk smaller than the image, a disk that
//! fails mid-write (a loop device over a file on a full tmpfs), Ctrl-C
//! mid-write, a block that reads back wrong.
//!
//! Needs root and loop devices; without them each test prints why and
//! returns (skips).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bmap_dirty::{
    DIRTY, Loop, assert_written_card_is_clean, bmap_ranges, built, dirty_file, no_loop_devices,
};
use crate::util::{bin, hi, run_ok};

const MIB: u64 = 1 << 20;

macro_rules! need_loop_devices {
    () => {
        if let Some(why) = no_loop_devices() {
            eprintln!("skipped: needs loop devices (root): {why}");
            return;
        }
    };
}

/// `homelab-image flash IMAGE DEV --yes [extra]`, which must succeed;
/// what it said on stdout and stderr.
fn flash_ok(img: &Path, dev: &Path, extra: &[&str]) -> String {
    let out = run_ok(
        flash_cmd(img, dev)
            .args(extra)
            .env_remove(crate_env::CORRUPT)
            .env_remove(crate_env::PAUSE),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `homelab-image flash IMAGE DEV --yes`.
fn flash_cmd(img: &Path, dev: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("flash").arg(img).arg(dev).arg("--yes");
    cmd
}

/// The test hooks' variables (src/flash/verify.rs, src/app/flash_cmds.rs).
mod crate_env {
    pub const CORRUPT: &str = "HOMELAB_IMAGE_TEST_CORRUPT_AT";
    pub const PAUSE: &str = "HOMELAB_IMAGE_TEST_PAUSE_AFTER";
}

/// sfdisk --verify on the device must report no errors; `inspect` of the
/// device must read its partitions and the node's hostname.
fn assert_device_reads_as_the_node(dev: &Path, node: &str) {
    let out = run_ok(Command::new("sfdisk").arg("--verify").arg(dev));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No errors detected"),
        "sfdisk --verify: {text}"
    );
    let out = hi(&["inspect", dev.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "inspect {}: {}",
        dev.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(node), "inspect does not name {node}:\n{text}");
}

/// The first MiB of `dev` reads as zeros and sfdisk finds no table.
fn assert_no_partition_table(dev: &Path) {
    let mut head = vec![0u8; MIB as usize];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "the first MiB of {} is not zeroed",
        dev.display()
    );
    let out = Command::new("sfdisk").arg("-d").arg(dev).output().unwrap();
    assert!(
        !out.status.success(),
        "sfdisk -d still finds a table: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Node pi1 built from the Ubuntu raspi fixture.
fn pi1_image(tmp: &Path) -> PathBuf {
    built(tmp, "ubuntu-raspi.img", "pi4-microcloud.yaml", "pi1", None)
}

/// A loop device over `tmp/NAME`, `len` bytes of the old card's pattern.
fn dirty_card(tmp: &Path, name: &str, len: u64) -> (PathBuf, Loop) {
    let backing = tmp.join(name);
    dirty_file(&backing, len);
    let card = Loop::attach(&backing);
    (backing, card)
}

/// Builds `node` from fixture `base`, flashes it onto a dirty loop device
/// and judges the card.
fn assert_flashed_node_checks_clean(base: &str, example: &str, node: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let img = built(tmp.path(), base, example, node, None);
    assert_written_card_is_clean(&img, tmp.path(), &|dev: &Path| {
        let said = flash_ok(&img, dev, &[]);
        assert!(said.contains("read back"), "{said}");
        assert!(said.contains("injected files"), "{said}");
        assert_device_reads_as_the_node(dev, node);
    });
}

#[test]
fn flash_writes_a_node_onto_a_dirty_disk_that_checks_clean() {
    need_loop_devices!();
    assert_flashed_node_checks_clean("ubuntu-raspi.img", "pi4-microcloud.yaml", "pi1");
}

#[test]
fn flash_of_a_gpt_node_checks_clean() {
    need_loop_devices!();
    assert_flashed_node_checks_clean("armbian-single-gpt.img", "armbian-rock5b.yaml", "rock1");
}

#[test]
fn flash_without_a_bmap_writes_what_the_filesystems_use() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = pi1_image(tmp.path());
    let bmap = PathBuf::from(format!("{}.bmap", img.display()));
    let aside = tmp.path().join("judge.bmap");
    assert_written_card_is_clean(&img, tmp.path(), &|dev: &Path| {
        // The .bmap is kept only to judge; the write must not see it.
        std::fs::rename(&bmap, &aside).unwrap();
        let said = flash_ok(&img, dev, &[]);
        std::fs::rename(&aside, &bmap).unwrap();
        assert!(said.contains("map: no .bmap"), "{said}");
        assert!(said.contains("read back"), "{said}");
    });
}

#[test]
fn a_bmap_made_by_bmaptool_drives_the_write_and_its_checksums_are_checked() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = pi1_image(tmp.path());
    let theirs = tmp.path().join("theirs.bmap");
    run_ok(
        Command::new("bmaptool")
            .args(["-q", "create", "-o"])
            .arg(&theirs)
            .arg(&img),
    );
    let len = std::fs::metadata(&img).unwrap().len();
    let (_, card) = dirty_card(tmp.path(), "card", len);
    let said = flash_ok(&img, &card.dev, &["--bmap", theirs.to_str().unwrap()]);
    assert!(said.contains("read back"), "{said}");
    let (ranges, size) = bmap_ranges(&theirs);
    assert_eq!(size, len);
    for &(first, last) in &ranges {
        let start = first * 4096;
        let n = ((last + 1) * 4096).min(len) - start;
        run_ok(
            Command::new("cmp")
                .arg(format!("--ignore-initial={start}"))
                .arg(format!("--bytes={n}"))
                .arg(&img)
                .arg(&card.dev),
        );
    }
    // A range whose bytes no longer match bmaptool's checksum is refused.
    let &(first, _) = ranges
        .iter()
        .find(|&&(first, _)| first * 4096 >= 2 * MIB)
        .expect("a mapped range past 2 MiB");
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(b"changed", first * 4096).unwrap();
    drop(f);
    let out = flash_cmd(&img, &card.dev)
        .arg("--bmap")
        .arg(&theirs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("do not match the block map's checksum"),
        "{err}"
    );
    assert!(err.contains("partition table was wiped"), "{err}");
    assert_no_partition_table(&card.dev);
}

#[test]
fn a_disk_smaller_than_the_image_is_refused_and_left_untouched() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = pi1_image(tmp.path());
    let len = std::fs::metadata(&img).unwrap().len();
    let (backing, card) = dirty_card(tmp.path(), "small", len - 4 * MIB);
    let out = flash_cmd(&img, &card.dev).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rule too-small"), "{err}");
    assert!(err.contains("smaller than the image"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    drop(card);
    let bytes = std::fs::read(&backing).unwrap();
    assert!(
        bytes.iter().all(|&b| b == DIRTY),
        "the refused disk was written"
    );
}

/// A tmpfs mounted at a directory of the test's; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_disk_failing_mid_write_is_left_without_a_partition_table() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = pi1_image(tmp.path());
    let len = std::fs::metadata(&img).unwrap().len();
    // A card that takes writes in its first 4 MiB and its last 2 MiB and
    // fails everywhere else: a sparse file on a tmpfs filled to the brim.
    let fs = match Tmpfs::mount(&tmp.path().join("full"), "16m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let backing = fs.0.join("card");
    let f = std::fs::File::create(&backing).unwrap();
    f.set_len(len).unwrap();
    let dirty = vec![DIRTY; (4 * MIB) as usize];
    f.write_all_at(&dirty, 0).unwrap();
    f.write_all_at(&dirty[..(2 * MIB) as usize], len - 2 * MIB)
        .unwrap();
    drop(f);
    // Fill the rest: dd stops at ENOSPC, which is the point.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", fs.0.join("filler").display()))
        .stderr(Stdio::null())
        .status();
    let card = Loop::attach(&backing);
    let out = flash_cmd(&img, &card.dev).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("partition table was wiped"), "{err}");
    assert!(err.contains("writing"), "{err}");
    assert!(err.contains("at byte"), "{err}");
    assert_no_partition_table(&card.dev);
    // The image's last MiB was held back, so only the wipe after the
    // failure can have zeroed its last sector.
    assert_zero_at(&card.dev, len - 512);
    drop(card);
}

/// The 512 bytes at `offset` of `dev` are zeros.
fn assert_zero_at(dev: &Path, offset: u64) {
    let mut sector = vec![0u8; 512];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut sector, offset)
        .unwrap();
    assert!(
        sector.iter().all(|&b| b == 0),
        "{}: the sector at byte {offset} was not wiped",
        dev.display()
    );
}

#[test]
fn ctrl_c_mid_write_wipes_the_table_and_the_gpt_backup() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = built(
        tmp.path(),
        "armbian-single-gpt.img",
        "armbian-rock5b.yaml",
        "rock1",
        None,
    );
    let len = std::fs::metadata(&img).unwrap().len();
    let (_, card) = dirty_card(tmp.path(), "card", len);
    let mut child = flash_cmd(&img, &card.dev)
        .env(crate_env::PAUSE, (2 * MIB).to_string())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("flash ended before pausing: {seen}");
        }
        seen.push_str(&line);
        if line.contains("test hook: paused") {
            break;
        }
    }
    // Mid-write (as at a power cut) the disk has no partition table: the
    // old one was zeroed first and the new one is written last.
    assert_no_partition_table(&card.dev);
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(rest.contains("partition table was wiped"), "{rest}");
    assert_no_partition_table(&card.dev);
    // The GPT backup header (the image's last sector) is zeroed too, not
    // left for a tool that looks there.
    assert_zero_at(&card.dev, len - 512);
}

#[test]
fn a_block_that_reads_back_wrong_is_reported_with_its_offset() {
    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let img = pi1_image(tmp.path());
    let bmap = PathBuf::from(format!("{}.bmap", img.display()));
    let (ranges, len) = bmap_ranges(&bmap);
    // A mapped block past the first MiB, 100 bytes into it.
    let &(first, _) = ranges
        .iter()
        .find(|&&(first, _)| first * 4096 >= 2 * MIB)
        .expect("a mapped range past 2 MiB");
    let at = first * 4096 + 100;
    let (_, card) = dirty_card(tmp.path(), "card", len);
    let out = flash_cmd(&img, &card.dev)
        .env(crate_env::CORRUPT, at.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Every byte of the block was inverted: the first bad one is its start.
    assert!(
        err.contains(&format!("reads back wrong at byte {}", first * 4096)),
        "{err}"
    );
    assert!(err.contains("fake capacity"), "{err}");
}

/// "Build straight to the card": the base under an overlay holding the
/// node's patched pages is the writer's source, with no `.img` written
/// first; the read-back and the file check use the build's own list.
#[test]
fn an_overlay_of_base_and_patched_pages_flashes_straight_to_the_disk() {
    use homelab_image::build::{mapped, patch};
    use homelab_image::flash::{bmap_read::Bmap, verify, write};
    use homelab_image::image::Image;
    use homelab_image::render::FileSpec;
    use std::sync::atomic::AtomicBool;

    need_loop_devices!();
    let tmp = tempfile::tempdir().unwrap();
    let base = crate::util::fixture("ubuntu-raspi.img");
    let (image, overlay) = Image::open_overlay(&base).unwrap();
    let files = [
        FileSpec::root_file("/etc/hostname", 0o644, "straight\n"),
        FileSpec::boot_file("/user-data", "#cloud-config\nhostname: straight\n"),
    ];
    let expect = patch::apply(&image, &files, 1_577_836_800).unwrap();
    let map = Bmap::from_runs(overlay.len(), &mapped::used_blocks(&image).runs);
    drop(image);
    let (_, card) = dirty_card(tmp.path(), "card", overlay.len());
    let mut target = write::Target::open(&card.dev).unwrap();
    let src = write::Source {
        name: "node straight".into(),
        bytes: &*overlay,
        len: overlay.len(),
    };
    let stop = AtomicBool::new(false);
    let w = write::flash(&src, &map, &mut target, &|_, _| {}, &stop).unwrap();
    verify::readback(&src, &map, &w.sums, &target, &|_, _| {}, &stop).unwrap();
    assert_eq!(verify::files(&target, &expect).unwrap(), 2);
    drop(target);
    // The base file is untouched; the disk holds the patched files.
    let out = run_ok(bin().args([
        "cat",
        card.dev.to_str().unwrap(),
        "writable",
        "/etc/hostname",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "straight\n");
    let out = run_ok(bin().args(["cat", base.to_str().unwrap(), "writable", "/etc/hostname"]));
    assert_ne!(String::from_utf8_lossy(&out.stdout), "straight\n");
    let out = run_ok(Command::new("sfdisk").arg("--verify").arg(&card.dev));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No errors detected"));
    let part = crate::util::our_partition(&card.dev, 2);
    let root = tmp.path().join("root.ext4");
    crate::util::extract_partition(&card.dev, part.0, part.1, &root);
    crate::ext4_support::assert_fsck_clean(&root, "straight-to-disk root");
}

#[test]
fn a_file_that_is_not_a_disk_is_refused_and_left_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let img = crate::util::copy_fixture("armbian-single-mbr.img", tmp.path());
    let before = std::fs::read(&img).unwrap();
    let card = tmp.path().join("card.img");
    dirty_file(&card, before.len() as u64);
    // The image itself, and another regular file.
    for target in [&img, &card] {
        let out = flash_cmd(&img, target).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("not a block device"), "{err}");
    }
    assert!(std::fs::read(&img).unwrap() == before, "the image changed");
    let card = std::fs::read(&card).unwrap();
    assert!(card.iter().all(|&b| b == DIRTY), "the file was written");
}
