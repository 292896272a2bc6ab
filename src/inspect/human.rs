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
    let _ = writeln!(
        o,
        "{}  {}, {}, disk id {}, {}-byte sectors",
        p.bold(&r.image),
        human_size(r.size_bytes),
        match r.table.kind {
            crate::disk::TableKind::Mbr => "MBR",
            crate::disk::TableKind::Gpt => "GPT",
        },
        r.table.disk_id,
        r.table.sector_size
    );
    for w in &r.table.warnings {
        let _ = writeln!(o, "{} {w}", p.warn("warning:"));
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{}",
        p.bold(" #  Start LBA   Size      Type                Filesystem    Label")
    );
    for part in &r.partitions {
        let ty = format!("{} {}", part.type_id, part.type_name);
        let ty = if ty.len() > 19 {
            format!("{}…", &ty[..18])
        } else {
            ty
        };
        let (fs, label) = match &part.filesystem {
            Some(f) => (
                match f.version {
                    Some(v) => format!("{} {v}", f.fs_type.blkid_type()),
                    None => f.fs_type.blkid_type().to_string(),
                },
                f.label.clone().unwrap_or_default(),
            ),
            None => ("-".to_string(), String::new()),
        };
        let _ = writeln!(
            o,
            "{:>2}  {:<10}  {:<8}  {:<18}  {:<12}  {}",
            part.number,
            part.start_lba,
            human_size(part.size_bytes),
            ty,
            fs,
            label
        );
        let mut ids = Vec::new();
        if let Some(f) = &part.filesystem {
            ids.push(format!("UUID {}", f.uuid));
        }
        ids.push(format!("PARTUUID {}", part.partuuid));
        if let Some(name) = part.name.as_deref().filter(|n| !n.is_empty()) {
            ids.push(format!("name {name:?}"));
        }
        let _ = writeln!(o, "    {}", p.dim(&ids.join(", ")));
    }
    let _ = writeln!(o);

    let key = |k: &str| p.bold(&format!("{k:<12}"));
    match (&r.layout, &r.layout_problem) {
        (Some(l), _) => {
            let parts = match l.boot {
                Some(b) => format!("boot p{b}, root p{}", l.root),
                None => format!(
                    "root p{}, {} raw bootloader area before it",
                    l.root,
                    human_size(l.raw_area_bytes)
                ),
            };
            let _ = writeln!(o, "{}{} — {parts}", key("Layout"), l.kind);
        }
        (None, Some(why)) => {
            let _ = writeln!(o, "{}{} {why}", key("Layout"), p.warn("not recognised:"));
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
        let _ = writeln!(o, "{}{}", key("OS"), line.trim());
    } else if r.layout.is_some() {
        let _ = writeln!(o, "{}no /etc/os-release in the root filesystem", key("OS"));
    }
    for (i, f) in r.boot_config.iter().enumerate() {
        let k = if i == 0 { "Boot config" } else { "" };
        let what = match &f.content {
            Some(c) if f.path.ends_with("cmdline.txt") => c.clone(),
            Some(c) => c.lines().collect::<Vec<_>>().join("; "),
            None => human_size(f.size_bytes),
        };
        let _ = writeln!(o, "{}p{}:{}  {}", key(k), f.partition, f.path, what);
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
        let _ = writeln!(o, "{}{status}", key("cloud-init"));
        for d in &ci.datasource_configs {
            let mut facts = Vec::new();
            if let Some(list) = &d.datasource_list {
                facts.push(format!("datasource_list [{}]", list.join(", ")));
            }
            if let Some(label) = &d.nocloud_fs_label {
                facts.push(format!("NoCloud fs_label {label}"));
            }
            if let Some(e) = &d.parse_error {
                facts.push(format!("unparseable: {e}"));
            }
            let _ = writeln!(o, "{}{}: {}", key(""), d.path, facts.join(", "));
        }
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
        let _ = writeln!(o, "{}p{}: {files}", key("Seed"), seed.partition);
        let id = match &seed.instance_id {
            Some(id) => format!("instance-id {id}"),
            None => "no instance-id in meta-data (cloud-init will use \"nocloud\")".to_string(),
        };
        let _ = writeln!(o, "{}{id}", key(""));
    }
    o
}
