//! `devices`: the disks of this machine and what the safety rules say
//! about each; `devices --check DEVICE` judges one disk the way `flash`
//! will (rules, then write permission and the kernel's exclusive-access
//! answer) without writing anything.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::cli::{DevicesArgs, GlobalArgs};
use crate::flash::devices::{self, Disk, Transport};
use crate::flash::exclusive;
use crate::flash::privileges;
use crate::flash::rules::{self, Context, Overrides, Refusal, Role, Verdict};
use crate::flash::sysfs;
use crate::io::units::human_size;

/// What `flash` would do with a disk.
#[derive(Debug, Clone, Serialize)]
struct Status {
    /// `candidate`, `confirm`, `refused`, or `named-only` (loop devices:
    /// candidates only when named).
    status: &'static str,
    /// The rule that refuses it or asks for confirmation.
    rule: Option<&'static str>,
    /// The flag that would override that rule.
    #[serde(rename = "override")]
    override_flag: Option<&'static str>,
    message: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    disk: &'a Disk,
    #[serde(flatten)]
    status: Status,
}

fn judge(disk: &Disk, ctx: &Context, ov: &Overrides, named: bool) -> Status {
    match rules::check(disk, ctx, ov) {
        Ok(_) if disk.transport == Transport::Loop && !named => Status {
            status: "named-only",
            rule: None,
            override_flag: None,
            message: None,
        },
        Ok(Verdict::Accepted) => Status {
            status: "candidate",
            rule: None,
            override_flag: None,
            message: None,
        },
        Ok(v @ Verdict::NeedsConfirmation { .. }) => Status {
            status: "confirm",
            rule: Some("large-disk"),
            override_flag: Some("--yes"),
            message: Some(v.to_string()),
        },
        Err(r) => refused(&r),
    }
}

fn refused(r: &Refusal) -> Status {
    Status {
        status: "refused",
        rule: Some(r.rule()),
        override_flag: r.override_flag(),
        message: Some(r.to_string()),
    }
}

/// The paths `flash` protects whatever it writes: the image cache.
fn protect_cache(ctx: Context, global: &GlobalArgs) -> Context {
    match super::source_cmds::cache_root(global) {
        Ok(dir) => ctx.protect(Role::Cache, &dir),
        Err(_) => ctx,
    }
}

pub fn devices(global: &GlobalArgs, args: &DevicesArgs) -> Result<()> {
    let root = sysfs::system_root();
    let disks = devices::scan(&root).context("reading the devices from sysfs")?;
    let ov = Overrides {
        allow_internal: args.allow_internal,
        yes: args.yes,
    };
    if let Some(device) = &args.check {
        // The image first: when it and the cache share the disk, the
        // image is the one to name.
        let mut ctx = Context::new();
        if let Some(image) = &args.image {
            ctx = ctx
                .with_image(image)
                .with_context(|| format!("reading {}", image.display()))?;
        }
        let ctx = protect_cache(ctx, global);
        return check_one(&disks, &root, device, &ctx, &ov, args.json);
    }
    let ctx = protect_cache(Context::new(), global);
    let rows: Vec<Row> = disks
        .iter()
        .filter(|d| args.all || d.listed_by_default())
        .map(|d| Row {
            disk: d,
            status: judge(d, &ctx, &ov, false),
        })
        .collect();
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&rows).context("encoding the list as JSON")?;
        json.push('\n');
        json
    } else {
        table(&rows)
    };
    super::write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
}

fn check_one(
    disks: &[Disk],
    root: &Path,
    device: &Path,
    ctx: &Context,
    ov: &Overrides,
    json: bool,
) -> Result<()> {
    let disk = devices::find(disks, root, device)?;
    let mut status = judge(disk, ctx, ov, true);
    // On the real system, also what only the device node can tell: may we
    // write it, and does the kernel grant exclusive access (not mounted,
    // not held, not opened O_EXCL by another program)?
    if status.status != "refused" && root == Path::new("/") {
        let probe = privileges::ensure_can_write(device)
            .map_err(exclusive::OpenError::from)
            .and_then(|()| exclusive::probe_exclusive(device));
        if let Err(e) = probe {
            status = Status {
                status: "refused",
                rule: e.rule(),
                override_flag: None,
                message: Some(e.to_string()),
            };
        }
    }
    let text = if json {
        let row = Row {
            disk,
            status: status.clone(),
        };
        let mut json =
            serde_json::to_string_pretty(&row).context("encoding the verdict as JSON")?;
        json.push('\n');
        json
    } else if status.status == "refused" {
        String::new()
    } else {
        let mut line = format!("{}: accepted ({})", disk.path.display(), summary(disk));
        if let Some(m) = &status.message {
            line = format!("{line}\n{m}");
        }
        line.push('\n');
        line
    };
    super::write_stdout(&mut std::io::stdout().lock(), text.as_bytes())?;
    match (status.status, status.message) {
        ("refused", Some(m)) => bail!("{m}"),
        _ => Ok(()),
    }
}

/// "usb, 240 GiB, Samsung Portable SSD T7, serial S5S…"
fn summary(d: &Disk) -> String {
    let mut s = format!("{}, {}", d.transport, human_size(d.size));
    if let Some(desc) = d.description() {
        let _ = write!(s, ", {desc}");
    }
    if let Some(serial) = &d.serial {
        let _ = write!(s, ", serial {serial}");
    }
    s
}

/// What the system uses the disk for, in a few words.
fn in_use(d: &Disk) -> String {
    let mut what: Vec<String> = d
        .mounts
        .iter()
        .map(|m| format!("{} on {}", m.device.display(), m.mount_point.display()))
        .collect();
    what.extend(d.swaps.iter().map(|s| format!("swap {}", s.display())));
    what.extend(
        d.holders
            .iter()
            .map(|h| format!("{} held by {}", h.of.display(), h.device.display())),
    );
    if what.is_empty() {
        "-".to_owned()
    } else {
        what.join(", ")
    }
}

fn status_cell(s: &Status) -> String {
    match (s.status, s.rule) {
        ("candidate", _) => "candidate".to_owned(),
        ("named-only", _) => "candidate if named".to_owned(),
        ("confirm", _) => "candidate, confirm size".to_owned(),
        (_, Some(rule)) => match s.override_flag {
            Some(flag) => format!("no: {rule} ({flag})"),
            None => format!("no: {rule}"),
        },
        (other, None) => other.to_owned(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn table(rows: &[Row]) -> String {
    const HEAD: [&str; 9] = [
        "DEVICE",
        "SIZE",
        "TRANSPORT",
        "MODEL",
        "SERIAL",
        "RM",
        "RO",
        "IN USE",
        "FLASH",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let d = r.disk;
            [
                d.path.display().to_string(),
                human_size(d.size),
                d.transport.to_string(),
                d.description().unwrap_or_else(|| "-".into()),
                d.serial.clone().unwrap_or_else(|| "-".into()),
                yes_no(d.removable).into(),
                yes_no(d.read_only).into(),
                in_use(d),
                status_cell(&r.status),
            ]
        })
        .collect();
    let mut width = HEAD.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            if i + 1 == cols.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEAD);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(no disks)\n");
    }
    out
}
