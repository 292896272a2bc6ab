//! Every safety rule through `devices --check DEVICE` (what `flash` will
//! ask before writing) against the fake tree: exit 1, the message names
//! the device, the rule and the override flag or that none exists. Then a
//! real loop device: the exclusive open succeeds on it, fails with EBUSY
//! while a partition is mounted or another program holds it exclusively,
//! and a user without write permission is told how to get it — and none
//! of this writes a byte.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::flash_devices::devices_in;
use super::flash_fake_sys::{FakeDisk, FakeSys, workstation};
use super::util::bin;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `devices --check DEVICE EXTRA…` on the workstation tree.
fn check(device: &str, extra: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let mut args = vec!["--check", device];
    args.extend_from_slice(extra);
    devices_in(&root, tmp.path(), &args)
}

/// Asserts a refusal: exit 1, nothing on stdout, one error line holding
/// every piece of `want`.
fn assert_refused(out: &Output, want: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected a refusal, got: {err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    for w in want {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

const NO_FLAG: &str = "no flag overrides this rule";

#[test]
fn check_refuses_the_system_disk_even_with_every_flag() {
    let out = check("/dev/nvme0n1", &["--allow-internal", "--yes"]);
    assert_refused(
        &out,
        &[
            "error: /dev/nvme0n1: refused (rule system-disk)",
            "/ is mounted from /dev/dm-51",
            NO_FLAG,
        ],
    );
}

#[test]
fn check_refuses_a_disk_with_a_mounted_partition() {
    assert_refused(
        &check("/dev/sdc", &[]),
        &[
            "/dev/sdc: refused (rule mounted)",
            "/dev/sdc1 is mounted at /media/me/MY STICK",
            NO_FLAG,
        ],
    );
}

#[test]
fn check_refuses_a_disk_with_active_swap() {
    assert_refused(
        &check("/dev/sdd", &[]),
        &[
            "/dev/sdd: refused (rule swap)",
            "/dev/sdd2",
            "swapoff",
            NO_FLAG,
        ],
    );
}

#[test]
fn check_refuses_a_disk_held_by_dm_crypt() {
    assert_refused(
        &check("/dev/sde", &[]),
        &[
            "/dev/sde: refused (rule holder)",
            "/dev/sde1 is held by /dev/dm-52 (dm-crypt)",
            "cryptsetup close",
            NO_FLAG,
        ],
    );
}

#[test]
fn check_refuses_a_read_only_card() {
    assert_refused(
        &check("/dev/mmcblk1", &[]),
        &["/dev/mmcblk1: refused (rule read-only)", NO_FLAG],
    );
}

#[test]
fn check_refuses_an_empty_card_reader() {
    assert_refused(
        &check("/dev/sdg", &[]),
        &["/dev/sdg: refused (rule no-medium)", NO_FLAG],
    );
}

#[test]
fn check_refuses_an_internal_disk_unless_allowed() {
    assert_refused(
        &check("/dev/sda", &[]),
        &[
            "/dev/sda: refused (rule internal)",
            "internal sata disk",
            "pass --allow-internal",
        ],
    );
    let out = check("/dev/sda", &["--allow-internal", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "/dev/sda: accepted (sata, 2 TiB, ATA WDC WD20EZRZ)\n");
}

#[test]
fn check_asks_confirmation_for_a_terabyte_disk_and_yes_gives_it() {
    let out = check("/dev/sdf", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("/dev/sdf: accepted (usb, 1 TiB, WD Elements 25A3)\n"),
        "{text}"
    );
    assert!(
        text.contains("needs confirmation (rule large-disk): 1 TiB is more than 512 GiB"),
        "{text}"
    );
    assert!(text.contains("or pass --yes"), "{text}");
    let out = check("/dev/sdf", &["--yes"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "/dev/sdf: accepted (usb, 1 TiB, WD Elements 25A3)\n"
    );
}

#[test]
fn check_refuses_a_disk_smaller_than_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("pi1.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 30)
        .unwrap();
    let out = check("/dev/mmcblk0", &["--image", img.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "/dev/mmcblk0: refused (rule too-small)",
            "32 GiB is smaller than the image (40 GiB)",
            NO_FLAG,
        ],
    );
    // The same card takes an image that fits.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let out = check("/dev/mmcblk0", &["--image", img.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A tree with one USB disk whose partition has the device number of the
/// filesystem holding `dir`: real files there are "on" the fake disk.
fn tree_with_disk_holding(dir: &Path, root: &Path) {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let part = (rustix::fs::major(dev), rustix::fs::minor(dev));
    FakeSys::new(root).add_disk(&FakeDisk {
        name: "sdx",
        dev: (8, 240),
        bytes: 64 << 30,
        partitions: &[("sdx1", part, 64 << 30)],
        ..FakeDisk::default()
    });
}

#[test]
fn check_refuses_the_disk_holding_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    tree_with_disk_holding(tmp.path(), &root);
    let img = tmp.path().join("pi1.img");
    std::fs::write(&img, [0xA5u8; 4096]).unwrap();
    // The cache is on the same fake disk; the image, checked first, is named.
    let out = devices_in(
        &root,
        tmp.path(),
        &["--check", "/dev/sdx", "--image", img.to_str().unwrap()],
    );
    assert_refused(
        &out,
        &[
            "/dev/sdx: refused (rule image-disk): it holds the image being written",
            img.to_str().unwrap(),
            NO_FLAG,
        ],
    );
}

#[test]
fn check_refuses_the_disk_holding_the_cache_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    tree_with_disk_holding(tmp.path(), &root);
    let cache = tmp.path().join("cache/not-made-yet");
    let out = devices_in(&root, &cache, &["--check", "/dev/sdx"]);
    assert_refused(
        &out,
        &[
            "/dev/sdx: refused (rule output-disk): it holds the image cache",
            "not-made-yet",
            NO_FLAG,
        ],
    );
}

#[test]
fn check_accepts_usb_sd_and_a_named_loop_device() {
    for (dev, want) in [
        (
            "/dev/sdb",
            "/dev/sdb: accepted (usb, 240 GiB, Samsung Portable SSD T7, serial S5SCNS0R700123)\n",
        ),
        (
            "/dev/mmcblk0",
            "/dev/mmcblk0: accepted (mmc, 32 GiB, SD32G, serial 0x1234abcd)\n",
        ),
        ("/dev/loop50", "/dev/loop50: accepted (loop, 4 GiB)\n"),
    ] {
        let out = check(dev, &[]);
        assert!(out.status.success(), "{dev}: {}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    }
}

#[test]
fn check_names_the_disk_when_given_a_partition() {
    assert_refused(&check("/dev/sdb1", &[]), &["/dev/sdb1: no such device"]);
    assert_refused(
        &check("/dev/mmcblk0p2", &[]),
        &["/dev/mmcblk0p2: a partition of /dev/mmcblk0; name the whole disk"],
    );
}

#[test]
fn check_json_gives_the_verdict_with_the_disk() {
    let out = check("/dev/sda", &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["path"], "/dev/sda");
    assert_eq!(v["status"], "refused");
    assert_eq!(v["rule"], "internal");
    assert_eq!(v["override"], "--allow-internal");
    assert!(stderr(&out).contains("rule internal"));
}

/// The name of group `gid`, by `getent` (an independent lookup).
fn group_name(gid: u32) -> String {
    let out = Command::new("getent")
        .args(["group", &gid.to_string()])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

// ---- a real loop device -------------------------------------------------

/// A loop device over a 0xA5-filled file with one partition; detached (and
/// its partition unmounted) on drop.
struct Loop {
    dev: PathBuf,
    mounted: Option<PathBuf>,
}

impl Loop {
    /// `None` (with the reason printed) when this machine cannot make one.
    fn attach(file: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-P"])
            .arg(file)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let dev = String::from_utf8(o.stdout).unwrap().trim().to_owned();
                let lp = Loop {
                    dev: dev.into(),
                    mounted: None,
                };
                // With loop max_part=0 some kernels neither scan the
                // table on attach nor on BLKRRPART; partx adds the
                // partitions one by one (BLKPG).
                let name = lp.dev.file_name().unwrap().to_str().unwrap().to_owned();
                let part = Path::new("/sys/block")
                    .join(&name)
                    .join(format!("{name}p1"));
                if !part.exists() {
                    let _ = Command::new("partx").arg("-a").arg(&lp.dev).status();
                }
                for _ in 0..50 {
                    if part.exists() && lp.part1().exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                assert!(part.exists(), "{} shows no partition 1", lp.dev.display());
                Some(lp)
            }
            Ok(o) => {
                eprintln!(
                    "SKIPPED: loop devices unavailable (losetup: {})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: loop devices unavailable (cannot run losetup: {e})");
                None
            }
        }
    }

    fn part1(&self) -> PathBuf {
        PathBuf::from(format!("{}p1", self.dev.display()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A 64 MiB file filled with 0xA5 with an MBR and one partition at 1 MiB.
fn patterned_disk_file(path: &Path) {
    std::fs::write(path, vec![0xA5u8; 64 << 20]).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk package)");
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
}

fn real_check(dev: &Path, cache: &Path) -> Output {
    bin()
        .args(["devices", "--check"])
        .arg(dev)
        .env_remove("HOMELAB_SYSROOT")
        .env("HOMELAB_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn open_exclusive(
    dev: &Path,
) -> Result<homelab_image::flash::exclusive::Exclusive, homelab_image::flash::exclusive::OpenError>
{
    use homelab_image::flash::{devices, exclusive, rules};
    let root = Path::new("/");
    let disks = devices::scan(root).unwrap();
    let disk = devices::find(&disks, root, dev).unwrap().clone();
    exclusive::open_exclusive(
        dev,
        &disk,
        root,
        &rules::Context::new(),
        &rules::Overrides::default(),
    )
}

#[test]
fn exclusive_open_of_a_loop_device_succeeds_then_refuses_a_second_holder_and_a_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("card.img");
    patterned_disk_file(&file);
    let Some(mut lp) = Loop::attach(&file) else {
        return;
    };
    let before = std::fs::read(&file).unwrap();

    // Free: `devices --check` accepts it, the library opens it for writing.
    let out = real_check(&lp.dev, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("{}: accepted (loop, 64 MiB", lp.dev.display())),
        "{text}"
    );
    let held = open_exclusive(&lp.dev).expect("exclusive open of a free loop device");
    assert_eq!(held.disk.path, lp.dev);
    assert_eq!(held.disk.partitions.len(), 1);

    // Held O_EXCL by another open: the kernel says EBUSY, both to a second
    // open_exclusive and to `devices --check`.
    let err = open_exclusive(&lp.dev).unwrap_err();
    assert_eq!(err.rule(), Some("busy"), "{err}");
    assert!(err.to_string().contains("refused (rule busy)"), "{err}");
    assert_refused(
        &real_check(&lp.dev, tmp.path()),
        &[&format!("{}: refused (rule busy)", lp.dev.display())],
    );
    drop(held);
    assert_eq!(std::fs::read(&file).unwrap(), before, "a byte was written");

    // A mounted partition: sysfs shows it (rule mounted) and the kernel
    // refuses exclusive access to the whole disk.
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(lp.part1())
        .output()
        .expect("mkfs.ext4");
    assert!(
        mkfs.status.success(),
        "{}",
        String::from_utf8_lossy(&mkfs.stderr)
    );
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = Command::new("mount")
        .arg(lp.part1())
        .arg(&mnt)
        .output()
        .unwrap();
    if !mount.status.success() {
        eprintln!(
            "SKIPPED (mount part): cannot mount ext4 here: {}",
            String::from_utf8_lossy(&mount.stderr).trim()
        );
        return;
    }
    lp.mounted = Some(mnt.clone());
    let err = open_exclusive(&lp.dev).unwrap_err();
    assert_eq!(err.rule(), Some("busy"), "{err}");
    assert_refused(
        &real_check(&lp.dev, tmp.path()),
        &[
            &format!("{}: refused (rule mounted)", lp.dev.display()),
            &format!("{} is mounted at {}", lp.part1().display(), mnt.display()),
        ],
    );
}

#[test]
fn check_tells_a_user_without_write_permission_how_to_get_it_and_listing_needs_none() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("card.img");
    patterned_disk_file(&file);
    let Some(lp) = Loop::attach(&file) else {
        return;
    };
    let before = std::fs::read(&file).unwrap();
    // Run as nobody, in no group: the loop node is root:disk 0660.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .args(["devices", "--check"])
        .arg(&lp.dev)
        .env_remove("HOMELAB_SYSROOT")
        .env("HOMELAB_CACHE_DIR", "/nonexistent")
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv (util-linux)");
    // Debian and Ubuntu give disks to group `disk`; a container's devtmpfs
    // may leave them root:root, and then only sudo is advice.
    let gid = std::fs::metadata(&lp.dev).unwrap().gid();
    if gid == 0 {
        assert_refused(
            &out,
            &[&format!(
                "{}: no permission to write it; it is writable by root only: run with sudo",
                lp.dev.display()
            )],
        );
    } else {
        let group = group_name(gid);
        assert_refused(
            &out,
            &[
                &format!("{}: no permission to write it", lp.dev.display()),
                &format!("needs root or membership of group {group}"),
                &format!("sudo usermod -aG {group} $USER"),
                "log in again",
            ],
        );
    }
    // Listing needs no privilege at all.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .args(["devices", "--json", "--all"])
        .env_remove("HOMELAB_SYSROOT")
        .env("HOMELAB_CACHE_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == lp.dev.to_str().unwrap()),
        "{list:#}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "a byte was written");
}

#[test]
fn exclusive_open_refuses_a_path_that_now_names_another_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.img"), tmp.path().join("b.img"));
    patterned_disk_file(&a);
    patterned_disk_file(&b);
    let Some(la) = Loop::attach(&a) else {
        return;
    };
    let Some(lb) = Loop::attach(&b) else {
        return;
    };
    let before_b = std::fs::read(&b).unwrap();
    use homelab_image::flash::{devices, exclusive, rules};
    let root = Path::new("/");
    let disks = devices::scan(root).unwrap();
    // Checked as A, but the path now leads to B (a swapped card, a moved
    // by-id link): what was opened is refused.
    let checked = devices::find(&disks, root, &la.dev).unwrap().clone();
    let err = exclusive::open_exclusive(
        &lb.dev,
        &checked,
        root,
        &rules::Context::new(),
        &rules::Overrides::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, exclusive::OpenError::Changed { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "{}: changed since it was checked",
            lb.dev.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&b).unwrap(),
        before_b,
        "a byte was written to B"
    );
}

/// `swapoff` on drop.
struct Swapon(PathBuf);

impl Drop for Swapon {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
    }
}

#[test]
fn active_swap_on_a_real_loop_partition_is_refused_by_rule_and_by_the_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("card.img");
    patterned_disk_file(&file);
    let Some(lp) = Loop::attach(&file) else {
        return;
    };
    let mkswap = Command::new("mkswap").arg(lp.part1()).output().unwrap();
    assert!(
        mkswap.status.success(),
        "{}",
        String::from_utf8_lossy(&mkswap.stderr)
    );
    let on = Command::new("swapon").arg(lp.part1()).output().unwrap();
    if !on.status.success() {
        eprintln!(
            "SKIPPED: swapon refused here: {}",
            String::from_utf8_lossy(&on.stderr).trim()
        );
        return;
    }
    let _swap = Swapon(lp.part1());
    assert_refused(
        &real_check(&lp.dev, tmp.path()),
        &[
            &format!("{}: refused (rule swap)", lp.dev.display()),
            &format!(
                "{} is in use as swap; swapoff it first",
                lp.part1().display()
            ),
        ],
    );
    let err = open_exclusive(&lp.dev).unwrap_err();
    assert_eq!(err.rule(), Some("busy"), "{err}");
}

/// `lsblk` (util-linux, reading sysfs on its own) as the oracle for what
/// we read from the real system: our loop device with a mounted partition,
/// and the disk holding `/`.
#[test]
fn devices_json_on_the_real_system_agrees_with_lsblk() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("card.img");
    patterned_disk_file(&file);
    let Some(mut lp) = Loop::attach(&file) else {
        return;
    };
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(lp.part1())
        .output()
        .unwrap();
    assert!(mkfs.status.success());
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if Command::new("mount")
        .arg(lp.part1())
        .arg(&mnt)
        .status()
        .unwrap()
        .success()
    {
        lp.mounted = Some(mnt.clone());
    } else {
        eprintln!("note: cannot mount ext4 here; comparing without a mount");
    }

    let ours = bin()
        .args(["devices", "--json", "--all"])
        .env_remove("HOMELAB_SYSROOT")
        .env("HOMELAB_CACHE_DIR", tmp.path())
        .output()
        .unwrap();
    assert!(ours.status.success(), "{}", stderr(&ours));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let lsblk = Command::new("lsblk")
        .args([
            "-J",
            "-b",
            "-o",
            "NAME,PATH,TYPE,SIZE,RO,RM,MAJ:MIN,MOUNTPOINTS",
        ])
        .output()
        .expect("lsblk (util-linux)");
    assert!(lsblk.status.success());
    let lsblk: serde_json::Value = serde_json::from_slice(&lsblk.stdout).unwrap();
    let theirs = lsblk["blockdevices"].as_array().unwrap();

    let find = |list: &[serde_json::Value], key: &str, path: &str| -> serde_json::Value {
        list.iter()
            .find(|d| d[key] == path)
            .unwrap_or_else(|| panic!("{path} not in {list:#?}"))
            .clone()
    };
    let mount_points = |d: &serde_json::Value| -> Vec<String> {
        let mut all: Vec<String> = std::iter::once(d)
            .chain(d["children"].as_array().into_iter().flatten())
            .flat_map(|x| x["mountpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        all.sort();
        all
    };
    let root_disk = theirs
        .iter()
        .find(|d| mount_points(d).iter().any(|m| m == "/"))
        .map(|d| d["path"].as_str().unwrap().to_owned());
    let dev = lp.dev.to_str().unwrap().to_owned();
    for path in std::iter::once(dev.clone()).chain(root_disk) {
        let t = find(theirs, "path", &path);
        let o = find(ours.as_array().unwrap(), "path", &path);
        assert_eq!(o["size"], t["size"], "{path} size");
        assert_eq!(o["dev"], t["maj:min"], "{path} dev");
        assert_eq!(o["read_only"], t["ro"], "{path} ro");
        assert_eq!(o["removable"], t["rm"], "{path} rm");
        let parts = |v: &serde_json::Value, p: &str, d: &str| -> Vec<(String, String, u64)> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter(|c| c.get("type").is_none_or(|t| t == "part"))
                .map(|c| {
                    (
                        c[p].as_str().unwrap().to_owned(),
                        c[d].as_str().unwrap().to_owned(),
                        c["size"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            parts(&o["partitions"], "path", "dev"),
            parts(&t["children"], "path", "maj:min"),
            "{path} partitions"
        );
        let mut our_mounts: Vec<String> = o["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mount_point"].as_str().unwrap().to_owned())
            .collect();
        our_mounts.sort();
        assert_eq!(our_mounts, mount_points(&t), "{path} mount points");
    }
    let ours_loop = find(ours.as_array().unwrap(), "path", &dev);
    assert_eq!(ours_loop["transport"], "loop");
    if lp.mounted.is_some() {
        assert_eq!(ours_loop["rule"], "mounted");
    }
}
