//! The man page: one self-contained page, `homelab-image(1)`, holding every
//! command with its synopsis, options and examples. clap_mangen's own
//! page points to `homelab-image-build(1)` and the like, pages nobody
//! installs; here its section renderers are reused per command and the
//! pieces put under one COMMANDS section instead.

use std::io::{self, Write};

/// The options every command takes; listed once, under GLOBAL OPTIONS.
const GLOBAL: &[&str] = &["profile", "cache_dir", "verbose", "quiet", "color"];

/// Writes the whole page (roff) to `w`.
pub fn render(w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        command_section(&mut page, sub)?;
    }
    let mut examples = Vec::new();
    man.render_extra_section(&mut examples)?;
    let examples = String::from_utf8_lossy(&examples)
        .replace(".SH EXTRA\n", ".SH EXAMPLES\n")
        .replace("Examples:\n", "");
    page.extend_from_slice(examples.as_bytes());
    man.render_version_section(&mut page)?;
    w.write_all(&without_repeated_preamble(&page))
}

/// One command (and, after it, its own subcommands) as a subsection:
/// the usage line as its title, then what it does, its options (the
/// global ones left out), and its notes and examples.
fn command_section(page: &mut Vec<u8>, sub: &clap::Command) -> io::Result<()> {
    let mut own = sub.clone();
    for id in GLOBAL.iter().chain(&["help", "version"]) {
        if own.get_arguments().any(|a| a.get_id() == *id) {
            own = own.mut_arg(*id, |a| a.hide(true));
        }
    }
    let man = clap_mangen::Man::new(own);
    let mut part = Vec::new();
    let name = sub.get_bin_name().unwrap_or(sub.get_name());
    writeln!(part, ".SS \"{}\"", name.replace('-', "\\-"))?;
    man.render_description_section(&mut part)?;
    man.render_synopsis_section(&mut part)?;
    if sub
        .get_arguments()
        .any(|a| !a.is_hide_set() && !is_global(a))
    {
        man.render_options_section(&mut part)?;
    }
    if sub.get_after_help().is_some() {
        man.render_extra_section(&mut part)?;
    }
    let text = String::from_utf8_lossy(&part)
        .replace(".SH DESCRIPTION\n", "")
        .replace(".SH SYNOPSIS\n", ".PP\n")
        .replace(".SH OPTIONS\n", ".PP\nOptions:\n")
        .replace(".SH EXTRA\n", ".PP\n");
    page.extend_from_slice(text.as_bytes());
    for nested in sub.get_subcommands() {
        command_section(page, nested)?;
    }
    Ok(())
}

fn is_global(a: &clap::Arg) -> bool {
    let id = a.get_id().as_str();
    GLOBAL.contains(&id) || id == "help" || id == "version"
}

/// Each renderer call starts with roff's two-line preamble; the page needs
/// it once.
fn without_repeated_preamble(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut lines = text.lines();
    let mut out = String::new();
    let mut preamble = Vec::new();
    for line in lines.by_ref().take(2) {
        preamble.push(line.to_string());
        out.push_str(line);
        out.push('\n');
    }
    for line in lines {
        if preamble.iter().any(|p| p == line)
            && (line.starts_with(".ie") || line.starts_with(".el"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}
