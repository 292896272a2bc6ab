//! `init`, `check` and `render`: the profile commands. Each loads what it
//! needs, calls the library and turns typed errors into messages that name
//! the file and the node.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::build::base_check::{self, Checked};
use crate::cli::GlobalArgs;
use crate::cli::profile_cmds::{CheckArgs, InitArgs, RenderArgs};
use crate::inspect::base::BaseFacts;
use crate::profile::check_json::{self, NodeResult};
use crate::profile::ident::UserName;
use crate::profile::named_file::{self, Kind};
use crate::profile::platform::OsRelease;
use crate::profile::resolve::{Context as ResolveContext, DEFAULT_STATE_DIR, Resolved};
use crate::profile::ssh::SshPublicKey;
use crate::profile::starter::{
    Detected, parse_proc_route, render as render_starter, starter_profile,
};
use crate::profile::starter_ask::{AskError, ImageFacts, Place, Secret, ask_starter};
use crate::profile::state::{OsEntropy, State, ensure_passphrase, ensure_state_dir};
use crate::profile::tracked::refuse_tracked;
use crate::profile::{Cluster, Problem};
use crate::render::redact::redact;
use crate::render::tree::{to_text, to_text_with, write_tree};

use super::tty_ask::Tty;

/// Loads and resolves the profile; prints warnings to stderr.
pub fn load_and_resolve(path: &Path) -> Result<Resolved> {
    let profile = crate::profile::load(path)?;
    let resolved = crate::profile::resolve(&profile, &ResolveContext::from_process(path))?;
    for w in &resolved.warnings {
        super::say::warning(located(path, w));
    }
    Ok(resolved)
}

/// `file:line:column: problem`, or `file: problem` without a position.
fn located(path: &Path, p: &Problem) -> String {
    match p.at {
        Some(at) => format!("{}:{}:{}: {p}", path.display(), at.line, at.column),
        None => format!("{}: {p}", path.display()),
    }
}

/// The state `render` shows: only looked at, with missing secrets made
/// for this run (`build` saves it, through `build::pipeline`). What the
/// state directory reports is printed as warnings.
fn peek_state(cluster: &Cluster) -> Result<State> {
    let dir = &cluster.state_dir;
    let state = State::peek(cluster, &mut OsEntropy)
        .with_context(|| format!("preparing the state directory {}", dir.display()))?;
    for note in &state.notes {
        super::say::warning(note);
    }
    Ok(state)
}

/// A node checked against its base image when the image is at hand (a
/// local file or already in the cache), with a line saying what it is;
/// when it is not, the node as the profile says and a line saying why it
/// was not checked. Warnings go to `warn`.
fn examine_if_at_hand(
    global: &GlobalArgs,
    node: &crate::profile::ResolvedNode,
    warn: &mut dyn FnMut(String),
) -> Result<(Checked, String)> {
    let at_hand = super::source_cmds::cache_root(global)
        .map_err(|e| format!("{e:#}"))
        .and_then(|dir| base_check::available(node, &dir));
    match at_hand {
        Ok(path) => {
            let c = base_check::examine_at(node, &path)?;
            for w in &c.warnings {
                warn(w.to_string());
            }
            let line = format!("node {}: image {}", node.hostname, c.image);
            Ok((c, line))
        }
        Err(why) => Ok((
            Checked::unexamined(node),
            format!(
                "node {}: image not checked against the profile: {why}",
                node.hostname
            ),
        )),
    }
}

