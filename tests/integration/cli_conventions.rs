//! The conventions every command keeps (issue 16 §3): Examples in every
//! help screen that parse as written, global options apart, bash completion
//! after the subcommand (driven in bash itself), `--color`/NO_COLOR for
//! clap's own errors, a closed pipe ending quietly, `-q`/`-v`/`-vv`, JSON on
//! the listing commands, and errors that say what to do next.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{assert_fails, bin, example_profile, fixture, hi, hi_ok, run_ok};

/// The lines of the Examples section of a help screen.
fn examples_of(help: &str) -> Vec<String> {
    let Some((_, rest)) = help.split_once("\nExamples:\n") else {
        return Vec::new();
    };
    // A line ending in `\` goes on in the next, as in a shell.
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in rest.lines().take_while(|l| l.starts_with("  ")) {
        let text = line.trim();
        match out.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(text.trim_end_matches('\\').trim_end());
            }
            _ => out.push(text.trim_end_matches('\\').trim_end().to_string()),
        }
        continued = text.ends_with('\\');
    }
    out
}

#[test]
fn every_help_has_examples_that_parse_and_global_options_apart() {
    let paths = crate::cli::subcommand_paths();
    assert!(paths.len() >= 18, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = hi_ok(&args);
        let examples = examples_of(&help);
        assert!(
            !examples.is_empty(),
            "`{}` has no Examples:\n{help}",
            args.join(" ")
        );
        assert!(
            help.contains("\nGlobal options:\n") && help.contains("\nOptions:\n"),
            "`{}` does not list global options apart:\n{help}",
            args.join(" ")
        );
        let global = help.split("\nGlobal options:\n").nth(1).unwrap_or("");
        assert!(global.contains("--profile") && global.contains("--quiet"));
        let own = help.split("\nGlobal options:\n").next().unwrap_or("");
        assert!(!own.contains("--profile <FILE>"), "{help}");
        // Each example is a command line the parser accepts, and at least
        // one runs the command whose help shows it (others may show the
        // step after, such as `flash` after `firmware card`).
        let mut runs_it = 0;
        for example in &examples {
            let line = example.split(" #").next().unwrap_or(example);
            // A quoted command substitution is one word to the parser.
            let mut line = line.to_string();
            while let Some(start) = line.find("\"$(") {
                let Some(len) = line[start..].find(")\"") else {
                    break;
                };
                line.replace_range(start..start + len + 2, "SUBSTITUTED");
            }
            let line = line.split(['|', '>', '&']).next().unwrap_or(&line).trim();
            let words: Vec<&str> = line
                .split_whitespace()
                .skip_while(|w| *w == "sudo")
                .collect();
            assert_eq!(words.first(), Some(&"homelab-image"), "{example}");
            let parsed = homelab_image::cli::command().try_get_matches_from(&words);
            let matches =
                parsed.unwrap_or_else(|e| panic!("example `{example}` does not parse:\n{e}"));
            let mut m = Some(&matches);
            for name in &path {
                m = m.and_then(|m| m.subcommand_matches(name));
            }
            runs_it += usize::from(m.is_some());
        }
        assert!(
            runs_it > 0,
            "no example of `{}` runs it: {examples:?}",
            args.join(" ")
        );
    }
}

#[test]
fn build_without_a_selection_names_both_ways_to_choose() {
    let out = hi(&["build"]);
    assert_fails(&out, 2, &["--node <NAME>", "--all"]);
    let out = hi(&["build", "--node", "pi1", "--all"]);
    assert_fails(&out, 2, &["--all", "cannot be used with"]);
}

