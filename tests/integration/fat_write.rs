//! Creating and replacing files on a FAT volume: the result passes
//! `fsck.fat -n`, mtools reads back every byte, and the same edits give
//! the same bytes (fixed timestamps).

use std::path::Path;
use std::process::Command;

use homelab_image::fs::{Filesystem, FsError};
use homelab_image::image::Image;

use crate::util::{copy_fixture, extract_partition, our_partition, run_ok, stdout_of};

const EDITS: [(&str, usize); 5] = [
    ("user-data", 700),                            // replace, shorter
    ("cmdline.txt", 5000),                         // replace, longer
    ("network-config", 1),                         // replace with 1 byte
    ("a-new-file-with-a-long-name.yaml", 3 << 20), // new, LFN, many clusters
    ("overlays/homelab-test-overlay.dtbo", 0),     // new, empty, in a subdir
];

fn content(name: &str, len: usize) -> Vec<u8> {
    name.bytes().cycle().take(len).collect()
}

fn edit(image: &Path) {
    let (img, edit) = Image::open_edit(image).unwrap();
    let (_, fs) = img.filesystem("system-boot").unwrap();
    let Filesystem::Fat(fat) = fs else {
        panic!("system-boot is not FAT")
    };
    for (name, len) in EDITS {
        fat.write_file(name, &content(name, len)).unwrap();
    }
    // A missing directory is refused without touching the volume.
    assert!(matches!(
        fat.write_file("no-such-dir/x", b"x"),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fat.write_file("overlays", b"x"),
        Err(FsError::IsADirectory(_))
    ));
    fat.unmount().unwrap();
    drop(img);
    edit.commit().unwrap();
}

#[test]
fn written_files_pass_fsck_and_read_back_with_mtools() {
    let tmp = tempfile::tempdir().unwrap();
    let image = copy_fixture("ubuntu-raspi.img", tmp.path());
    edit(&image);

    let (start, len) = our_partition(&image, 1);
    let part = tmp.path().join("p1.fat");
    extract_partition(&image, start, len, &part);
    let fsck = run_ok(Command::new("fsck.fat").arg("-n").arg(&part));
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(!report.contains("Dirty bit"), "{report}");

    let spec = format!("{}@@{start}", image.display());
    for (name, len) in EDITS {
        let theirs = run_ok(
            Command::new("mtype")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &spec])
                .arg(format!("::/{name}")),
        )
        .stdout;
        assert_eq!(theirs, content(name, len), "{name}");
    }
    let listing = stdout_of(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &spec, "::/"]),
    );
    let line = listing
        .lines()
        .find(|l| l.contains("a-new-file-with-a-long-name.yaml"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains("2020-01-01"), "timestamp not fixed: {line}");
}

#[test]
fn the_same_edits_give_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ia = copy_fixture("ubuntu-raspi.img", a.path());
    let ib = copy_fixture("ubuntu-raspi.img", b.path());
    edit(&ia);
    edit(&ib);
    assert!(std::fs::read(&ia).unwrap() == std::fs::read(&ib).unwrap());
}
