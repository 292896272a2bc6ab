//! Discovery over the fake workstation tree (tests/integration/flash_fake_sys.rs).

use std::path::{Path, PathBuf};

use super::fake_sys::{FakeDisk, FakeSys, workstation};
use super::*;

fn scanned() -> (tempfile::TempDir, Vec<Disk>) {
    let tmp = tempfile::tempdir().unwrap();
    workstation(tmp.path());
    let disks = scan(tmp.path()).unwrap();
    (tmp, disks)
}

fn get<'a>(disks: &'a [Disk], name: &str) -> &'a Disk {
    disks
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not scanned"))
}

#[test]
fn a_usb_ssd_reporting_non_removable_is_usb_with_its_serial() {
    let (_t, disks) = scanned();
    let d = get(&disks, "sdb");
    assert_eq!(d.transport, Transport::Usb);
    assert!(!d.removable);
    assert_eq!(d.path, PathBuf::from("/dev/sdb"));
    assert_eq!(d.size, 240 << 30);
    assert_eq!(d.vendor.as_deref(), Some("Samsung"));
    assert_eq!(d.model.as_deref(), Some("Portable SSD T7"));
    assert_eq!(d.serial.as_deref(), Some("S5SCNS0R700123"));
    assert!(d.mounts.is_empty() && d.swaps.is_empty() && d.holders.is_empty());
}

#[test]
fn an_sd_card_is_mmc_with_its_name_serial_and_partitions() {
    let (_t, disks) = scanned();
    let d = get(&disks, "mmcblk0");
    assert_eq!(d.transport, Transport::Mmc);
    assert_eq!(d.model.as_deref(), Some("SD32G"));
    assert_eq!(d.serial.as_deref(), Some("0x1234abcd"));
    let parts: Vec<_> = d
        .partitions
        .iter()
        .map(|p| (p.path.to_string_lossy().into_owned(), p.dev.to_string()))
        .collect();
    assert_eq!(
        parts,
        [
            ("/dev/mmcblk0p1".to_owned(), "179:201".to_owned()),
            ("/dev/mmcblk0p2".to_owned(), "179:202".to_owned())
        ]
    );
}

#[test]
fn root_on_lvm_in_dm_crypt_belongs_to_the_nvme_disk_under_it() {
    let (_t, disks) = scanned();
    let d = get(&disks, "nvme0n1");
    assert_eq!(d.transport, Transport::Nvme);
    let mounts: Vec<_> = d
        .mounts
        .iter()
        .map(|m| (m.device.clone(), m.mount_point.clone()))
        .collect();
    assert_eq!(
        mounts,
        [
            (PathBuf::from("/dev/dm-51"), PathBuf::from("/")),
            (PathBuf::from("/dev/nvme0n1p1"), PathBuf::from("/boot/efi")),
        ]
    );
    let holders: Vec<_> = d
        .holders
        .iter()
        .map(|h| (h.device.clone(), h.kind, h.of.clone()))
        .collect();
    assert_eq!(
        holders,
        [
            (
                PathBuf::from("/dev/dm-50"),
                HolderKind::DmCrypt,
                PathBuf::from("/dev/nvme0n1p2")
            ),
            (
                PathBuf::from("/dev/dm-51"),
                HolderKind::Lvm,
                PathBuf::from("/dev/dm-50")
            ),
        ]
    );
    assert!(d.holds_dev(super::super::sysfs::DevNum {
        major: 253,
        minor: 51
    }));
}

#[test]
fn a_sata_disk_is_sata() {
    let (_t, disks) = scanned();
    let d = get(&disks, "sda");
    assert_eq!(d.transport, Transport::Sata);
    assert_eq!(d.description().as_deref(), Some("ATA WDC WD20EZRZ"));
}

#[test]
fn a_mounted_partition_with_a_space_in_its_mount_point_is_found() {
    let (_t, disks) = scanned();
    let d = get(&disks, "sdc");
    assert_eq!(d.mounts.len(), 1);
    assert_eq!(d.mounts[0].device, PathBuf::from("/dev/sdc1"));
    assert_eq!(d.mounts[0].mount_point, PathBuf::from("/media/me/MY STICK"));
}

