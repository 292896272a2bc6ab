//! Bad input: each case gives exit 1, one line of error naming the file
//! and what is wrong, and no panic.

use std::path::Path;
use std::process::Command;

use crate::util::{assert_fails, copy_fixture, garbage, hi, our_partition, patch, read_at, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("empty.img");
    std::fs::write(&img, b"").unwrap();
    for args in [
        vec!["inspect", s(&img)],
        vec!["ls", s(&img), "1", "/"],
        vec!["cat", s(&img), "1", "/x"],
    ] {
        assert_fails(&hi(&args), 1, &["empty.img", "empty (0 bytes)"]);
    }
}

#[test]
fn a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        &hi(&["inspect", s(tmp.path())]),
        1,
        &[s(tmp.path()), "is a directory"],
    );
}

#[test]
fn a_file_we_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    run_ok(Command::new("chmod").arg("0").arg(&img));
    // Root reads anything, so drop to nobody when we are root.
    let out = if running_as_root() {
        run_ok(Command::new("chmod").arg("0755").arg(tmp.path()));
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_homelab-image"))
            .args(["inspect", s(&img)])
            .output()
            .expect("setpriv (util-linux)")
    } else {
        hi(&["inspect", s(&img)])
    };
    assert_fails(
        &out,
        1,
        &["ubuntu-raspi.img", "cannot open", "Permission denied"],
    );
}

/// Whether we run as root, from `id -u` (no libc call needed).
fn running_as_root() -> bool {
    let out = run_ok(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn no_partition_table() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("zeros.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &["zeros.img", "no partition table", "0x55AA"],
    );
    // A bare FAT filesystem (no table) has the signature but no valid entries.
    let fat = tmp.path().join("superfloppy.img");
    std::fs::write(&fat, vec![0u8; 8 << 20]).unwrap();
    run_ok(Command::new("mkfs.vfat").arg(&fat));
    assert_fails(
        &hi(&["inspect", s(&fat)]),
        1,
        &[
            "superfloppy.img",
            "no partition table",
            "bare FAT filesystem",
        ],
    );
    let ext = tmp.path().join("bare.ext4");
    run_ok(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4"])
            .arg(&ext)
            .arg("8M"),
    );
    assert_fails(
        &hi(&["inspect", s(&ext)]),
        1,
        &[
            "bare.ext4",
            "no partition table",
            "bare ext2/3/4 filesystem",
        ],
    );
}

#[test]
fn partition_past_the_end_of_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (start, _) = our_partition(&img, 2);
    run_ok(
        Command::new("truncate")
            .arg("-s")
            .arg((start + 4096).to_string())
            .arg(&img),
    );
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &[
            "ubuntu-raspi.img",
            "partition 2 ends at byte",
            "past the end of the image",
        ],
    );
}

#[test]
fn overlapping_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // Move partition 2's start (MBR entry 2, LBA field at 446+16+8) into p1.
    patch(&img, 446 + 16 + 8, &4096u32.to_le_bytes());
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &["ubuntu-raspi.img", "partitions 1 and 2 overlap"],
    );
}

#[test]
fn gpt_with_a_corrupt_header_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("armbian-single-gpt.img", tmp.path());
    // Flip one byte of the disk GUID inside the primary header (LBA 1).
    let b = read_at(&img, 512 + 56, 1)[0];
    patch(&img, 512 + 56, &[b ^ 0xff]);
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &[
            "armbian-single-gpt.img",
            "GPT header at LBA 1 has a bad CRC32",
        ],
    );
}

#[test]
fn gpt_with_a_corrupt_entry_array_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("armbian-single-gpt.img", tmp.path());
    // Change a character of partition 1's name in the entry array (LBA 2).
    let off = 1024 + 56;
    let b = read_at(&img, off, 1)[0];
    patch(&img, off, &[b ^ 0x20]);
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &[
            "armbian-single-gpt.img",
            "partition entry array at LBA 2 has a bad CRC32",
        ],
    );
}

