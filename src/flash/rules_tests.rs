//! Each rule against the fake workstation tree: the refusal names the
//! device, the rule and its override (or that there is none).

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::flash::devices::fake_sys::{FakeDisk, FakeSys, workstation};
use crate::flash::devices::{Disk, scan};

fn disk(name: &str) -> (tempfile::TempDir, Disk) {
    let tmp = tempfile::tempdir().unwrap();
    workstation(tmp.path());
    let d = scan(tmp.path())
        .unwrap()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap();
    (tmp, d)
}

fn refused(name: &str, ov: Overrides) -> Refusal {
    let (_t, d) = disk(name);
    check(&d, &Context::new(), &ov).unwrap_err()
}

#[test]
fn the_disk_under_root_is_the_system_disk_even_with_allow_internal() {
    let r = refused(
        "nvme0n1",
        Overrides {
            allow_internal: true,
            yes: true,
        },
    );
    assert_eq!(r.rule(), "system-disk");
    assert_eq!(
        r.to_string(),
        "/dev/nvme0n1: refused (rule system-disk): it holds the running system \
         (/ is mounted from /dev/dm-51); no flag overrides this rule"
    );
}

#[test]
fn a_mounted_partition_is_refused() {
    let r = refused("sdc", Overrides::default());
    assert_eq!(r.rule(), "mounted");
    assert_eq!(
        r.to_string(),
        "/dev/sdc: refused (rule mounted): /dev/sdc1 is mounted at /media/me/MY STICK; \
         unmount it first (no flag overrides this rule)"
    );
}

#[test]
fn active_swap_is_refused() {
    let r = refused("sdd", Overrides::default());
    assert_eq!(r.rule(), "swap");
    assert!(r.to_string().contains("/dev/sdd2 is in use as swap"), "{r}");
    assert_eq!(r.override_flag(), None);
}

#[test]
fn a_dm_crypt_holder_is_refused_with_how_to_release_it() {
    let r = refused("sde", Overrides::default());
    assert_eq!(r.rule(), "holder");
    assert_eq!(
        r.to_string(),
        "/dev/sde: refused (rule holder): /dev/sde1 is held by /dev/dm-52 (dm-crypt); \
         close it (cryptsetup close) first (no flag overrides this rule)"
    );
}

#[test]
fn a_read_only_card_is_refused() {
    let r = refused("mmcblk1", Overrides::default());
    assert_eq!(r.rule(), "read-only");
    assert!(
        r.to_string()
            .starts_with("/dev/mmcblk1: refused (rule read-only)")
    );
}

#[test]
fn an_internal_sata_disk_needs_allow_internal() {
    let r = refused("sda", Overrides::default());
    assert_eq!(r.rule(), "internal");
    assert_eq!(r.override_flag(), Some("--allow-internal"));
    assert!(r.to_string().contains("pass --allow-internal"), "{r}");
    let (_t, d) = disk("sda");
    let ov = Overrides {
        allow_internal: true,
        yes: false,
    };
    // 2 TiB: accepted past the rule, then the size wants confirmation.
    assert!(matches!(
        check(&d, &Context::new(), &ov),
        Ok(Verdict::NeedsConfirmation { .. })
    ));
}

#[test]
fn usb_and_sd_are_candidates_whatever_the_removable_flag() {
    for name in ["sdb", "mmcblk0"] {
        let (_t, d) = disk(name);
        assert!(!d.removable);
        assert_eq!(
            check(&d, &Context::new(), &Overrides::default()),
            Ok(Verdict::Accepted),
            "{name}"
        );
    }
}

#[test]
fn a_named_loop_device_is_treated_as_removable() {
    let (_t, d) = disk("loop50");
    assert_eq!(
        check(&d, &Context::new(), &Overrides::default()),
        Ok(Verdict::Accepted)
    );
}

#[test]
fn a_terabyte_disk_needs_confirmation_not_refusal() {
    let (_t, d) = disk("sdf");
    let v = check(&d, &Context::new(), &Overrides::default()).unwrap();
    assert_eq!(
        v.to_string(),
        "/dev/sdf: needs confirmation (rule large-disk): 1 TiB is more than 512 GiB, \
         which is rarely a card or a node's disk; confirm when asked, or pass --yes"
    );
    let yes = Overrides {
        allow_internal: false,
        yes: true,
    };
    assert_eq!(check(&d, &Context::new(), &yes), Ok(Verdict::Accepted));
}

#[test]
fn an_empty_reader_has_no_medium() {
    assert_eq!(refused("sdg", Overrides::default()).rule(), "no-medium");
}

/// A one-disk tree whose partition has the device number of `dir`'s
/// filesystem, so real paths there count as being on the fake disk.
fn disk_holding(dir: &std::path::Path, root: &std::path::Path) -> Disk {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let part = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let mut s = FakeSys::new(root);
    s.add_disk(&FakeDisk {
        name: "sdx",
        dev: (8, 240),
        bytes: 64 << 30,
        partitions: &[("sdx1", part, 64 << 30)],
        ..FakeDisk::default()
    });
    scan(root).unwrap().remove(0)
}

#[test]
fn the_disk_holding_the_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("pi1.img");
    std::fs::write(&img, [1u8; 4096]).unwrap();
    let d = disk_holding(tmp.path(), &tmp.path().join("root"));
    let ctx = Context::new().with_image(&img).unwrap();
    let r = check(&d, &ctx, &Overrides::default()).unwrap_err();
    assert_eq!(r.rule(), "image-disk");
    assert_eq!(
        r.to_string(),
        format!(
            "/dev/sdx: refused (rule image-disk): it holds the image being written ({}); \
             no flag overrides this rule",
            img.display()
        )
    );
}

#[test]
fn the_disk_holding_a_not_yet_made_output_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disk_holding(tmp.path(), &tmp.path().join("root"));
    let out = tmp.path().join("out/not/yet");
    let ctx = Context::new().protect(Role::Output, &out);
    let r = check(&d, &ctx, &Overrides::default()).unwrap_err();
    assert_eq!(r.rule(), "output-disk");
    assert!(
        r.to_string().contains("it holds the output directory"),
        "{r}"
    );
}

#[test]
fn a_disk_smaller_than_the_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("big.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(40 << 30).unwrap(); // sparse: 40 GiB
    let (_t, d) = disk("mmcblk0");
    let ctx = Context::new().with_image(&img).unwrap();
    let r = check(&d, &ctx, &Overrides::default()).unwrap_err();
    assert_eq!(r.rule(), "too-small");
    assert_eq!(
        r.to_string(),
        "/dev/mmcblk0: refused (rule too-small): 32 GiB is smaller than the image (40 GiB); \
         no flag overrides this rule"
    );
}

#[test]
fn a_picker_is_offered_the_usb_ssd_the_sd_card_and_the_big_disk_only() {
    let tmp = tempfile::tempdir().unwrap();
    workstation(tmp.path());
    let disks = scan(tmp.path()).unwrap();
    let offered: Vec<_> = candidates(&disks, &Context::new(), &Overrides::default())
        .into_iter()
        .map(|(d, v)| {
            (
                d.path.to_string_lossy().into_owned(),
                v == Verdict::Accepted,
            )
        })
        .collect();
    assert_eq!(
        offered,
        [
            ("/dev/mmcblk0".to_owned(), true),
            ("/dev/sdb".to_owned(), true),
            ("/dev/sdf".to_owned(), false),
        ]
    );
}