pub fn check(global: &GlobalArgs, args: &CheckArgs) -> Result<()> {
    if !args.json {
        return check_text(global);
    }
    let path = &global.profile;
    let answer = |errors: &[Problem], warnings: &[Problem], nodes: &[NodeResult]| {
        let value = check_json::report(path, errors, warnings, nodes);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{value:#}").context("writing to stdout")?;
        match errors.len() {
            0 => Ok(()),
            1 => bail!("{}: 1 error", path.display()),
            n => bail!("{}: {n} errors", path.display()),
        }
    };
    let profile = match crate::profile::load(path) {
        Ok(p) => p,
        Err(e) => return answer(&[check_json::load_error(&e)], &[], &[]),
    };
    let resolved = match crate::profile::resolve(&profile, &ResolveContext::from_process(path)) {
        Ok(r) => r,
        Err(report) => {
            let nodes: Vec<NodeResult> = report
                .nodes
                .iter()
                .map(|name| NodeResult {
                    name: name.clone(),
                    not_checked: Some("the profile has errors".to_owned()),
                    ..NodeResult::default()
                })
                .collect();
            return answer(&report.errors, &report.warnings, &nodes);
        }
    };
    let mut warnings = resolved.warnings.clone();
    let mut errors = Vec::new();
    if let Err(e) = refuse_tracked(&resolved.cluster.state_dir) {
        errors.push(Problem::new(None, "state_dir", format!("{e:#}")));
    }
    let mut nodes = Vec::new();
    for node in &resolved.cluster.nodes {
        let name = node.hostname.to_string();
        let mut found = Vec::new();
        let mut result = NodeResult {
            name: name.clone(),
            ..NodeResult::default()
        };
        match examine_if_at_hand(global, node, &mut |w| found.push(w)) {
            Ok((c, line)) => {
                if c.image.is_empty() {
                    let prefix = format!("node {name}: image not checked against the profile: ");
                    result.not_checked =
                        Some(line.strip_prefix(&prefix).unwrap_or(&line).to_owned());
                } else {
                    result.image = Some(c.image.clone());
                }
                result.notes = c.uid_notes();
            }
            Err(e) => errors.push(Problem::new(Some(&name), "image", format!("{e:#}"))),
        }
        warnings.extend(
            found
                .into_iter()
                .map(|w| Problem::new(Some(&name), "image", w)),
        );
        nodes.push(result);
    }
    answer(&errors, &warnings, &nodes)
}

fn check_text(global: &GlobalArgs) -> Result<()> {
    let resolved = load_and_resolve(&global.profile)?;
    refuse_tracked(&resolved.cluster.state_dir)?;
    let mut warnings = resolved.warnings.len();
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    for node in &resolved.cluster.nodes {
        let mut warn = |w: String| {
            super::say::warning(w);
            warnings += 1;
        };
        match examine_if_at_hand(global, node, &mut warn) {
            Ok((c, line)) => {
                lines.push(line);
                lines.extend(
                    c.uid_notes()
                        .into_iter()
                        .map(|n| format!("node {}: {n}", node.hostname)),
                );
            }
            Err(e) => refused.push(format!("{e:#}")),
        }
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("\n"));
    }
    let n = resolved.cluster.nodes.len();
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}").context("writing to stdout")?;
    }
    writeln!(
        out,
        "{}: ok ({n} node{}, {warnings} warning{})",
        global.profile.display(),
        if n == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    )
    .context("writing to stdout")?;
    Ok(())
}

pub fn render(global: &GlobalArgs, args: &RenderArgs) -> Result<()> {
    let Resolved { cluster, .. } = load_and_resolve(&global.profile)?;
    let Some(node) = cluster.node(&args.node) else {
        let names: Vec<&str> = cluster.nodes.iter().map(|n| n.hostname.as_str()).collect();
        bail!(
            "node {} is not in {} (nodes: {})",
            args.node,
            global.profile.display(),
            names.join(", ")
        );
    };
    let state = peek_state(&cluster)?;
    let (mut checked, line) = examine_if_at_hand(global, node, &mut |w| super::say::warning(w))?;
    // The k3s binary is shown by its checksum when the cache has it.
    let cache_dir = super::source_cmds::cache_root(global).ok();
    checked.base.k3s =
        crate::build::k3s_files::at_hand(&cluster, &checked.node, cache_dir.as_deref());
    if checked.image.is_empty() {
        super::say::note(line);
    }
    for n in checked.uid_notes() {
        super::say::note(format_args!("node {}: {n}", node.hostname));
    }
    let specs = crate::render::node_on(&checked.node, &cluster, &state, &checked.base)
        .with_context(|| format!("rendering node {}", args.node))?;
    let redacted = || {
        redact(&checked.node, &cluster, &state, &checked.base, &specs)
            .with_context(|| format!("hiding the secrets of node {}", args.node))
    };
    match &args.out {
        Some(dir) => {
            write_tree(dir, &args.node, &specs, &redacted()?.secret).with_context(|| {
                format!(
                    "writing the files of node {} to {}",
                    args.node,
                    dir.display()
                )
            })?;
            super::say::line(format_args!(
                "wrote {} entries for node {} to {} (see manifest.json)",
                specs.len(),
                args.node,
                dir.display()
            ));
        }
        None => {
            let text = if args.show_secrets {
                to_text(&specs)
            } else {
                to_text_with(&specs, &redacted()?.bodies)
            }
            .with_context(|| format!("showing the files of node {}", args.node))?;
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("writing to stdout")?;
        }
    }
    Ok(())
}

