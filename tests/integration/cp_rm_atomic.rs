//! `cp` and `rm` as transactions: a failure half-way through changes not
//! a byte of the image, and one writer at a time — a second one is
//! refused with the holder named, and what the winner wrote passes
//! fsck.fat / e2fsck with exactly the winner's files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::ext4_support::assert_fsck_clean;
use crate::util::{
    assert_fails, bin, copy_fixture, extract_partition, garbage, hi, hi_ok, our_partition, run_ok,
};

fn sha(img: &Path) -> Vec<u8> {
    run_ok(Command::new("sha256sum").arg(img)).stdout
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// Partition `n` of `img` copied out, with `fsck.fat -n` run on it.
fn fsck_fat(img: &Path, tmp: &Path) -> PathBuf {
    let (start, len) = our_partition(img, 1);
    let fat = tmp.join("p1.fat");
    extract_partition(img, start, len, &fat);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    fat
}

fn mdir(fat: &Path) -> String {
    String::from_utf8(run_ok(Command::new("mdir").args(["-b", "-i"]).arg(fat).arg("::/")).stdout)
        .unwrap()
}

#[test]
fn a_fat_that_fills_up_mid_copy_leaves_the_image_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let before = sha(&img);
    // config.txt is replaced first (its old clusters freed), then the
    // volume runs out: what used to leave config.txt cut short.
    let big = tmp.path().join("config.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(45 << 20)
        .unwrap();
    let big = big.to_str().unwrap().to_string();
    assert_fails(
        &hi(&["cp", i, "system-boot", &big, "/config.txt"]),
        1,
        &["partition 1", "/config.txt", "No space left"],
    );
    assert_eq!(sha(&img), before, "a failed cp changed the image");
    // Several files, the last too big: the first is not written either.
    let small = file(tmp.path(), "small.txt", b"small\n");
    let dir = tmp.path().join("two");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&small, dir.join("a-small.txt")).unwrap();
    std::fs::copy(&big, dir.join("b-big.txt")).unwrap();
    assert_fails(
        &hi(&[
            "cp",
            i,
            "1",
            dir.join("a-small.txt").to_str().unwrap(),
            dir.join("b-big.txt").to_str().unwrap(),
            "/",
        ]),
        1,
        &["/b-big.txt", "No space left"],
    );
    assert_eq!(sha(&img), before, "a failed cp changed the image");
    let fat = fsck_fat(&img, tmp.path());
    assert!(!mdir(&fat).contains("a-small.txt"));
}

#[test]
fn an_rm_batch_that_fails_on_a_later_path_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let before = sha(&img);
    // The same file twice (FAT matches names case-insensitively): the
    // second removal fails once the first has been done.
    assert_fails(
        &hi(&["rm", i, "system-boot", "/user-data", "/USER-DATA"]),
        1,
        &["partition 1", "/USER-DATA: no such file or directory"],
    );
    assert_eq!(sha(&img), before, "a failed rm changed the image");
    assert_fails(
        &hi(&["rm", i, "writable", "/etc/hostname", "/etc/hostname"]),
        1,
        &["partition 2", "/etc/hostname"],
    );
    assert_eq!(sha(&img), before, "a failed rm changed the image");
    hi_ok(&["cat", i, "1", "/user-data"]);
}

#[test]
fn a_commit_that_would_run_out_of_disk_space_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    // A tmpfs just big enough for the sparse fixture; the free clusters
    // of its FAT are holes, so writing a new file needs disk blocks.
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&mnt),
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let img = copy_fixture("ubuntu-raspi.img", &mnt);
    let free = {
        let out = run_ok(Command::new("df").args(["--output=avail", "-B1"]).arg(&mnt)).stdout;
        String::from_utf8(out)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // Leave 1 MiB free, then copy 4 MiB into the FAT.
    let filler = std::fs::File::create(mnt.join("filler")).unwrap();
    run_ok(
        Command::new("fallocate")
            .args(["-l", &(free - (1 << 20)).to_string()])
            .arg(mnt.join("filler")),
    );
    drop(filler);
    let before = sha(&img);
    let data = file(tmp.path(), "data.bin", &garbage(4 << 20, 9));
    assert_fails(
        &hi(&["cp", img.to_str().unwrap(), "1", &data, "/data.bin"]),
        1,
        &[
            "committing the edit",
            "reserving space",
            "nothing was written",
        ],
    );
    assert_eq!(sha(&img), before, "a refused commit changed the image");
}

/// Starts our binary with `args`, output captured.
fn spawn(args: &[&str]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether `out` is a refusal naming `holder`'s pid and command.
fn refused_by(out: &Output, holder: u32, command: &str) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    !out.status.success()
        && err.contains(&format!("in use by process {holder} ("))
        && err.contains(command)
        && err.contains("try again when it has finished")
}

