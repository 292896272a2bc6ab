//! A fake `sys/` + `proc/` tree for device discovery, laid out like the
//! kernel's: `sys/block/NAME` links into `sys/devices/…/block/NAME`, whose
//! `device` link leads to the bus device, `sys/dev/block/MAJ:MIN` links,
//! partitions as subdirectories with a `partition` file, `holders/` and
//! `slaves/` links, `proc/self/mountinfo` and `proc/swaps`. Shared by the
//! integration tests (which point `HOMELAB_SYSROOT` at it) and the unit
//! tests of `src/flash` (which include this file by path).
//!
//! Device numbers are deliberately high minors (`8:208`, `259:100`,
//! `253:50`): tests also protect real paths (a tempdir, the cache), whose
//! real `st_dev` must not collide with a fake disk by accident.

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub type Dev = (u32, u32);

/// A disk to add; paths are relative to `sys/devices`.
pub struct FakeDisk<'a> {
    pub name: &'a str,
    pub dev: Dev,
    pub bytes: u64,
    /// The bus device the `device` link points at.
    pub device_path: &'a str,
    pub vendor: Option<&'a str>,
    pub model: Option<&'a str>,
    /// On the bus device itself (mmc, nvme).
    pub serial: Option<&'a str>,
    /// On a USB ancestor `usb_device` (relative to `sys/devices`), with an
    /// `idVendor` beside it, as USB mass storage has it.
    pub usb_serial: Option<(&'a str, &'a str)>,
    pub removable: bool,
    pub ro: bool,
    /// (name, dev, bytes)
    pub partitions: &'a [(&'a str, Dev, u64)],
}

impl Default for FakeDisk<'_> {
    fn default() -> Self {
        FakeDisk {
            name: "sdx",
            dev: (8, 240),
            bytes: 8 << 30,
            device_path: "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host9/target9:0:0/9:0:0:0",
            vendor: None,
            model: None,
            serial: None,
            usb_serial: None,
            removable: false,
            ro: false,
            partitions: &[],
        }
    }
}

pub struct FakeSys {
    pub root: PathBuf,
    /// Every block device (disk or partition) by name: its sysfs dir.
    dirs: HashMap<String, PathBuf>,
    mountinfo: String,
    swaps: String,
    next_id: u32,
}

fn w(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{text}\n")).unwrap();
}

fn rel_link(target: &Path, link: &Path) {
    // A relative link, as sysfs makes them.
    let from = link.parent().unwrap();
    let common = from
        .ancestors()
        .find(|a| target.starts_with(a))
        .expect("common ancestor");
    let ups = from.strip_prefix(common).unwrap().components().count();
    let mut rel = PathBuf::new();
    for _ in 0..ups {
        rel.push("..");
    }
    rel.push(target.strip_prefix(common).unwrap());
    std::fs::create_dir_all(from).unwrap();
    symlink(rel, link).unwrap();
}