/// Runs `script` in bash: the completion script sourced, then `body`.
fn bash_with_completion(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("homelab-image.bash");
    std::fs::write(&script, hi_ok(&["completions", "bash"])).unwrap();
    let program = format!("source {}\n{body}", script.display());
    let out = run_ok(Command::new("bash").arg("--norc").arg("-c").arg(program));
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers for the words typed so far (the last one being
/// completed), by calling the registered function as bash does on TAB.
fn complete(words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let body = format!(
        r#"spec=$(complete -p homelab-image) || exit 9
fn=${{spec#*-F }}; fn=${{fn%% *}}
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
prev=${{COMP_WORDS[COMP_CWORD-1]}}
"$fn" homelab-image "${{COMP_WORDS[COMP_CWORD]}}" "$prev"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" ")
    );
    bash_with_completion(&body)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_options_after_the_subcommand() {
    let spec = bash_with_completion("complete -p homelab-image");
    assert!(spec.contains("-F _homelab__image"), "{spec}");

    let offered = complete(&["homelab-image", "build", "--"]);
    for want in ["--node", "--all", "--dry-run", "--json", "--profile"] {
        assert!(
            offered.iter().any(|o| o == want),
            "build --<TAB>: {offered:?}"
        );
    }
    assert!(
        !offered.iter().any(|o| o == "--to"),
        "build offers flash's --to"
    );

    let offered = complete(&["homelab-image", "flash", "--"]);
    assert!(
        offered.iter().any(|o| o == "--to"),
        "flash --<TAB>: {offered:?}"
    );

    let offered = complete(&["homelab-image", "cache", ""]);
    for want in ["list", "verify", "prune"] {
        assert!(
            offered.iter().any(|o| o == want),
            "cache <TAB>: {offered:?}"
        );
    }
    let offered = complete(&["homelab-image", "cache", "list", "--"]);
    assert!(offered.iter().any(|o| o == "--json"), "{offered:?}");
    // And at the top level, the commands.
    let offered = complete(&["homelab-image", "ser"]);
    assert_eq!(offered, ["serve"]);
}

/// Runs our binary under a pseudo-terminal (`script`), so it may colour;
/// returns what the terminal got.
fn on_a_terminal(args: &str, no_color: bool) -> String {
    let mut cmd = Command::new("script");
    cmd.arg("-qec")
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_homelab-image")))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("running script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn clap_errors_follow_color_and_no_color() {
    let esc = '\u{1b}';
    let plain = on_a_terminal("no-such-command", false);
    assert!(plain.contains("unrecognized subcommand"), "{plain}");
    assert!(
        plain.contains(esc),
        "a terminal gets colour by default: {plain:?}"
    );
    for (args, no_color) in [
        ("--color never no-such-command", false),
        ("no-such-command --color=never", false),
        ("no-such-command", true),
    ] {
        let text = on_a_terminal(args, no_color);
        assert!(text.contains("unrecognized subcommand"), "{text}");
        assert!(
            !text.contains(esc),
            "{args} (NO_COLOR={no_color}): {text:?}"
        );
    }
    // Forced colour reaches a pipe too.
    let out = bin()
        .args(["--color", "always", "no-such-command"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(esc));
}

/// Runs our binary with stdout a pipe whose reader is already gone.
fn into_a_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn writing_into_a_closed_pipe_ends_quietly() {
    let image = fixture("ubuntu-raspi.img");
    for args in [
        vec!["manpage"],
        vec!["images"],
        vec!["completions", "bash"],
        vec!["inspect", "--json", image.to_str().unwrap()],
    ] {
        let out = into_a_closed_pipe(&args);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_page_points_to_no_page_that_does_not_exist() {
    let text = hi_ok(&["manpage"]);
    assert!(text.contains(".TH"), "{text}");
    assert!(
        !text.contains("homelab\\-image\\-build(1)") && !text.contains("homelab-image-build(1)"),
        "the page points to per-command pages nobody installs"
    );
    // Every command is described in the one page, with its options.
    for cmd in ["build", "flash", "serve", "cache list", "pull"] {
        let title = format!(".SS \"homelab\\-image {cmd}\"");
        assert!(text.contains(&title), "man page lacks {title}");
    }
    assert!(
        text.contains("\\-\\-dry\\-run"),
        "build's options are missing"
    );
}

#[test]
fn quiet_silences_warnings_and_verbose_levels_differ() {
    let dir = tempfile::tempdir().unwrap();
    let profile = example_profile(
        dir.path(),
        "pi4-microcloud.yaml",
        None,
        &fixture("ubuntu-raspi.img"),
    );
    let p = profile.to_str().unwrap();
    // render before any build warns that its secrets are made for this run.
    let out = hi(&["--profile", p, "render", "--node", "pi1"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning:"));
    let out = hi(&["--profile", p, "-q", "render", "--node", "pi1"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "-q render");

    let outdir = dir.path().join("out");
    let o = outdir.to_str().unwrap();
    let build = |flag: &str| {
        let mut args = vec!["--profile", p, "build", "--node", "pi1", "--out", o];
        if !flag.is_empty() {
            args.insert(0, flag);
        }
        let out = hi(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = build("-q");
    assert_eq!(quiet, "", "-q build");
    let v = build("-v");
    let vv = build("-vv");
    assert!(v.contains("INFO") && !v.contains("DEBUG"), "-v:\n{v}");
    assert!(vv.contains("INFO") && vv.contains("DEBUG"), "-vv:\n{vv}");
    assert!(vv.lines().count() > v.lines().count());
}

#[test]
fn images_fit_80_columns_and_print_json() {
    let text = hi_ok(&["images"]);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{}-column line: {line}",
            line.len()
        );
    }
    let json: serde_json::Value = serde_json::from_str(&hi_ok(&["images", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert!(rows.len() >= 6);
    let first = &rows[0];
    for key in ["name", "os", "boards", "description", "from"] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    assert!(first["from"].as_str().unwrap().starts_with("https://"));
    assert!(text.contains(first["name"].as_str().unwrap()));
}

#[test]
fn cache_list_prints_json_with_null_for_unknowns() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let empty: serde_json::Value =
        serde_json::from_str(&hi_ok(&["--cache-dir", c, "cache", "list", "--json"])).unwrap();
    assert_eq!(empty["images"], serde_json::json!([]));
    assert_eq!(empty["partial_downloads"], serde_json::json!([]));

    // A small raw image pulled from a local file.
    let img = dir.path().join("small.img");
    std::fs::write(&img, crate::util::garbage(1 << 20, 7)).unwrap();
    let raw = hi_ok(&["--cache-dir", c, "-q", "pull", img.to_str().unwrap()]);
    let listing: serde_json::Value =
        serde_json::from_str(&hi_ok(&["--cache-dir", c, "cache", "list", "--json"])).unwrap();
    let images = listing["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{listing}");
    let e = &images[0];
    assert_eq!(e["path"].as_str(), Some(raw.trim()));
    assert_eq!(e["size"], 1 << 20);
    assert_eq!(e["health"], "intact");
    assert_eq!(e["problem"], serde_json::Value::Null);
    assert_eq!(e["sha256"].as_str().unwrap().len(), 64);
    let added = e["added"].as_str().unwrap();
    assert!(added.ends_with('Z') && added.contains('T'), "{added}");

    // Its metadata damaged: the unknowns are null, not "-" or "?".
    let meta = Path::new(raw.trim()).with_extension("json");
    assert!(meta.exists(), "no metadata file {}", meta.display());
    std::fs::write(&meta, b"{ not json").unwrap();
    let listing: serde_json::Value =
        serde_json::from_str(&hi_ok(&["--cache-dir", c, "cache", "list", "--json"])).unwrap();
    let e = &listing["images"][0];
    assert_eq!(e["size"], serde_json::Value::Null, "{e}");
    assert_eq!(e["source"], serde_json::Value::Null, "{e}");
    assert_eq!(e["health"], "damaged", "{e}");
}

#[test]
fn a_missing_profile_suggests_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().current_dir(dir.path()).arg("check").output().unwrap();
    assert_fails(
        &out,
        1,
        &["homelab.yaml: no such profile", "`homelab-image init`"],
    );
    let other = dir.path().join("lab.yaml");
    let out = hi(&["--profile", other.to_str().unwrap(), "build", "--all"]);
    assert_fails(
        &out,
        1,
        &[&format!(
            "`homelab-image --profile {} init`",
            other.display()
        )],
    );
}

#[test]
fn inspect_of_a_compressed_file_says_how_to_pull_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("base.img");
    std::fs::write(&raw, crate::util::garbage(64 << 10, 3)).unwrap();
    for (tool, ext, name) in [
        ("xz", "xz", "xz"),
        ("gzip", "gz", "gzip"),
        ("zstd", "zst", "zstd"),
    ] {
        let packed = dir.path().join(format!("base.img.{ext}"));
        run_ok(Command::new(tool).arg("-kqf").arg(&raw));
        assert!(packed.exists(), "{tool} made no {}", packed.display());
        let shown = packed.display().to_string();
        for cmd in ["inspect", "ls"] {
            let mut args = vec![cmd, shown.as_str()];
            if cmd == "ls" {
                args.push("1");
            }
            let out = hi(&args);
            assert_fails(
                &out,
                1,
                &[
                    &format!("{shown}: is compressed ({name})"),
                    &format!("`homelab-image pull {shown}`"),
                ],
            );
        }
    }
}

/// `pull` of a catalog image on a machine with no network at all (a new
/// network namespace: only a loopback, down) fails at once, in one line,
/// naming `image.path` and `--mirror` — not after half a minute of retries.
#[test]
fn an_offline_catalog_pull_says_so_at_once() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace (unshare -n)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let started = Instant::now();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .args(["-q", "--cache-dir", cache.to_str().unwrap()])
        .args(["pull", "ubuntu-24.04-raspi"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for want in [
        "cannot reach cdimage.ubuntu.com",
        "offline",
        "`image.path`",
        "--mirror",
    ] {
        assert!(stderr.contains(want), "{want} missing: {stderr}");
    }
}