#[test]
fn a_second_writer_is_refused_with_the_holder_named() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let before = sha(&img);
    // flock(1) holds the lock as another homelab-image would (--close:
    // not inherited by sleep, so killing flock releases it).
    let mut holder = Command::new("flock")
        .args(["--exclusive", "--close", i, "sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let f = file(tmp.path(), "x", b"x\n");
    for args in [
        vec!["cp", i, "1", &f, "/x"],
        vec!["cp", i, "2", &f, "/x"],
        vec!["rm", i, "1", "/user-data"],
        vec!["rm", i, "2", "/etc/hostname"],
    ] {
        let out = hi(&args);
        assert_fails(&out, 1, &[]);
        assert!(
            refused_by(&out, holder.id(), "flock"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A build reading it as a base is refused too (it takes a shared lock).
    let p = crate::build::profile(tmp.path(), "pi4-microcloud.yaml", &img);
    let out = bin()
        .arg("--profile")
        .arg(&p)
        .args(["build", "--node", "pi1", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(
        refused_by(&out, holder.id(), "flock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readers that change nothing do not lock.
    hi_ok(&["ls", i, "1", "/"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(sha(&img), before);
    hi_ok(&["cp", i, "1", &f, "/x"]);
}

#[test]
fn concurrent_cp_runs_on_fat_leave_exactly_the_winners_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = file(tmp.path(), "a.bin", &garbage(6 << 20, 1));
    let b = file(tmp.path(), "b.bin", &garbage(6 << 20, 2));
    let mut conflicts = 0;
    for trial in 0..8 {
        let dir = tmp.path().join(format!("t{trial}"));
        std::fs::create_dir(&dir).unwrap();
        let img = copy_fixture("ubuntu-raspi.img", &dir);
        let i = img.to_str().unwrap();
        let ca = spawn(&["cp", i, "1", &a, "/a.bin"]);
        let cb = spawn(&["cp", i, "1", &b, "/b.bin"]);
        let (pa, pb) = (ca.id(), cb.id());
        let (oa, ob) = (
            ca.wait_with_output().unwrap(),
            cb.wait_with_output().unwrap(),
        );
        let listing = mdir(&fsck_fat(&img, &dir));
        let has = |n: &str| listing.contains(n);
        match (oa.status.success(), ob.status.success()) {
            (true, true) => assert!(has("a.bin") && has("b.bin"), "{listing}"),
            (true, false) => {
                assert!(
                    refused_by(&ob, pa, "homelab-image cp"),
                    "{}",
                    String::from_utf8_lossy(&ob.stderr)
                );
                assert!(has("a.bin") && !has("b.bin"), "{listing}");
                conflicts += 1;
            }
            (false, true) => {
                assert!(
                    refused_by(&oa, pb, "homelab-image cp"),
                    "{}",
                    String::from_utf8_lossy(&oa.stderr)
                );
                assert!(!has("a.bin") && has("b.bin"), "{listing}");
                conflicts += 1;
            }
            (false, false) => panic!(
                "both failed:\n{}\n{}",
                String::from_utf8_lossy(&oa.stderr),
                String::from_utf8_lossy(&ob.stderr)
            ),
        }
        if conflicts >= 2 {
            return;
        }
    }
    panic!("the two cp runs never overlapped in 8 trials ({conflicts} conflicts)");
}

#[test]
fn concurrent_cp_and_rm_on_ext4_leave_a_clean_filesystem_with_the_winners_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = file(tmp.path(), "a.bin", &garbage(3 << 20, 4));
    let b = file(tmp.path(), "b.bin", &garbage(3 << 20, 5));
    let mut conflicts = 0;
    for trial in 0..5 {
        let dir = tmp.path().join(format!("t{trial}"));
        std::fs::create_dir(&dir).unwrap();
        let img = copy_fixture("ubuntu-raspi.img", &dir);
        let i = img.to_str().unwrap();
        let runs = [
            spawn(&["cp", i, "writable", &a, "/root/a.bin"]),
            spawn(&["cp", i, "writable", &b, "/root/b.bin"]),
            spawn(&["rm", i, "writable", "/etc/hostname"]),
        ];
        let pids: Vec<u32> = runs.iter().map(Child::id).collect();
        let outs: Vec<Output> = runs
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let (start, len) = our_partition(&img, 2);
        let fs = dir.join("p2.ext4");
        extract_partition(&img, start, len, &fs);
        assert_fsck_clean(&fs, "after concurrent cp, cp and rm");
        let exists = |p: &str| {
            let out = Command::new("debugfs")
                .arg("-R")
                .arg(format!("stat {p}"))
                .arg(&fs)
                .output()
                .unwrap();
            !String::from_utf8_lossy(&out.stderr).contains("File not found")
        };
        let effects = [
            exists("/root/a.bin"),
            exists("/root/b.bin"),
            !exists("/etc/hostname"),
        ];
        for (k, out) in outs.iter().enumerate() {
            if out.status.success() {
                assert!(effects[k], "run {k} succeeded but its change is missing");
            } else {
                assert!(!effects[k], "run {k} failed but its change is there");
                assert!(
                    pids.iter().any(|&p| refused_by(out, p, "homelab-image")),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                conflicts += 1;
            }
        }
    }
    assert!(conflicts > 0, "the runs never overlapped in 5 trials");
}
