//! The profile commands through the real binary: `init` writes a profile
//! that passes `check` and `render` as it stands with no environment
//! variable set; `check` exits 1 listing every error; `render` prints or
//! writes a tree; help fits 80 columns.

use predicates::prelude::PredicateBooleanExt;

use crate::profile_support::{bin, example_profiles, repo, tempdir};

#[test]
fn init_writes_a_profile_that_checks_and_renders() {
    let dir = tempdir();
    let home = tempdir();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    std::fs::write(
        ssh.join("id_ed25519.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 me@host\n",
    )
    .expect("write key");
    let run = |args: &[&str]| {
        bin()
            .current_dir(dir.path())
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(args)
            .assert()
    };
    run(&["init"]).success();
    let text = std::fs::read_to_string(dir.path().join("homelab.yaml")).expect("profile");
    assert!(text.contains("me@host"), "the user's key is used");
    assert!(
        dir.path()
            .join(".homelab-state/microcloud-passphrase")
            .exists()
    );
    run(&["check"])
        .success()
        .stdout(predicates::str::contains("ok (3 nodes, 0 warnings)"));
    for node in ["node1", "node2", "node3"] {
        run(&["render", "--node", node])
            .success()
            .stdout(predicates::str::contains("#cloud-config"));
    }
    let out = dir.path().join("out");
    run(&[
        "render",
        "--node",
        "node2",
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .success();
    assert!(out.join("boot/user-data").exists() && out.join("manifest.json").exists());
    // Never overwrites without --force.
    run(&["init"])
        .failure()
        .code(1)
        .stderr(predicates::str::contains("pass --force"));
    run(&["init", "--force"]).success();
}

#[test]
fn init_without_keys_or_route_still_checks() {
    let dir = tempdir();
    let home = tempdir();
    bin()
        .current_dir(dir.path())
        .env("HOME", home.path())
        .arg("init")
        .assert()
        .success();
    bin()
        .current_dir(dir.path())
        .arg("check")
        .assert()
        .success();
}

#[test]
fn every_example_profile_passes_check() {
    for p in example_profiles() {
        bin()
            .arg("--profile")
            .arg(&p)
            .arg("check")
            .assert()
            .success();
    }
}

#[test]
fn render_names_unknown_nodes_and_refuses_non_empty_out_dirs() {
    let p = repo().join("profiles/pi4-microcloud.yaml");
    let state = tempdir();
    // Copy the profile so its state directory lands in a temp dir.
    let copy = state.path().join("p.yaml");
    std::fs::copy(&p, &copy).expect("copy");
    bin()
        .arg("--profile")
        .arg(&copy)
        .args(["render", "--node", "pi9"])
        .assert()
        .failure()
        .code(1)
        .stderr(
            predicates::str::contains("node pi9 is not in")
                .and(predicates::str::contains("pi1, pi2, pi3")),
        );
    let out = state.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("keep"), "x").expect("write");
    bin()
        .arg("--profile")
        .arg(&copy)
        .args(["render", "--node", "pi1", "--out"])
        .arg(&out)
        .assert()
        .failure()
        .code(1)
        .stderr(predicates::str::contains("is not empty"));
    // render only reads the state directory; build creates it.
    assert!(!state.path().join(".homelab-state").exists());
}

#[test]
fn rendering_twice_reuses_the_state() {
    let dir = tempdir();
    let copy = dir.path().join("p.yaml");
    std::fs::copy(repo().join("profiles/armbian-rock5b.yaml"), &copy).expect("copy");
    crate::profile_support::prepare_state(&copy);
    let render = || {
        bin()
            .arg("--profile")
            .arg(&copy)
            .args(["render", "--node", "rock1"])
            .output()
            .expect("run")
            .stdout
    };
    assert_eq!(render(), render());
}
