//! Helpers shared by the profile and render tests: paths in the repo, the
//! binary, and rendering a profile with a seeded state directory so the
//! output is reproducible.

use std::path::{Path, PathBuf};

use homelab_image::profile::resolve::Context;
use homelab_image::profile::state::{SeededEntropy, State};
use homelab_image::profile::{Cluster, resolve};
use homelab_image::render::FileSpec;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example profiles shipped in profiles/.
pub fn example_profiles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("profiles"))
        .expect("profiles/ exists")
        .map(|e| e.expect("readable profiles/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "expected the three example profiles");
    v
}

/// Every good profile the oracles judge: the examples and the tricky one.
pub fn all_good_profiles() -> Vec<PathBuf> {
    let mut v = example_profiles();
    v.push(repo().join("tests/profiles/good/tricky.yaml"));
    v
}

/// The binary as an assert_cmd command, with the same environment as
/// `util::bin` (no HOMELAB_PROFILE from the caller, no colour).
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::from_std(crate::util::bin())
}

/// A rendered profile: the cluster, its (seeded) state and each node's specs.
pub struct Rendered {
    pub cluster: Cluster,
    pub state: State,
    pub nodes: Vec<(String, Vec<FileSpec>)>,
    _state_dir: tempfile::TempDir,
}

/// The resolved cluster of the profile at `path`, with no environment
/// variables and no home directory.
pub fn resolve_profile(path: &Path) -> Cluster {
    let profile = homelab_image::profile::load(path).unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context {
        profile_path: path.to_owned(),
        home: None,
        env: Box::new(|_| None),
    };
    resolve(&profile, &ctx)
        .unwrap_or_else(|r| panic!("{r}"))
        .cluster
}

/// Loads, resolves and renders `path` with no environment variables and a
/// state directory seeded from the profile's file name.
pub fn render_profile(path: &Path) -> Rendered {
    let mut cluster = resolve_profile(path);
    let state_dir = tempfile::tempdir().expect("temp dir");
    cluster.state_dir = state_dir.path().to_owned();
    let seed = path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    // A fixed clock too: the k3s certificates carry their dates.
    let state = State::prepare_at(
        &cluster,
        &mut SeededEntropy::new(seed.as_bytes()),
        1_767_225_600, // 2026-01-01
    )
    .expect("state");
    let nodes = cluster
        .nodes
        .iter()
        .map(|n| {
            let specs =
                homelab_image::render::node(n, &cluster, &state).unwrap_or_else(|e| panic!("{e}"));
            (n.hostname.to_string(), specs)
        })
        .collect();
    Rendered {
        cluster,
        state,
        nodes,
        _state_dir: state_dir,
    }
}

/// The bytes of the file spec at `path`, if the node has one.
pub fn file<'a>(specs: &'a [FileSpec], path: &str) -> Option<&'a [u8]> {
    specs
        .iter()
        .find(|s| s.path == path)
        .and_then(FileSpec::bytes)
}

/// A fresh temp dir.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Creates the state directory of the profile at `path` (where `build`
/// would), since `render` and dry runs only ever read it.
pub fn prepare_state(path: &Path) -> State {
    let cluster = resolve_profile(path);
    let seed = path.display().to_string();
    State::prepare(&cluster, &mut SeededEntropy::new(seed.as_bytes())).expect("state")
}
