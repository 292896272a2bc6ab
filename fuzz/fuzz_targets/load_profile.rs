//! Feeds arbitrary bytes to the profile loader and validator: UTF-8 check,
//! YAML → `Profile` (serde-saphyr), then `resolve` (defaults merged, every
//! rule checked, cross-node and MicroCloud validation), and renders every
//! error and warning as `check` would print it. Any panic, hang or huge
//! allocation is a bug: a bad profile must come back as an error naming
//! the file, line and field.
//!
//! In memory, no file I/O: every path the profile names (`files[].source`,
//! `ssh_key_files`, `password: {file:}`, the state directory, …) is made
//! relative and resolved under a directory that does not exist, so the
//! kernel refuses to walk it (`..` included) and no real file is read.
//! Seed the corpus with `fuzz/make-corpus` (the example profiles and the
//! test profiles).
#![no_main]

use std::path::{Component, Path, PathBuf};

use homelab_image::profile::inventory::{NodeSpec, Profile, SecretSpec};
use homelab_image::profile::load::parse;
use homelab_image::profile::resolve::{Context, resolve};
use libfuzzer_sys::fuzz_target;

/// Where relative paths are looked up: it must not exist.
const NOWHERE: &str = "/nonexistent-homelab-fuzz/profile-dir";

/// `p` without its root or `~`: relative to the profile's directory.
fn confine(p: &mut PathBuf) {
    let rel: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    *p = if rel.starts_with("~") {
        rel.strip_prefix("~").map(Path::to_owned).unwrap_or_default()
    } else {
        rel
    };
}

fn confine_secret(s: &mut Option<SecretSpec>) {
    if let Some(SecretSpec { file: Some(f), .. }) = s {
        confine(f);
    }
}

fn confine_node(n: &mut NodeSpec) {
    if let Some(img) = &mut n.image
        && let Some(p) = &mut img.path
    {
        confine(p);
    }
    for u in n.users.iter_mut().flatten() {
        u.ssh_key_files.iter_mut().for_each(confine);
        confine_secret(&mut u.password);
    }
    if let Some(w) = &mut n.wifi {
        confine_secret(&mut w.password);
    }
    for f in n.files.iter_mut().flatten() {
        if let Some(s) = &mut f.source {
            confine(s);
        }
    }
}

fn confine_profile(p: &mut Profile) {
    if let Some(s) = &mut p.state_dir {
        confine(s);
    }
    confine_node(&mut p.defaults);
    p.nodes.iter_mut().for_each(confine_node);
    if let Some(mc) = &mut p.microcloud {
        confine_secret(&mut mc.session_passphrase);
    }
}

fuzz_target!(|data: &[u8]| {
    // The loader refuses non-UTF-8 before parsing (load::read_capped), and
    // profiles over 1 MiB before reading them.
    if data.len() > 1 << 20 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(!Path::new(NOWHERE).exists(), "{NOWHERE} must not exist");
    let path = Path::new(NOWHERE).join("homelab.yaml");
    let mut profile = match parse(&path, text) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    confine_profile(&mut profile);
    let ctx = Context {
        profile_path: path,
        home: None,
        // Every variable is set, so `env:` secrets reach the checks that
        // follow reading them.
        env: Box::new(|name| Some(format!("value-of-{name}"))),
    };
    match resolve(&profile, &ctx) {
        Ok(resolved) => {
            for w in &resolved.warnings {
                let _ = w.to_string();
            }
        }
        Err(report) => {
            let _ = report.to_string();
        }
    }
});
