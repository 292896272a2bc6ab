//! Initrds made by the real tools (cpio -H newc/crc, gzip, zstd, xz, lz4,
//! bzip2, lzma), laid out as initramfs-tools lays out Ubuntu's and
//! Debian's, and damaged ones.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// What to put in a staged tree.
#[derive(Clone, Copy)]
struct Has {
    client: bool,
    script: bool,
    module: bool,
}

const ALL: Has = Has {
    client: true,
    script: true,
    module: true,
};
const NONE: Has = Has {
    client: false,
    script: false,
    module: false,
};

fn mkdirs(root: &Path, dirs: &[&str]) {
    for d in dirs {
        fs::create_dir_all(root.join(d)).unwrap();
    }
}

fn exe(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A usr-merged initramfs-tools tree (bin, sbin, lib -> usr/...), with
/// the NBD pieces `has` asks for.
fn stage(has: Has) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    mkdirs(
        r,
        &[
            "usr/bin",
            "usr/sbin",
            "usr/lib/modules/6.8.0-1004-raspi/kernel/drivers/block",
            "scripts/local-top",
            "conf",
        ],
    );
    for l in ["bin", "sbin", "lib"] {
        symlink(format!("usr/{l}"), r.join(l)).unwrap();
    }
    exe(&r.join("init"), "#!/bin/sh\n");
    exe(&r.join("usr/bin/busybox"), "not really busybox\n");
    exe(
        &r.join("scripts/local-top/ORDER"),
        "/scripts/local-top/other \"$@\"\n",
    );
    exe(&r.join("scripts/local-top/other"), "#!/bin/sh\n");
    fs::write(r.join("conf/initramfs.conf"), "MODULES=most\n").unwrap();
    fs::write(
        r.join("usr/lib/modules/6.8.0-1004-raspi/modules.builtin"),
        "kernel/fs/ext4/ext4.ko\nkernel/drivers/block/loop.ko\n",
    )
    .unwrap();
    if has.client {
        exe(&r.join("usr/sbin/nbd-client"), "\x7fELF nbd-client\n");
    }
    if has.script {
        exe(&r.join("scripts/local-top/nbd"), "#!/bin/sh\nnbd-client\n");
    }
    if has.module {
        fs::write(
            r.join("usr/lib/modules/6.8.0-1004-raspi/kernel/drivers/block/nbd.ko.zst"),
            b"\x28\xb5\x2f\xfd module",
        )
        .unwrap();
    }
    d
}

/// `cpio -o -H FORMAT` of the paths `list` prints in `dir`.
fn cpio_of(dir: &Path, format: &str, list: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{list} | LC_ALL=C sort | cpio -o -H {format} --quiet"
        ))
        .current_dir(dir)
        .output()
        .expect("sh and cpio (scripts/lib/install-tools.sh installs cpio)");
    assert!(
        out.status.success(),
        "cpio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() >= 512,
        "cpio wrote {} bytes",
        out.stdout.len()
    );
    out.stdout
}

fn archive(has: Has) -> Vec<u8> {
    let d = stage(has);
    cpio_of(d.path(), "newc", "find .")
}

