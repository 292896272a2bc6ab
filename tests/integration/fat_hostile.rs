//! Damaged FAT volumes, made by patching the fixture's boot partition:
//! every command that reads or writes FAT must refuse them quickly, name
//! the cluster (or field) at fault, and leave the image as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{assert_fails, bin, copy_fixture, our_partition, patch, read_at, run_ok};

/// The FAT32 boot partition of a fixture copy, for surgery: geometry from
/// its boot sector, FAT entries and directory entries read and written
/// directly in the image file.
pub(crate) struct Fat32 {
    pub img: PathBuf,
    base: u64,
    bps: u64,
    spc: u64,
    reserved: u64,
    fats: u64,
    fat_size: u64,
    pub root: u32,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u16_at(b: &[u8], off: usize) -> u64 {
    u64::from(u16::from_le_bytes(b[off..off + 2].try_into().unwrap()))
}

impl Fat32 {
    /// Partition `n` of `img` (which must still be readable by us).
    pub fn of(img: &Path, n: u64) -> Fat32 {
        let (base, _) = our_partition(img, n);
        let bs = read_at(img, base, 512);
        assert_eq!(u16_at(&bs, 22), 0, "not a FAT32 boot sector");
        Fat32 {
            img: img.to_path_buf(),
            base,
            bps: u16_at(&bs, 11),
            spc: u64::from(bs[13]),
            reserved: u16_at(&bs, 14),
            fats: u64::from(bs[16]),
            fat_size: u64::from(u32_at(&bs, 36)),
            root: u32_at(&bs, 44),
        }
    }

    pub fn cluster_size(&self) -> u64 {
        self.bps * self.spc
    }

    /// Byte offset in the image of the boot sector field at `off`.
    pub fn boot_field(&self, off: u64) -> u64 {
        self.base + off
    }

    fn fat_entry_at(&self, copy: u64, c: u32) -> u64 {
        self.base + (self.reserved + copy * self.fat_size) * self.bps + u64::from(c) * 4
    }

    pub fn fat(&self, c: u32) -> u32 {
        u32_at(&read_at(&self.img, self.fat_entry_at(0, c), 4), 0) & 0x0FFF_FFFF
    }

    /// Sets cluster `c`'s entry in every copy of the FAT.
    pub fn set_fat(&self, c: u32, v: u32) {
        for copy in 0..self.fats {
            patch(&self.img, self.fat_entry_at(copy, c), &v.to_le_bytes());
        }
    }

    fn cluster_at(&self, c: u32) -> u64 {
        let data = self.reserved + self.fats * self.fat_size;
        self.base + (data + u64::from(c - 2) * self.spc) * self.bps
    }

    /// The chain from `first`, as the pristine FAT records it.
    pub fn chain(&self, first: u32) -> Vec<u32> {
        let mut out = vec![first];
        loop {
            let next = self.fat(*out.last().unwrap());
            if next >= 0x0FFF_FFF8 {
                return out;
            }
            assert!(out.len() < 1 << 20, "the fixture's FAT loops");
            out.push(next);
        }
    }

    /// The short entry named `short` (11 bytes, as stored) in the directory
    /// starting at cluster `dir`: (its offset in the image, first cluster,
    /// size).
    pub fn entry(&self, dir: u32, short: &[u8; 11]) -> (u64, u32, u32) {
        let cs = self.cluster_size() as usize;
        for c in self.chain(dir) {
            let at = self.cluster_at(c);
            let bytes = read_at(&self.img, at, cs);
            for (i, e) in bytes.chunks_exact(32).enumerate() {
                if &e[..11] == short && e[11] & 0x0F != 0x0F {
                    let first = (u32_at(e, 20) & 0xFFFF) << 16 | (u32_at(e, 26) & 0xFFFF);
                    return (at + 32 * i as u64, first, u32_at(e, 28));
                }
            }
        }
        panic!("no entry {:?}", String::from_utf8_lossy(short));
    }

