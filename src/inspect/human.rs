//! The human rendering of an inspect report: a heading, a partition table
//! and a few aligned facts, readable at a glance in 80 columns.

use std::fmt::Write;

use super::Report;
use crate::io::units::human_size;

struct Paint {
    color: bool,
}

impl Paint {
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }

    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }

    fn warn(&self, s: &str) -> String {
        self.wrap("33", s)
    }

    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Renders `r` as text; `color` adds ANSI styling.
pub fn render_human(r: &Report, color: bool) -> String {
    let p = Paint { color };
    let mut o = String::new();
    // Writing to a String cannot fail; the `let _` below are for that.
    let _ = writeln!(o, "{}  {}", p.bold(&r.image), human_size(r.size_bytes));
    let kind = match r.table.kind {
        crate::disk::TableKind::Mbr => "MBR",
        crate::disk::TableKind::Gpt => "GPT",
    };
    let table = [
        format!("{kind} partition table"),
        format!("{}-byte sectors", r.table.sector_size),
        format!("disk id {}", r.table.disk_id),
    ];
    for line in wrap_items(&table, 80) {
        let _ = writeln!(o, "{line}");
    }
    for w in &r.table.warnings {
        let _ = writeln!(o, "{} {w}", p.warn("warning:"));
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{}",
        p.bold(" #  Start LBA   Size      Type                  Filesystem   Label")
    );
    for part in &r.partitions {
        // GPT type GUIDs are too wide for the table: name here, GUID below.
        let is_gpt = part.type_id.len() > 2;
        let ty = if is_gpt {
            part.type_name.to_string()
        } else {
            format!("{} {}", part.type_id, part.type_name)
        };
        let (fs, label) = match &part.filesystem {
            Some(f) => (
                match f.version {
                    Some(v) => format!("{} {v}", f.fs_type.blkid_type()),
                    None => f.fs_type.blkid_type().to_string(),
                },
                f.label.clone().unwrap_or_default(),
            ),
            None if part.filesystem_error.is_some() => ("damaged".to_string(), String::new()),
            None => ("-".to_string(), String::new()),
        };
        let row = format!(
            "{:>2}  {:<10}  {:<8}  {:<20}  {:<11}  {}",
            part.number,
            part.start_lba,
            human_size(part.size_bytes),
            ty,
            fs,
            label
        );
        let _ = writeln!(o, "{}", row.trim_end());
        let mut ids = Vec::new();
        if let Some(f) = &part.filesystem {
            ids.push(format!("UUID {}", f.uuid));
        }
        ids.push(format!("PARTUUID {}", part.partuuid));
        if let Some(name) = part.name.as_deref().filter(|n| !n.is_empty()) {
            ids.push(format!("name {name:?}"));
        }
        if is_gpt {
            ids.push(format!("type {}", part.type_id));
        }
        for line in wrap_items(&ids, 76) {
            let _ = writeln!(o, "    {}", p.dim(&line));
        }
        if let Some(e) = &part.filesystem_error {
            for line in wrap(&format!("unreadable: {e}"), 76) {
                let _ = writeln!(o, "    {}", p.warn(&line));
            }
        }
    }
    let _ = writeln!(o);

    let key = |k: &str| p.bold(&format!("{k:<12}"));
    // A fact: key in the left column, text wrapped to 80 columns beside it.
    let fact = |o: &mut String, k: &str, text: &str| {
        for (i, line) in wrap(text, 80 - 12).iter().enumerate() {
            let _ = writeln!(o, "{}{line}", key(if i == 0 { k } else { "" }));
        }
    };
    match (&r.layout, &r.layout_problem) {
        (Some(l), _) => {
            let parts = match l.boot {
                Some(b) => format!("boot p{b}, root p{}", l.root),
                // The space before a cloud image's partitions is the GPT's.
                None if l.kind == crate::disk::layout::LayoutKind::UbuntuCloud => {
                    format!("root p{}; the seed goes into it", l.root)
                }
                None => format!(
                    "root p{}, {} raw bootloader area before it",
                    l.root,
                    human_size(l.raw_area_bytes)
                ),
            };
            fact(&mut o, "Layout", &format!("{} — {parts}", l.kind));
        }
        (None, Some(why)) => {
            fact(&mut o, "Layout", &format!("not recognised: {why}"));
        }
        (None, None) => {}
    }
    if let Some(os) = &r.os {
        let mut line = format!(
            "{} {}",
            os.name.as_deref().unwrap_or("unknown"),
            os.version_id.as_deref().unwrap_or("")
        );
        if let Some(c) = &os.version_codename {
            let _ = write!(line, " ({c})");
        }
        if let Some(a) = &os.armbian {
            let _ = write!(
                line,
                "; Armbian {} for {}",
                a.version.as_deref().unwrap_or("?"),
                a.board.as_deref().unwrap_or("?")
            );
        }
        fact(&mut o, "OS", line.trim());
    } else if r.problems.iter().any(|p| p.reading == super::OS_RELEASE) {
        fact(&mut o, "OS", "could not be read (see Unreadable below)");
    } else if r.layout.is_some() {
        fact(&mut o, "OS", "no /etc/os-release in the root filesystem");
    }
    for (i, f) in r.boot_config.iter().enumerate() {
        let k = if i == 0 { "Boot config" } else { "" };
        let place = format!("p{}:{}", f.partition, f.path);
        match &f.content {
            Some(c) => {
                let _ = writeln!(o, "{}{place}", key(k));
                let text = c.lines().collect::<Vec<_>>().join(" ");
                for line in wrap(&text, 80 - 14) {
                    let _ = writeln!(o, "{:14}{line}", "");
                }
            }
            None => {
                let _ = writeln!(o, "{}{place} ({})", key(k), human_size(f.size_bytes));
            }
        }
    }
    if let Some(ci) = &r.cloud_init {
        let status = if ci.installed {
            format!(
                "installed, version {}",
                ci.version.as_deref().unwrap_or("unknown")
            )
        } else {
            "not installed (first-boot files go straight into the root filesystem)".to_string()
        };
        fact(&mut o, "cloud-init", &status);
        for d in &ci.datasource_configs {
            let mut facts = Vec::new();
            if let Some(label) = &d.nocloud_fs_label {
                facts.push(format!("NoCloud fs_label {label}"));
            }
            if let Some(list) = &d.datasource_list {
                facts.push(format!("datasource_list [{}]", list.join(", ")));
            }
            if let Some(e) = &d.parse_error {
                facts.push(format!("unparseable: {e}"));
            }
            fact(&mut o, "", &facts.join(", "));
            let _ = writeln!(o, "{}{}", key(""), p.dim(&format!("  in {}", d.path)));
        }
    }
    if r.cloud_init.is_some() {
        let ntp = r.ntp_client.map_or_else(
            || "none (the profile's NTP servers cannot be applied)".to_owned(),
            |c| c.to_string(),
        );
        fact(&mut o, "NTP client", &ntp);
    }
    if let Some(seed) = &r.seed {
        let files: Vec<String> = seed
            .files
            .iter()
            .map(|f| format!("{} ({})", f.name, human_size(f.size_bytes)))
            .collect();
        let files = if files.is_empty() {
            "no seed files".to_string()
        } else {
            files.join(", ")
        };
        fact(&mut o, "Seed", &format!("p{}: {files}", seed.partition));
        if !seed.files.is_empty() {
            let id = match &seed.instance_id {
                Some(id) => format!("instance-id {id}"),
                None => "no instance-id in meta-data (cloud-init will use \"nocloud\")".to_string(),
            };
            fact(&mut o, "", &id);
        }
    }
    if let Some(inj) = &r.injected {
        fact(
            &mut o,
            "Injected",
            &format!(
                "node {} by {}: {} entries",
                inj.node,
                inj.tool,
                inj.files.len()
            ),
        );
        for f in &inj.files {
            fact(&mut o, "", &format!("{} {} ({})", f.target, f.path, f.kind));
        }
    }
    for (i, problem) in r.problems.iter().enumerate() {
        let k = if i == 0 { "Unreadable" } else { "" };
        let place = problem
            .partition
            .map_or_else(String::new, |n| format!("p{n} "));
        let text = format!("{place}{}: {}", problem.reading, problem.error);
        for (j, line) in wrap(&text, 80 - 12).iter().enumerate() {
            let _ = writeln!(o, "{}{}", key(if j == 0 { k } else { "" }), p.warn(line));
        }
    }
    o
}

/// Joins `items` with ", " into lines of at most `width` characters,
/// breaking only between items.
fn wrap_items(items: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        if !line.is_empty() && line.chars().count() + 1 + piece.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Splits `text` at spaces into lines of at most `width` characters (a
/// single longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::{wrap, wrap_items};

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
        assert_eq!(wrap("abcdefgh ij", 5), ["abcdefgh", "ij"]);
        assert!(wrap("", 5).is_empty());
        let items = [
            "UUID a".to_string(),
            "PARTUUID bb".to_string(),
            "c".to_string(),
        ];
        assert_eq!(wrap_items(&items, 12), ["UUID a,", "PARTUUID bb,", "c"]);
    }
}