#[test]
fn gpt_with_a_damaged_backup_is_read_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("armbian-single-gpt.img", tmp.path());
    let len = std::fs::metadata(&img).unwrap().len();
    let b = read_at(&img, len - 512 + 56, 1)[0];
    patch(&img, len - 512 + 56, &[b ^ 0xff]);
    let out = hi(&["inspect", "--json", s(&img)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = json["table"]["warnings"].to_string();
    assert!(warnings.contains("backup GPT is damaged"), "{warnings}");
    assert!(warnings.contains("bad CRC32"), "{warnings}");
}

#[test]
fn fat_boot_sector_full_of_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (start, _) = our_partition(&img, 1);
    // Keep the jump and the 0x55AA signature so it still claims to be FAT.
    patch(&img, start + 11, &garbage(499, 7));
    for args in [vec!["inspect", s(&img)], vec!["ls", s(&img), "1", "/"]] {
        assert_fails(
            &hi(&args),
            1,
            &[
                "ubuntu-raspi.img",
                "partition 1",
                "FAT boot sector is corrupt",
            ],
        );
    }
    // The other partition is still readable.
    let out = hi(&["cat", s(&img), "2", "/etc/hostname"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fat_overwritten_entirely_is_no_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (start, _) = our_partition(&img, 1);
    patch(&img, start, &garbage(4096, 11));
    assert_fails(
        &hi(&["ls", s(&img), "1", "/"]),
        1,
        &[
            "ubuntu-raspi.img",
            "partition 1",
            "no filesystem we can read",
        ],
    );
    // By label it is simply gone.
    assert_fails(
        &hi(&["ls", s(&img), "system-boot", "/"]),
        1,
        &["no partition labelled \"system-boot\""],
    );
}

#[test]
fn ext4_superblock_full_of_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (start, _) = our_partition(&img, 2);
    let sb = start + 1024;
    // Garbage everywhere but the magic number at 0x38.
    patch(&img, sb, &garbage(0x38, 3));
    patch(&img, sb + 0x3a, &garbage(1024 - 0x3a, 5));
    for args in [
        vec!["inspect", s(&img)],
        vec!["cat", s(&img), "2", "/etc/hostname"],
    ] {
        assert_fails(
            &hi(&args),
            1,
            &[
                "ubuntu-raspi.img",
                "partition 2",
                "ext4 superblock is corrupt",
            ],
        );
    }
}

#[test]
fn ext4_superblock_checksum_mismatch_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (start, _) = our_partition(&img, 2);
    // s_volume_name[15]: a harmless field, so only the checksum is wrong.
    patch(&img, start + 1024 + 0x87, b"X");
    assert_fails(
        &hi(&["inspect", s(&img)]),
        1,
        &["partition 2", "s_checksum"],
    );
}

#[test]
fn partition_number_or_label_that_does_not_exist() {
    let img = crate::util::fixture("ubuntu-raspi.img");
    assert_fails(
        &hi(&["ls", s(&img), "7", "/"]),
        1,
        &[
            "ubuntu-raspi.img",
            "no partition 7",
            "1 (system-boot), 2 (writable)",
        ],
    );
    assert_fails(
        &hi(&["cat", s(&img), "rootfs", "/etc/hostname"]),
        1,
        &["ubuntu-raspi.img", "no partition labelled \"rootfs\""],
    );
}

#[test]
fn paths_that_do_not_fit() {
    let img = crate::util::fixture("ubuntu-raspi.img");
    let cases: [(&[&str], &str); 6] = [
        (
            &["cat", s(&img), "1", "/nope.txt"],
            "/nope.txt: no such file or directory",
        ),
        (
            &["cat", s(&img), "2", "/etc/nope"],
            "/etc/nope: no such file or directory",
        ),
        (
            &["cat", s(&img), "1", "/overlays"],
            "/overlays: is a directory",
        ),
        (&["cat", s(&img), "2", "/etc"], "/etc: is a directory"),
        (
            &["ls", s(&img), "2", "/etc/hostname/x"],
            "/etc/hostname/x: not a directory",
        ),
        (
            &["ls", s(&img), "1", "/nope"],
            "/nope: no such file or directory",
        ),
    ];
    for (args, needle) in cases {
        assert_fails(&hi(args), 1, &["ubuntu-raspi.img", needle]);
    }
}