    pub fn set_size(&self, entry: u64, size: u32) {
        patch(&self.img, entry + 28, &size.to_le_bytes());
    }
}

/// Runs our binary, failing the test if it has not finished within
/// `secs` seconds (it is killed then). Output is drained as it comes, so
/// a command that would print without end cannot block on a full pipe;
/// at most `cap` bytes of stdout are kept.
pub(crate) fn hi_within(args: &[&str], secs: u64) -> Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning homelab-image");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if kept.len() < 8 << 20 {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            kept
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("homelab-image {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn sha(img: &Path) -> Vec<u8> {
    run_ok(Command::new("sha256sum").arg(img)).stdout
}

fn local(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Every reading and writing command on partition 1 fails within a few
/// seconds, with one error line containing every needle, and the image
/// keeps its bytes.
fn every_command_refuses(img: &Path, tmp: &Path, needles: &[&str]) {
    let i = img.to_str().unwrap();
    let before = sha(img);
    let src = local(tmp, "new.txt", "new\n");
    // inspect may report what it could read and mark the damage, or fail:
    // either way, quickly and naming it.
    let out = hi_within(&["inspect", i], 20);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    for n in needles {
        assert!(text.contains(n), "inspect does not say {n:?}:\n{text}");
    }
    for args in [
        vec!["ls", i, "1", "/"],
        vec!["ls", i, "1", "/overlays"],
        vec!["cat", i, "1", "/config.txt"],
        vec!["cp", i, "1", &src, "/new.txt"],
        vec!["cp", i, "1", &src, "/overlays/new.txt"],
        vec!["rm", i, "1", "/README"],
    ] {
        let out = hi_within(&args, 20);
        assert_fails(&out, 1, needles);
        assert!(out.stdout.is_empty(), "{args:?} printed output");
    }
    assert_eq!(sha(img), before, "a refused command changed the image");
}

#[test]
fn a_root_cluster_of_0_is_refused_naming_the_field_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let fat = Fat32::of(&img, 1);
    patch(&img, fat.boot_field(44), &0u32.to_le_bytes());
    every_command_refuses(
        &img,
        tmp.path(),
        &["partition 1", "BPB_RootClus is 0", "data cluster"],
    );
}

#[test]
fn a_loop_in_the_root_directory_chain_is_refused_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let fat = Fat32::of(&img, 1);
    let chain = fat.chain(fat.root);
    fat.set_fat(*chain.last().unwrap(), fat.root);
    let looped = format!("loops back to cluster {}", fat.root);
    every_command_refuses(
        &img,
        tmp.path(),
        &["partition 1", "/: its cluster chain", &looped],
    );
}

#[test]
fn a_loop_in_a_subdirectory_chain_is_refused_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let fat = Fat32::of(&img, 1);
    let (_, first, _) = fat.entry(fat.root, b"OVERLAYS   ");
    let chain = fat.chain(first);
    fat.set_fat(*chain.last().unwrap(), first);
    let looped = format!("/overlays: its cluster chain loops back to cluster {first}");
    // inspect reads the label through the root directory only, then the
    // boot files through a full check: it fails on the loop too.
    every_command_refuses(&img, tmp.path(), &["partition 1", &looped]);
}

/// The fixture with `cmdline.txt`'s single cluster linked to itself and
/// its size raised to 1 MiB: what made `cat` print 1 MiB of repeats.
fn looped_cmdline(tmp: &Path) -> (PathBuf, u32) {
    let img = copy_fixture("ubuntu-raspi.img", tmp);
    let fat = Fat32::of(&img, 1);
    let (entry, first, _) = fat.entry(fat.root, b"CMDLINE TXT");
    assert_eq!(fat.chain(first).len(), 1, "the fixture's cmdline.txt grew");
    fat.set_fat(first, first);
    fat.set_size(entry, 1 << 20);
    (img, first)
}

#[test]
fn a_loop_in_a_file_chain_is_refused_by_cat_naming_the_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, first) = looped_cmdline(tmp.path());
    let i = img.to_str().unwrap();
    let looped = format!("/cmdline.txt: its cluster chain loops back to cluster {first}");
    for path in ["/cmdline.txt", "/config.txt"] {
        let out = hi_within(&["cat", i, "1", path], 20);
        assert_fails(&out, 1, &["partition 1", &looped]);
        assert!(
            out.stdout.is_empty(),
            "cat printed {} bytes",
            out.stdout.len()
        );
    }
}

