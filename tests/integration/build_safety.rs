//! A build that is stopped by any terminating signal removes its partial
//! files, and two builds into one output directory do not share anything:
//! the second is refused, naming the first.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::profile;
use crate::util::{bin, fixture, run_ok};

fn build_cmd(p: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.arg("--profile")
        .arg(p)
        .args(["-v", "build", "--sha256", "--node", "pi1", "--out"])
        .arg(out);
    c
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn a_hangup_or_quit_during_a_build_removes_its_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    // A base with 1.5 GiB of incompressible bytes past its partitions, so
    // the copy takes long enough to be interrupted.
    let base = tmp.path().join("big-base.img");
    crate::ext4_support::big_base(&base, 7);
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let out = tmp.path().join("out");
    run_ok(&mut build_cmd(&p, &out));
    let good = std::fs::read(out.join("pi1.img.sha256")).unwrap();
    for sig in ["HUP", "QUIT"] {
        let mut child = build_cmd(&p, &out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Signal once the partial image exists: the build is copying.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !names(&out).iter().any(|n| n.ends_with(".partial")) {
            assert!(Instant::now() < deadline, "no partial file appeared");
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        run_ok(Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]));
        let status = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        if status.success() {
            eprintln!("SIG{sig}: the build finished before the signal arrived");
            continue;
        }
        assert_eq!(status.code(), Some(1), "SIG{sig} killed the build:\n{err}");
        assert!(err.contains("interrupted"), "SIG{sig}: {err}");
        let left = names(&out);
        assert!(
            !left.iter().any(|n| n.ends_with(".partial")),
            "SIG{sig}: partial files left: {left:?}"
        );
        assert_eq!(std::fs::read(out.join("pi1.img.sha256")).unwrap(), good);
    }
}

#[test]
fn two_builds_into_one_output_directory_one_is_refused_naming_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        &fixture("ubuntu-raspi.img"),
    );
    let out = tmp.path().join("out");
    // The first build makes the state directory; the pair shares it.
    run_ok(&mut build_cmd(&p, &out));
    for _ in 0..3 {
        let spawn = || {
            build_cmd(&p, &out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (pa, pb) = (a.id(), b.id());
        let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let left = names(&out);
        assert!(
            !left.iter().any(|n| n.ends_with(".partial")),
            "partial files left: {left:?}"
        );
        run_ok(
            Command::new("sha256sum")
                .arg("-c")
                .arg("pi1.img.sha256")
                .current_dir(&out),
        );
        let (loser, winner) = match (oa.status.success(), ob.status.success()) {
            (true, true) => continue, // one finished before the other began
            (true, false) => (ob, pa),
            (false, true) => (oa, pb),
            (false, false) => panic!(
                "both builds failed:\n{}\n{}",
                String::from_utf8_lossy(&oa.stderr),
                String::from_utf8_lossy(&ob.stderr)
            ),
        };
        let err = String::from_utf8_lossy(&loser.stderr);
        assert_eq!(loser.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{}: in use by process {winner} (", out.display()))
                && err.contains(" build "),
            "{err}"
        );
        return;
    }
    panic!("the two builds never overlapped in 3 trials");
}