/// `data` through `cmd` (a compressor writing to stdout).
fn through(cmd: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const GZIP: &str = "gzip -c -9";
const ZSTD: &str = "zstd -q -c -19";
// initramfs-tools compresses xz with --check=crc32: the kernel's decoder
// checks nothing stronger.
const XZ: &str = "xz -c --check=crc32";

fn support(data: &[u8]) -> Result<NbdSupport, InitramfsError> {
    nbd_support(&mut &data[..])
}

fn full() -> NbdSupport {
    NbdSupport {
        nbd_client: true,
        boot_script: true,
        nbd_module: true,
    }
}

#[test]
fn finds_nbd_client_script_and_module_uncompressed_and_in_gzip_zstd_xz() {
    let a = archive(ALL);
    assert_eq!(support(&a).unwrap(), full(), "uncompressed");
    for cmd in [GZIP, ZSTD, XZ] {
        assert_eq!(support(&through(cmd, &a)).unwrap(), full(), "{cmd}");
    }
}

#[test]
fn crc_format_archives_are_read_and_their_checksums_checked() {
    let d = stage(ALL);
    let a = cpio_of(d.path(), "crc", "find .");
    assert_eq!(support(&through(ZSTD, &a)).unwrap(), full());
    // Flip one byte of nbd-client's data.
    let at = a.windows(14).position(|w| w == b"ELF nbd-client").unwrap();
    let mut bad = a.clone();
    bad[at] ^= 0x20;
    match support(&bad) {
        Err(InitramfsError::BadChecksum { name, part, .. }) => {
            assert_eq!(name, "usr/sbin/nbd-client");
            assert_eq!(part.offset, 0);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn reports_each_missing_piece_without_nbd_client() {
    let s = support(&through(ZSTD, &archive(NONE))).unwrap();
    assert_eq!(
        s,
        NbdSupport {
            nbd_client: false,
            boot_script: false,
            nbd_module: false
        }
    );
    let text = s.describe_missing().unwrap();
    for want in [
        "nbd-client",
        "scripts/local-top/nbd",
        "nbd kernel module",
        "install the nbd-client package",
    ] {
        assert!(text.contains(want), "{want:?} not in {text:?}");
    }
    let only_module = Has {
        module: false,
        ..ALL
    };
    let s = support(&through(GZIP, &archive(only_module))).unwrap();
    assert_eq!(
        s.missing(),
        vec!["the nbd kernel module (lib/modules/*/kernel/drivers/block/nbd.ko)"]
    );
    assert!(!s.complete());
    assert!(full().describe_missing().is_none());
}

#[test]
fn builtin_nbd_driver_counts_as_the_module() {
    let d = stage(Has {
        module: false,
        ..ALL
    });
    let builtin = d
        .path()
        .join("usr/lib/modules/6.8.0-1004-raspi/modules.builtin");
    fs::write(
        &builtin,
        "kernel/fs/ext4/ext4.ko\nkernel/drivers/block/nbd.ko\n",
    )
    .unwrap();
    let a = cpio_of(d.path(), "newc", "find .");
    assert!(support(&through(XZ, &a)).unwrap().nbd_module);
}

#[test]
fn early_uncompressed_microcode_archive_then_compressed_main_archive() {
    // As mkinitramfs writes an initrd with early firmware: a plain cpio
    // (kernel/x86/microcode/...), then the compressed main archive.
    let early = tempfile::tempdir().unwrap();
    mkdirs(early.path(), &["kernel/x86/microcode"]);
    fs::write(
        early.path().join("kernel/x86/microcode/GenuineIntel.bin"),
        vec![0x5a; 3000],
    )
    .unwrap();
    let mut initrd = cpio_of(early.path(), "newc", "find kernel");
    let early_len = initrd.len();
    initrd.extend(through(ZSTD, &archive(ALL)));
    assert_eq!(support(&initrd).unwrap(), full());
    // The early archive's files count too (the kernel unpacks both into
    // one tree): nbd-client in the plain part, the rest compressed.
    let mut initrd = archive(Has {
        script: false,
        module: false,
        ..ALL
    });
    initrd.extend(through(
        GZIP,
        &archive(Has {
            client: false,
            ..ALL
        }),
    ));
    assert_eq!(support(&initrd).unwrap(), full());
    // And a lz4 main archive is named with its offset.
    let mut initrd = cpio_of(early.path(), "newc", "find kernel");
    initrd.extend(through("lz4 -l -c", &archive(ALL)));
    match support(&initrd) {
        Err(InitramfsError::Unsupported { offset, format }) => {
            assert_eq!(offset, len64(early_len));
            assert!(format.starts_with("lz4"), "{format}");
        }
        other => panic!("expected lz4 to be refused, got {other:?}"),
    }
}

#[test]
fn concatenated_compressed_members_and_archives_all_count() {
    let client = archive(Has {
        client: true,
        ..NONE
    });
    let script = archive(Has {
        script: true,
        ..NONE
    });
    let module = archive(Has {
        module: true,
        ..NONE
    });
    // One member per archive, each compressed differently, with the
    // zero padding mkinitramfs may leave between them.
    let mut initrd = through(GZIP, &client);
    initrd.extend([0u8; 7]);
    initrd.extend(through(XZ, &script));
    initrd.extend(through(ZSTD, &module));
    assert_eq!(support(&initrd).unwrap(), full());
    // Two archives inside one member: the second one is read too.
    let mut both = client.clone();
    both.extend(&script);
    let s = support(&through(ZSTD, &both)).unwrap();
    assert!(s.nbd_client && s.boot_script && !s.nbd_module, "{s:?}");
}

#[test]
fn nbd_client_under_a_missing_directory_does_not_count() {
    // The kernel cannot create sbin/nbd-client when no sbin exists (its
    // create fails and it carries on), so neither does the check.
    let d = tempfile::tempdir().unwrap();
    mkdirs(d.path(), &["x/sbin"]);
    exe(&d.path().join("x/sbin/nbd-client"), "elf");
    let a = cpio_of(&d.path().join("x"), "newc", "echo sbin/nbd-client");
    assert!(!support(&a).unwrap().nbd_client);
    let a = cpio_of(
        &d.path().join("x"),
        "newc",
        "printf 'sbin\\nsbin/nbd-client\\n'",
    );
    assert!(support(&a).unwrap().nbd_client);
}

#[test]
fn non_executable_nbd_client_does_not_count() {
    let d = stage(ALL);
    fs::set_permissions(
        d.path().join("usr/sbin/nbd-client"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(
        !support(&cpio_of(d.path(), "newc", "find ."))
            .unwrap()
            .nbd_client
    );
}

#[test]
fn truncated_initrds_name_the_part_and_the_offset() {
    let a = archive(ALL);
    // Uncompressed, cut inside nbd-client's data.
    let at = a.windows(14).position(|w| w == b"ELF nbd-client").unwrap();
    match support(&a[..at + 3]) {
        Err(e @ InitramfsError::Truncated { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("the data of usr/sbin/nbd-client"), "{msg}");
            assert!(msg.contains("uncompressed cpio archive at byte 0"), "{msg}");
        }
        other => panic!("expected truncation, got {other:?}"),
    }
    // Uncompressed, cut inside the TRAILER!!! entry's name (cpio pads its
    // output to 512 bytes, so the zeros after it are not the place).
    let trailer = a.windows(10).rposition(|w| w == b"TRAILER!!!").unwrap();
    match support(&a[..trailer + 5]) {
        Err(e @ InitramfsError::Truncated { .. }) => {
            assert!(e.to_string().contains("the name of an entry"), "{e}");
        }
        other => panic!("expected truncation, got {other:?}"),
    }
    // Compressed, cut in half: an error naming the format, never a panic
    // or a partial answer.
    for cmd in [GZIP, ZSTD, XZ] {
        let c = through(cmd, &a);
        let e = support(&c[..c.len() / 2]).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                InitramfsError::Truncated { .. } | InitramfsError::Corrupt { .. }
            ),
            "{cmd}: {e:?}"
        );
        assert!(msg.contains("data at byte 0 of the initrd"), "{cmd}: {msg}");
    }
    // A compressed archive without its TRAILER!!!: the kernel refuses a
    // member that ends inside an archive.
    match support(&through(ZSTD, &a[..trailer - 110])) {
        Err(e @ InitramfsError::Truncated { .. }) => {
            assert!(e.to_string().contains("the header of an entry"), "{e}");
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}

#[test]
fn garbage_headers_and_junk_are_refused_with_their_offsets() {
    let a = archive(ALL);
    // A non-hex c_filesize in the first header.
    let mut bad = a.clone();
    bad[6 + 8 * 6] = b'g';
    match support(&bad) {
        Err(e @ InitramfsError::BadHeader { at: 0, .. }) => {
            assert!(e.to_string().contains("c_filesize"), "{e}")
        }
        other => panic!("expected a bad header, got {other:?}"),
    }
    // The old binary/odc formats are named.
    let d = stage(ALL);
    let odc = cpio_of(d.path(), "odc", "find .");
    match support(&odc) {
        Err(e @ InitramfsError::BadHeader { .. }) => assert!(e.to_string().contains("newc"), "{e}"),
        other => panic!("expected odc to be refused, got {other:?}"),
    }
    // Text after an archive.
    let mut junk = a.clone();
    junk.extend(b"hello");
    match support(&junk) {
        Err(InitramfsError::UnknownData { offset, byte: b'h' }) => {
            assert_eq!(offset, len64(a.len()))
        }
        other => panic!("expected junk to be refused, got {other:?}"),
    }
    // Junk after the archive inside a compressed member.
    let mut inner = a.clone();
    inner.extend(b"\x01\x02\x03\x04");
    match support(&through(ZSTD, &inner)) {
        Err(InitramfsError::Junk { at, byte: 1, .. }) => assert_eq!(at, len64(a.len())),
        other => panic!("expected junk to be refused, got {other:?}"),
    }
    assert!(matches!(support(b""), Err(InitramfsError::Empty)));
}

#[test]
fn bzip2_lzma_and_lz4_are_named_not_misread() {
    let a = archive(ALL);
    for (cmd, name) in [
        ("bzip2 -c", "bzip2"),
        ("lzma -c", "lzma"),
        ("lz4 -l -c", "lz4"),
    ] {
        match support(&through(cmd, &a)) {
            Err(e @ InitramfsError::Unsupported { offset: 0, .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("cannot read"), "{msg}");
            }
            other => panic!("{cmd}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn decompression_bomb_beyond_the_default_cap_is_refused() {
    // A sparse 64 MiB file of zeros: cpio reads it, zstd squeezes it to a
    // few KiB; 17 such members (the kernel unpacks them all into one tree)
    // make 1.06 GiB from well under 1 MiB.
    let d = tempfile::tempdir().unwrap();
    let f = fs::File::create(d.path().join("zeros")).unwrap();
    f.set_len(64 << 20).unwrap();
    let member = Command::new("sh")
        .arg("-c")
        .arg("echo zeros | cpio -o -H newc --quiet | zstd -q -c -1")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(member.status.success());
    let bomb = member.stdout.repeat(17);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    match support(&bomb) {
        Err(e @ InitramfsError::OutputTooLarge { .. }) => {
            assert!(e.to_string().contains("1073741824"), "{e}")
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    // 15 (960 MiB and headers) stay under the cap and are read.
    let s = support(&member.stdout.repeat(15)).unwrap();
    assert!(!s.nbd_client);
}

#[test]
fn entry_count_and_input_size_caps_hold() {
    let a = through(GZIP, &archive(ALL));
    let few = Limits {
        max_entries: 5,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        nbd_support_with(&mut &a[..], &few),
        Err(InitramfsError::TooManyEntries { entries: 5, .. })
    ));
    let small = Limits {
        max_input: 100,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        nbd_support_with(&mut &a[..], &small),
        Err(InitramfsError::InputTooLarge { limit: 100 })
    ));
    let tiny_output = Limits {
        max_output: 1000,
        ..Limits::DEFAULT
    };
    // Both ways the output is counted: decoded, and uncompressed parts.
    assert!(matches!(
        nbd_support_with(&mut &a[..], &tiny_output),
        Err(InitramfsError::OutputTooLarge { limit: 1000 })
    ));
    assert!(matches!(
        nbd_support_with(&mut &archive(ALL)[..], &tiny_output),
        Err(InitramfsError::OutputTooLarge { limit: 1000 })
    ));
}

#[test]
fn every_single_byte_damage_and_every_truncation_gives_an_answer_not_a_panic() {
    let plain = archive(ALL);
    let zst = through(ZSTD, &plain);
    let gz = through(GZIP, &plain);
    let mut errors = 0usize;
    for data in [&plain, &zst, &gz] {
        for at in 0..data.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = data.clone();
                bad[at] ^= flip;
                // Ok or a typed error, and the message renders.
                if let Err(e) = support(&bad) {
                    errors += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
            if let Err(e) = support(&data[..at]) {
                errors += 1;
                assert!(!e.to_string().is_empty());
            } else {
                // Only a cut in the 512-byte padding after the trailer
                // (or in the gzip/zstd trailer, which some decoders do not
                // need) can leave a readable archive.
                assert!(
                    at > data.len() - 520,
                    "a cut at {at} of {} was read as complete",
                    data.len()
                );
            }
        }
    }
    assert!(errors > plain.len(), "only {errors} errors");
}

#[test]
fn gzip_member_cut_inside_its_header_is_truncation_not_an_empty_initrd() {
    let gz = through(GZIP, &archive(ALL));
    for cut in [2, 5, 10] {
        match support(&gz[..cut]) {
            Err(InitramfsError::Truncated { part, .. }) => {
                assert_eq!(part.compression, Some(Compression::Gzip));
            }
            other => panic!("cut at {cut}: expected truncation, got {other:?}"),
        }
    }
}