pub fn init(global: &GlobalArgs, args: &InitArgs) -> Result<()> {
    let path = &global.profile;
    if path.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    let detected = detect();
    let ctx = ResolveContext::from_process(path);
    let state_dir = ctx.path(Path::new(DEFAULT_STATE_DIR));
    let wifi_path = state_dir.join(WIFI_PASSWORD_FILE);
    let asked = !args.yes && super::tty_ask::interactive();
    let (text, wifi) = if asked {
        let place = Place {
            profile_dir: std::path::absolute(ctx.path(Path::new("")))
                .context("finding the profile's directory")?,
            cwd: std::env::current_dir().context("finding the current directory")?,
            home: std::env::var_os("HOME").map(PathBuf::from),
            wifi_file: format!("{DEFAULT_STATE_DIR}/{WIFI_PASSWORD_FILE}"),
            wifi_file_taken: wifi_path.exists() && !args.force,
            image_facts,
        };
        let answers = ask_starter(&mut Tty::new(), &detected, &place).map_err(|e| match e {
            // Ctrl-D or Ctrl-C: the user chose to stop; say so plainly.
            AskError::Eof { .. } | AskError::Interrupted { .. } => {
                anyhow!("init stopped: {e}; nothing was written")
            }
            // Through anyhow so that {:#} shows an I/O error's cause.
            _ => anyhow!("{:#}; nothing was written", anyhow::Error::from(e)),
        })?;
        (
            render_starter(&detected, &answers.starter),
            answers.wifi_passphrase,
        )
    } else {
        (starter_profile(&detected), None)
    };
    // All or nothing: the profile is written aside, then the passphrase
    // file it names, then the profile renamed into place; a failure
    // removes what was written.
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    if let Some(secret) = &wifi
        && let Err(e) = write_wifi_passphrase(&state_dir, &wifi_path, secret)
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        if wifi.is_some() {
            let _ = std::fs::remove_file(&wifi_path);
        }
        return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()));
    }
    ensure_passphrase(&state_dir, &mut OsEntropy).with_context(|| {
        format!(
            "creating the MicroCloud passphrase in {}",
            state_dir.display()
        )
    })?;
    super::say::line(format_args!(
        "wrote {} ({} SSH key{} found{}){}; next: homelab-image check",
        path.display(),
        detected.ssh_keys.len(),
        if detected.ssh_keys.len() == 1 {
            ""
        } else {
            "s"
        },
        // Asked, the LAN is the one answered, whatever the route said.
        if detected.route.is_some() && !asked {
            ", LAN from the default route"
        } else {
            ""
        },
        if wifi.is_some() {
            format!(" and {} (0600)", wifi_path.display())
        } else {
            String::new()
        },
    ));
    Ok(())
}

/// The OS of a (raw) image file, and the board an Armbian image names,
/// offered by `init`; `None` when the image cannot be read as one we
/// build from (compressed, damaged, another layout).
fn image_facts(path: &Path) -> Option<ImageFacts> {
    let image = crate::image::Image::open(path).ok()?;
    let facts = BaseFacts::read(&image).ok()?;
    let release = facts.os.as_ref()?;
    if let Some(armbian) = &release.armbian {
        return Some((OsRelease::Armbian, armbian.board.clone()));
    }
    if release.id.as_deref() != Some("ubuntu") {
        return None;
    }
    let os = match release.version_id.as_deref()? {
        "22.04" => OsRelease::Ubuntu2204,
        "24.04" => OsRelease::Ubuntu2404,
        "26.04" => OsRelease::Ubuntu2604,
        _ => return None,
    };
    Some((os, None))
}

/// The Wi-Fi passphrase file the interactive `init` writes into the
/// state directory (0700, git-ignored), named by the profile's
/// `wifi.password: {file: …}`.
const WIFI_PASSWORD_FILE: &str = "wifi-password";

/// Writes the passphrase 0600 from the first byte, into the state
/// directory (created 0700 with its `.gitignore` if needed).
fn write_wifi_passphrase(state_dir: &Path, path: &Path, secret: &Secret) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    ensure_state_dir(state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    // Replacing (--force): the old file goes first, so the new one is
    // created with our mode whatever the old one had.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("replacing {}", path.display()));
        }
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{}\n", secret.expose()).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
}

/// Best-effort look at the host: nothing here is allowed to fail `init`.
fn detect() -> Detected {
    let route = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| parse_proc_route(&t));
    let mut ssh_keys = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let dir = Path::new(&home).join(".ssh");
        let mut pubs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        pubs.retain(|p| p.extension().is_some_and(|e| e == "pub"));
        pubs.sort();
        for p in pubs {
            // Skip unreadable or unparsable files: init only proposes.
            if let Ok(text) = named_file::read_text(&p, Kind::SshKeys)
                && let Ok(keys) = SshPublicKey::parse_many(&text)
            {
                ssh_keys.extend(keys);
            }
        }
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| u != "root")
        .and_then(|u| UserName::parse(&u).ok());
    Detected {
        route,
        ssh_keys,
        user,
    }
}
