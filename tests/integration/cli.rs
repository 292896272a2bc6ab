//! The command line itself: help fits 80 columns, exit codes, completions
//! and the man page.

use clap::CommandFactory;
use homelab_image::cli::Cli;

use crate::util::{assert_fails, hi, hi_ok};

/// Every subcommand path, e.g. `["inspect"]`, `["cache", "list"]`, and
/// `[]` for the top level.
pub(crate) fn subcommand_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, path, out);
        }
    }
    let mut out = vec![vec![]];
    walk(&Cli::command(), vec![], &mut out);
    out
}

#[test]
fn every_help_screen_fits_80_columns() {
    let paths = subcommand_paths();
    assert!(paths.len() >= 6, "expected the subcommands, got {paths:?}");
    for path in paths {
        for flag in ["--help", "-h"] {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push(flag);
            let text = hi_ok(&args);
            assert!(text.contains("Usage:"), "{args:?}: {text}");
            for line in text.lines() {
                assert!(
                    line.chars().count() <= 80,
                    "`homelab-image {}` has a {}-column line:\n{line}",
                    args.join(" "),
                    line.chars().count()
                );
            }
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = hi(&["no-such-command"]);
    assert_fails(&out, 2, &["unrecognized subcommand"]);
    let out = hi(&["inspect"]);
    assert_fails(&out, 2, &["IMAGE"]);
    let out = hi(&["--color", "sometimes", "inspect", "x.img"]);
    assert_fails(&out, 2, &["sometimes"]);
}

#[test]
fn failures_exit_1_with_one_line() {
    let out = hi(&["inspect", "/nonexistent/disk.img"]);
    assert_fails(&out, 1, &["/nonexistent/disk.img", "No such file"]);
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _homelab__image"),
        ("zsh", "#compdef homelab-image"),
        ("fish", "complete -c homelab-image"),
    ] {
        let text = hi_ok(&["completions", shell]);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("inspect"), "{shell} completions lack inspect");
    }
}

#[test]
fn man_page_is_roff_naming_every_command() {
    let text = hi_ok(&["manpage"]);
    assert!(text.starts_with(".ie") || text.contains(".TH"), "{text}");
    for cmd in ["inspect", "ls", "cat", "completions"] {
        assert!(text.contains(cmd), "man page lacks {cmd}");
    }
}

#[test]
fn version_is_printed() {
    let text = hi_ok(&["--version"]);
    assert!(text.starts_with("homelab-image "), "{text}");
}