#[test]
fn a_loop_in_a_file_chain_is_refused_by_build_and_no_image_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, first) = looped_cmdline(tmp.path());
    let p = crate::build::profile(tmp.path(), "pi4-microcloud.yaml", &img);
    let out_dir = tmp.path().join("out");
    let out = hi_within(
        &[
            "--profile",
            p.to_str().unwrap(),
            "build",
            "--node",
            "pi1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        300,
    );
    let looped = format!("/cmdline.txt: its cluster chain loops back to cluster {first}");
    assert_fails(&out, 1, &["node pi1", &looped]);
    assert!(!out_dir.join("pi1.img").exists(), "an image was written");
}

#[test]
fn a_file_larger_than_its_chain_is_refused_by_cat_naming_file_and_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let fat = Fat32::of(&img, 1);
    let (entry, first, _) = fat.entry(fat.root, b"CONFIG  TXT");
    let clusters = fat.chain(first).len();
    let size = clusters as u64 * fat.cluster_size() + 1;
    fat.set_size(entry, size as u32);
    let out = hi_within(&["cat", img.to_str().unwrap(), "1", "/config.txt"], 20);
    assert_fails(
        &out,
        1,
        &[&format!(
            "/config.txt: its size is {size} bytes, but its cluster chain from cluster {first} \
             holds only {clusters} clusters"
        )],
    );
    assert!(out.stdout.is_empty(), "cat printed a truncated file");
}

#[test]
fn a_file_chain_longer_than_its_size_or_leaving_the_volume_or_shared_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = copy_fixture("ubuntu-raspi.img", tmp.path());
    let fat = Fat32::of(&pristine, 1);
    let (config, first, size) = fat.entry(fat.root, b"CONFIG  TXT");
    let clusters = fat.chain(first).len();
    assert!(clusters > 1, "the fixture's config.txt shrank");
    let last = *fat.chain(first).last().unwrap();
    let (readme, _, _) = fat.entry(fat.root, b"README     ");
    type Damage = Box<dyn Fn(&Fat32)>;
    let cases: Vec<(&str, Damage, String)> = vec![
        (
            "longer",
            Box::new(move |f: &Fat32| f.set_size(config, 100)),
            format!(
                "/config.txt: its cluster chain from cluster {first} has {clusters} clusters, \
                 more than the 1 its size of 100 bytes needs"
            ),
        ),
        (
            "outside",
            Box::new(move |f: &Fat32| f.set_fat(last, 0x0FFF_FF00)),
            format!(
                "/config.txt: cluster {last} links to cluster {}, which is not a data cluster",
                0x0FFF_FF00u32
            ),
        ),
        (
            // README made to start where config.txt does, with its size:
            // whichever is checked second finds the chain taken.
            "shared",
            Box::new(move |f: &Fat32| {
                patch(&f.img, readme + 20, &((first >> 16) as u16).to_le_bytes());
                patch(&f.img, readme + 26, &(first as u16).to_le_bytes());
                f.set_size(readme, size);
            }),
            format!("cluster {first} also belongs to another file or directory"),
        ),
    ];
    for (what, damage, needle) in cases {
        let img = tmp.path().join(format!("{what}.img"));
        std::fs::copy(&pristine, &img).unwrap();
        damage(&Fat32::of(&img, 1));
        let out = hi_within(&["ls", img.to_str().unwrap(), "1", "/"], 20);
        assert_fails(&out, 1, &["partition 1", &needle]);
    }
}

/// Peak memory (KiB) of our binary running `args`, stdout discarded.
fn peak_kib(args: &[&str]) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("running /usr/bin/time (Debian package time)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last().unwrap().trim().parse().unwrap()
}

#[test]
fn cat_of_a_large_fat_file_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, crate::util::garbage(30 << 20, 11)).unwrap();
    crate::util::hi_ok(&["cp", i, "1", big.to_str().unwrap(), "/big.bin"]);
    let listing = peak_kib(&["ls", i, "1", "/"]);
    let cat = peak_kib(&["cat", i, "1", "/big.bin"]);
    // Holding the file would add its 30 MiB to what listing needs.
    assert!(
        cat < listing + 8 * 1024,
        "cat of a 30 MiB file peaked at {cat} KiB, ls at {listing} KiB"
    );
}
