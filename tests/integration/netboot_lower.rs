//! A netbooted node's disk grows to `netboot.disk_size` with zeros past the
//! image; on a GPT disk the backup header and entries must move to the new
//! end, as `sgdisk -e` would put them, or the node's kernel and growpart
//! see a damaged table. Judged by sgdisk's verify and sfdisk's dump.

use std::io::Write;
use std::process::Command;

use homelab_image::io::ReadAt;
use homelab_image::netboot::lower::Lower;

use crate::util::run_ok;

/// Writes `lower` out to a file (zeros as holes).
fn materialise(lower: &Lower, path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < lower.size() {
        lower.read_exact_at(&mut buf, at).unwrap();
        if buf.iter().any(|&b| b != 0) {
            std::os::unix::fs::FileExt::write_all_at(&f, &buf, at).unwrap();
        }
        at += buf.len() as u64;
    }
    f.set_len(lower.size()).unwrap();
    f.flush().unwrap();
}

#[test]
fn a_grown_gpt_disk_has_its_backup_at_the_new_end_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("base.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    run_ok(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+2M", "-t", "1:8300"])
            .arg(&img),
    );
    let base = std::fs::File::open(&img).unwrap();
    let lower = Lower::new(base, 8 << 20, Default::default(), 64 << 20).unwrap();
    let out = dir.path().join("grown.img");
    materialise(&lower, &out);
    let v = run_ok(Command::new("sgdisk").arg("-v").arg(&out));
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("No problems found"), "{text}");
    let dump = run_ok(Command::new("sfdisk").arg("-J").arg(&out));
    let j: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    let sectors = (64u64 << 20) / 512;
    // The last usable LBA leaves room for the backup entries (32 sectors)
    // and header at the new end.
    assert_eq!(j["partitiontable"]["lastlba"].as_u64(), Some(sectors - 34));
    assert_eq!(
        j["partitiontable"]["partitions"][0]["start"].as_u64(),
        Some(2048)
    );
    // The base is only read.
    let before = std::fs::read(&img).unwrap();
    assert!(before.len() == 8 << 20);
}

#[test]
fn an_mbr_disk_grows_with_zeros_and_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("base.img");
    let pattern: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&img, &pattern).unwrap();
    let lower = Lower::new(
        std::fs::File::open(&img).unwrap(),
        4 << 20,
        Default::default(),
        8 << 20,
    )
    .unwrap();
    let mut got = vec![0xffu8; 8 << 20];
    lower.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(&got[..4 << 20], &pattern[..]);
    assert!(got[4 << 20..].iter().all(|&b| b == 0));
    // Reads past the end are refused, not zero-filled.
    let mut one = [0u8; 1];
    assert!(lower.read_exact_at(&mut one, 8 << 20).is_err());
    assert!(
        Lower::new(
            std::fs::File::open(&img).unwrap(),
            4 << 20,
            Default::default(),
            2 << 20
        )
        .is_err()
    );
}