#[test]
fn active_swap_on_a_partition_is_found() {
    let (_t, disks) = scanned();
    assert_eq!(get(&disks, "sdd").swaps, [PathBuf::from("/dev/sdd2")]);
    assert!(get(&disks, "sdb").swaps.is_empty());
}

#[test]
fn a_dm_crypt_holder_of_a_partition_is_found() {
    let (_t, disks) = scanned();
    let d = get(&disks, "sde");
    assert_eq!(d.holders.len(), 1);
    assert_eq!(d.holders[0].kind, HolderKind::DmCrypt);
    assert_eq!(d.holders[0].of, PathBuf::from("/dev/sde1"));
}

#[test]
fn read_only_and_size_are_read() {
    let (_t, disks) = scanned();
    assert!(get(&disks, "mmcblk1").read_only);
    assert!(!get(&disks, "mmcblk0").read_only);
    assert_eq!(get(&disks, "sdf").size, 1 << 40);
}

#[test]
fn loop_dm_and_empty_readers_are_hidden_by_default() {
    let (_t, disks) = scanned();
    let listed: Vec<_> = disks
        .iter()
        .filter(|d| d.listed_by_default())
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        listed,
        [
            "mmcblk0", "mmcblk1", "nvme0n1", "sda", "sdb", "sdc", "sdd", "sde", "sdf"
        ]
    );
    assert_eq!(get(&disks, "loop50").transport, Transport::Loop);
    assert_eq!(get(&disks, "dm-50").transport, Transport::Virtual);
}

#[test]
fn a_named_partition_is_refused_pointing_at_its_disk() {
    let (t, disks) = scanned();
    let err = find(&disks, t.path(), Path::new("/dev/sdc1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/dev/sdc1: a partition of /dev/sdc; name the whole disk"
    );
    assert_eq!(
        find(&disks, t.path(), Path::new("/dev/sdb")).unwrap().name,
        "sdb"
    );
    let err = find(&disks, t.path(), Path::new("/dev/sdz")).unwrap_err();
    assert_eq!(err.to_string(), "/dev/sdz: no such device");
}

#[test]
fn a_holder_cycle_does_not_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = FakeSys::new(tmp.path());
    s.add_disk(&FakeDisk {
        name: "sdx",
        partitions: &[("sdx1", (8, 241), 1 << 30)],
        ..FakeDisk::default()
    });
    s.add_virtual("md127", (9, 127), &["sdx1"]);
    // md127 claims to be held by sdx1 again: sysfs never does this, a
    // broken tree might.
    std::os::unix::fs::symlink(
        "../../sdx1",
        tmp.path()
            .join("sys/devices/virtual/block/md127/holders/sdx1"),
    )
    .unwrap();
    let disks = scan(tmp.path()).unwrap();
    let d = get(&disks, "sdx");
    assert_eq!(d.holders.len(), 1);
    assert_eq!(d.holders[0].kind, HolderKind::Md);
}

#[test]
fn transport_follows_the_bus_in_real_sysfs_paths() {
    let cases = [
        (
            "sda",
            "/sys/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb2/2-2/2-2:1.0/host0/target0:0:0/0:0:0:0/block/sda",
            Transport::Usb,
        ),
        (
            "mmcblk0",
            "/sys/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0",
            Transport::Mmc,
        ),
        (
            "sda",
            "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            Transport::Sata,
        ),
        (
            "nvme0n1",
            "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
            Transport::Nvme,
        ),
        (
            "sda",
            "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:0/block/sda",
            Transport::Scsi,
        ),
        (
            "vda",
            "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
            Transport::Virtio,
        ),
        ("loop3", "/sys/devices/virtual/block/loop3", Transport::Loop),
        (
            "dm-0",
            "/sys/devices/virtual/block/dm-0",
            Transport::Virtual,
        ),
        (
            "xvda",
            "/sys/devices/vbd-51712/block/xvda",
            Transport::Unknown,
        ),
    ];
    for (name, path, want) in cases {
        assert_eq!(Transport::detect(name, path), want, "{path}");
    }
}
