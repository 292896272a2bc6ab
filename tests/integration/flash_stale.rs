//! `flash --node NAME` writes `OUT/NAME.img` only while it is what `build`
//! makes of the profile now: after an edit of the profile the old image
//! is refused, naming the files that differ and the two ways on. Run
//! against the fake workstation tree (the refusal must come before any
//! disk is judged or opened; a current image goes on to the disk rules).

use std::path::Path;
use std::process::Output;

use crate::build::{build_ok, profile};
use crate::flash_fake_sys::workstation;
use crate::util::{bin, fixture};

fn flash(p: &Path, root: &Path, out: &Path, what: &[&str]) -> Output {
    bin()
        .arg("--profile")
        .arg(p)
        .arg("flash")
        .args(what)
        .args(["/dev/mmcblk0", "--yes", "--out"])
        .arg(out)
        .env("HOMELAB_SYSROOT", root)
        .output()
        .unwrap()
}

#[test]
fn a_built_image_older_than_the_profile_is_refused_by_node_but_not_by_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        &fixture("ubuntu-raspi.img"),
    );
    let out = tmp.path().join("out");
    build_ok(&p, &["--node", "pi1", "--out", out.to_str().unwrap()]);
    let img = out.join("pi1.img");
    let before = std::fs::read(&img).unwrap();

    // Current: past the check, on to the (fake) disk.
    let r = flash(&p, &root, &out, &["--node", "pi1"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("is a device of the test tree"), "{err}");
    assert!(!err.contains("older profile"), "{err}");

    // pi1 moves to another address: its seed and netplan change.
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("192.168.1.11/24"));
    std::fs::write(&p, text.replace("192.168.1.11/24", "192.168.1.21/24")).unwrap();
    let r = flash(&p, &root, &out, &["--node", "pi1"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    for want in [
        &format!("{}: built from an older profile or state", img.display()),
        "boot:network-config",
        "`homelab-image build --node pi1`",
        "nothing was written",
    ] {
        assert!(err.contains(want), "{want:?} missing: {err}");
    }
    assert!(
        !err.contains("test tree"),
        "the disk was judged first: {err}"
    );
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the image was touched"
    );

    // By its path the file is written as it is.
    let r = flash(&p, &root, &out, &[img.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("is a device of the test tree"), "{err}");
    assert!(!err.contains("older profile"), "{err}");

    // Rebuilt, it is current again.
    build_ok(&p, &["--node", "pi1", "--out", out.to_str().unwrap()]);
    let r = flash(&p, &root, &out, &["--node", "pi1"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("is a device of the test tree"), "{err}");
}