impl FakeSys {
    pub fn new(root: &Path) -> FakeSys {
        for d in ["sys/block", "sys/dev/block", "sys/devices", "proc/self"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let s = FakeSys {
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            mountinfo: String::new(),
            swaps: "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".into(),
            next_id: 20,
        };
        s.write_proc();
        s
    }

    fn block_dev(&mut self, name: &str, dir: &Path, dev: Dev, bytes: u64) {
        w(&dir.join("dev"), &format!("{}:{}", dev.0, dev.1));
        w(&dir.join("size"), &(bytes / 512).to_string());
        std::fs::create_dir_all(dir.join("holders")).unwrap();
        rel_link(
            dir,
            &self
                .root
                .join("sys/dev/block")
                .join(format!("{}:{}", dev.0, dev.1)),
        );
        self.dirs.insert(name.to_owned(), dir.to_path_buf());
    }

    pub fn add_disk(&mut self, d: &FakeDisk) -> &mut Self {
        let devices = self.root.join("sys/devices");
        let bus = devices.join(d.device_path);
        let dir = bus.join("block").join(d.name);
        self.block_dev(d.name, &dir, d.dev, d.bytes);
        w(&dir.join("removable"), if d.removable { "1" } else { "0" });
        w(&dir.join("ro"), if d.ro { "1" } else { "0" });
        if d.device_path != "virtual" {
            rel_link(&bus, &dir.join("device"));
        }
        if let Some(v) = d.vendor {
            w(&bus.join("vendor"), v);
        }
        if let Some(m) = d.model {
            let attr = if d.name.starts_with("mmcblk") {
                "name"
            } else {
                "model"
            };
            w(&bus.join(attr), m);
        }
        if let Some(s) = d.serial {
            w(&bus.join("serial"), s);
        }
        if let Some((usb, serial)) = d.usb_serial {
            w(&devices.join(usb).join("idVendor"), "0781");
            w(&devices.join(usb).join("serial"), serial);
        }
        for (pname, pdev, pbytes) in d.partitions {
            let pdir = dir.join(pname);
            w(&pdir.join("partition"), "1");
            self.block_dev(pname, &pdir, *pdev, *pbytes);
        }
        rel_link(&dir, &self.root.join("sys/block").join(d.name));
        self
    }

    /// A device-mapper device `name` (dm-N) built on `slaves`, with its
    /// `dm/uuid` (`CRYPT-…`, `LVM-…`) and `dm/name`.
    pub fn add_dm(&mut self, name: &str, dev: Dev, uuid: &str, dm_name: &str, slaves: &[&str]) {
        self.add_virtual(name, dev, slaves);
        let dir = self.dirs[name].clone();
        w(&dir.join("dm/uuid"), uuid);
        w(&dir.join("dm/name"), dm_name);
    }

    /// A virtual block device (md, dm, loop) built on `slaves`.
    pub fn add_virtual(&mut self, name: &str, dev: Dev, slaves: &[&str]) {
        self.add_disk(&FakeDisk {
            name,
            dev,
            device_path: "virtual",
            ..FakeDisk::default()
        });
        let dir = self.dirs[name].clone();
        for s in slaves {
            let sdir = self.dirs[*s].clone();
            rel_link(&sdir, &dir.join("slaves").join(s));
            rel_link(&dir, &sdir.join("holders").join(name));
        }
    }

    /// A mountinfo line: filesystem on `dev` from `source` at `at`.
    pub fn mount(&mut self, dev: Dev, source: &str, at: &str) -> &mut Self {
        let at = at.replace(' ', "\\040");
        self.mountinfo.push_str(&format!(
            "{} 1 {}:{} / {at} rw,relatime shared:1 - ext4 {source} rw\n",
            self.next_id, dev.0, dev.1
        ));
        self.next_id += 1;
        self.write_proc();
        self
    }

    pub fn swap(&mut self, filename: &str) -> &mut Self {
        self.swaps.push_str(&format!(
            "{filename}                               partition\t2097148\t\t0\t\t-2\n"
        ));
        self.write_proc();
        self
    }

    fn write_proc(&self) {
        std::fs::write(self.root.join("proc/self/mountinfo"), &self.mountinfo).unwrap();
        std::fs::write(self.root.join("proc/swaps"), &self.swaps).unwrap();
    }
}

const GIB: u64 = 1 << 30;

/// A homelab workstation: an NVMe system disk (`/boot/efi` on p1, `/` on
/// LVM inside dm-crypt on p2), an internal SATA data disk, a USB SSD that
/// reports `removable=0`, an SD card, a USB stick with a mounted
/// partition, a USB disk with active swap, a USB disk held by dm-crypt, a
/// read-only card, a 1 TiB USB disk, an empty card reader, a loop device.
pub fn workstation(root: &Path) -> FakeSys {
    let usb = |n: u32| {
        format!("pci0000:00/0000:00:14.0/usb2/2-{n}/2-{n}:1.0/host{n}/target{n}:0:0/{n}:0:0:0")
    };
    let mut s = FakeSys::new(root);
    s.add_disk(&FakeDisk {
        name: "nvme0n1",
        dev: (259, 100),
        bytes: 500 * GIB,
        device_path: "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0",
        model: Some("Samsung SSD 980 500GB"),
        serial: Some("S64DNX0R123456"),
        partitions: &[
            ("nvme0n1p1", (259, 101), GIB),
            ("nvme0n1p2", (259, 102), 499 * GIB),
        ],
        ..FakeDisk::default()
    });
    s.add_dm(
        "dm-50",
        (253, 50),
        "CRYPT-LUKS2-0123456789abcdef-nvme0n1p2_crypt",
        "nvme0n1p2_crypt",
        &["nvme0n1p2"],
    );
    s.add_dm(
        "dm-51",
        (253, 51),
        "LVM-abcdefabcdef",
        "vg-root",
        &["dm-50"],
    );
    s.mount((253, 51), "/dev/mapper/vg-root", "/");
    s.mount((259, 101), "/dev/nvme0n1p1", "/boot/efi");

    s.add_disk(&FakeDisk {
        name: "sda",
        dev: (8, 160),
        bytes: 2 << 40,
        device_path: "pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0",
        vendor: Some("ATA"),
        model: Some("WDC WD20EZRZ"),
        partitions: &[("sda1", (8, 161), 2 << 40)],
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "sdb",
        dev: (8, 176),
        bytes: 240 * GIB,
        device_path: &usb(3),
        vendor: Some("Samsung"),
        model: Some("Portable SSD T7"),
        usb_serial: Some(("pci0000:00/0000:00:14.0/usb2/2-3", "S5SCNS0R700123")),
        removable: false,
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "mmcblk0",
        dev: (179, 200),
        bytes: 32 * GIB,
        device_path: "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa",
        model: Some("SD32G"),
        serial: Some("0x1234abcd"),
        partitions: &[
            ("mmcblk0p1", (179, 201), 512 << 20),
            ("mmcblk0p2", (179, 202), 31 * GIB),
        ],
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "sdc",
        dev: (8, 192),
        bytes: 16 * GIB,
        device_path: &usb(4),
        vendor: Some("SanDisk"),
        model: Some("Cruzer Blade"),
        removable: true,
        partitions: &[("sdc1", (8, 193), 16 * GIB)],
        ..FakeDisk::default()
    });
    s.mount((8, 193), "/dev/sdc1", "/media/me/MY STICK");
    s.add_disk(&FakeDisk {
        name: "sdd",
        dev: (8, 208),
        bytes: 64 * GIB,
        device_path: &usb(5),
        partitions: &[("sdd1", (8, 209), 60 * GIB), ("sdd2", (8, 210), 4 * GIB)],
        ..FakeDisk::default()
    });
    s.swap("/dev/sdd2");
    s.add_disk(&FakeDisk {
        name: "sde",
        dev: (8, 224),
        bytes: 128 * GIB,
        device_path: &usb(6),
        partitions: &[("sde1", (8, 225), 128 * GIB)],
        ..FakeDisk::default()
    });
    s.add_dm(
        "dm-52",
        (253, 52),
        "CRYPT-LUKS2-fedcba9876543210-backup",
        "backup",
        &["sde1"],
    );
    s.add_disk(&FakeDisk {
        name: "mmcblk1",
        dev: (179, 216),
        bytes: 16 * GIB,
        device_path: "platform/fe320000.mmc/mmc_host/mmc1/mmc1:bbbb",
        model: Some("SL16G"),
        ro: true,
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "sdf",
        dev: (65, 200),
        bytes: 1 << 40,
        device_path: &usb(7),
        vendor: Some("WD"),
        model: Some("Elements 25A3"),
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "sdg",
        dev: (65, 216),
        bytes: 0,
        device_path: &usb(8),
        vendor: Some("Generic-"),
        model: Some("SD/MMC"),
        removable: true,
        ..FakeDisk::default()
    });
    s.add_disk(&FakeDisk {
        name: "loop50",
        dev: (7, 50),
        bytes: 4 * GIB,
        device_path: "virtual",
        ..FakeDisk::default()
    });
    s
}
