//! Golden files pin the rendered output of every example profile (with a
//! seeded state directory, so keys and passphrases are fixed). Regenerate
//! after an intended change with `UPDATE_GOLDEN=1 cargo test golden` and
//! review the diff.

use homelab_image::render::{known_hosts, tree::to_text};

use crate::profile_support::{example_profiles, render_profile, repo};

pub(crate) fn check_golden(rel: &str, actual: &str) {
    let path = repo().join("tests/golden").join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the rendered output; rerun with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

#[test]
fn golden_files_pin_every_example_profile() {
    for profile in example_profiles() {
        let stem = profile
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let r = render_profile(&profile);
        for (node, specs) in &r.nodes {
            check_golden(
                &format!("{stem}/{node}.txt"),
                &to_text(specs).expect("text"),
            );
        }
        check_golden(
            &format!("{stem}/known_hosts"),
            &known_hosts(&r.cluster, &r.state).expect("known_hosts"),
        );
    }
}

#[test]
fn rendering_is_reproducible() {
    for profile in example_profiles() {
        let (a, b) = (render_profile(&profile), render_profile(&profile));
        assert_eq!(a.nodes, b.nodes, "{}", profile.display());
    }
}

#[test]
fn the_preseed_is_the_same_file_on_every_node() {
    let r = render_profile(&repo().join("profiles/pi4-microcloud.yaml"));
    let preseeds: Vec<&[u8]> = r
        .nodes
        .iter()
        .map(|(_, s)| {
            crate::profile_support::file(s, "/var/lib/homelab-image/microcloud-preseed.yaml")
                .expect("preseed")
        })
        .collect();
    assert_eq!(preseeds.len(), 3);
    assert!(preseeds.windows(2).all(|w| w[0] == w[1]));
}
