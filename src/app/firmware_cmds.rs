//! `firmware presets|show|card`: the Raspberry Pi bootloader EEPROM
//! commands, thin calls into `crate::firmware`.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::write_stdout;
use crate::cli::GlobalArgs;
use crate::cli::firmware_cmds::{
    CardArgs, Channel, FirmwareArgs, FirmwareCommand, PiBoard, PresetsArgs, ShowArgs,
};
use crate::firmware::card::{self, Channel as CardChannel};
use crate::firmware::eeprom::{Eeprom, Layout, SIZE_2711, SIZE_2712};
use crate::firmware::{self, PiModel};
use crate::fs::FsType;
use crate::image::Image;
use crate::profile::platform::Board;

pub fn firmware(global: &GlobalArgs, args: &FirmwareArgs) -> Result<()> {
    match &args.command {
        FirmwareCommand::Presets(a) => presets(a),
        FirmwareCommand::Show(a) => show(global, a),
        FirmwareCommand::Card(a) => card_cmd(global, a),
    }
}

#[derive(Serialize)]
struct PresetJson<'a> {
    name: &'a str,
    boards: &'a [PiModel],
    /// `BOOT_ORDER` as written, e.g. `0xf14`.
    boot_order: String,
    /// The modes in the order they are tried.
    order: Vec<String>,
    /// "USB, then SD, then restart".
    description: String,
    config: &'a str,
}

fn presets(args: &PresetsArgs) -> Result<()> {
    let all = firmware::presets();
    let text = if args.json {
        let rows: Vec<PresetJson<'_>> = all
            .iter()
            .map(|p| PresetJson {
                name: p.name,
                boards: &p.boards,
                boot_order: firmware::boot_order_in(p.conf_text)
                    .map(|(hex, _)| hex)
                    .unwrap_or_default(),
                order: p.boot_order.iter().map(|m| m.to_string()).collect(),
                description: p.boot_order_words(),
                config: p.conf_text,
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&rows).context("encoding the presets")?;
        s.push('\n');
        s
    } else {
        let mut s = format!("{:<15} {:<11} {}\n", "NAME", "BOARDS", "BOOT ORDER");
        for p in all {
            s.push_str(&format!(
                "{:<15} {:<11} {}\n",
                p.name,
                p.boards_text(),
                p.boot_order_words()
            ));
        }
        s
    };
    write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
}

#[derive(Serialize)]
struct ShowJson {
    file: String,
    /// Where inside a disk image: `partition 1: pieeprom.bin`.
    inside: Option<String>,
    soc: u32,
    board: &'static str,
    layout: &'static str,
    bootconf_offset: usize,
    bootconf: String,
    boot_order: Option<String>,
    /// The boot order in words, when `BOOT_ORDER` is set and valid.
    description: Option<String>,
    problem: Option<String>,
}

/// Whether a file is to be read as an EEPROM image: it has an EEPROM
/// image's size (whatever it holds: a damaged one is reported as such),
/// or starts like one and is not larger (a truncated one).
fn looks_like_eeprom(len: u64, head: &[u8]) -> bool {
    // as: usize -> u64 widening.
    let (small, large) = (SIZE_2711 as u64, SIZE_2712 as u64);
    let magic = head.len() >= 4
        && u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0xffff_f00f == 0x55aa_f00f;
    len == small || len == large || (magic && len < large)
}

/// The EEPROM image in `path`: the file itself, or `pieeprom.bin` (else
/// `pieeprom.upd`) in the first FAT partition of a disk image holding one.
fn load_eeprom(path: &Path) -> Result<(Eeprom, Option<String>)> {
    let shown = path.display();
    let mut file = crate::profile::named_file::open_regular(path)?;
    let len = file
        .metadata()
        .with_context(|| format!("{shown}: reading its size"))?
        .len();
    let mut head = [0u8; 4];
    let n = file
        .read(&mut head)
        .with_context(|| format!("reading {shown}"))?;
    if looks_like_eeprom(len, &head[..n]) {
        // Read through the handle already checked, bounded in case the
        // file grew since: a size other than 512 KiB or 2 MiB is refused.
        // as: usize -> u64 widening.
        let mut bytes = Vec::new();
        file.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| {
                (&mut file)
                    .take(SIZE_2712 as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .with_context(|| format!("reading {shown}"))?;
        let e = Eeprom::parse(bytes).with_context(|| shown.to_string())?;
        return Ok((e, None));
    }
    let image = Image::open(path)?;
    let mut looked = Vec::new();
    for part in image.table().data_partitions() {
        let n = part.number;
        if !matches!(image.fs_info(n), Ok(Some(info)) if matches!(info.fs_type, FsType::Fat(_))) {
            continue;
        }
        let (_, fs) = image.filesystem(&n.to_string())?;
        for name in ["pieeprom.bin", "pieeprom.upd"] {
            // as: usize -> u64 widening.
            let found = fs
                .read_bounded_if_exists(name, SIZE_2712 as u64)
                .with_context(|| format!("{shown}: partition {n}: {name}"))?;
            if let Some(bytes) = found {
                let where_ = format!("partition {n}: {name}");
                let e = Eeprom::parse(bytes).with_context(|| format!("{shown}: {where_}"))?;
                return Ok((e, Some(where_)));
            }
            looked.push(format!("partition {n}: /{name}"));
        }
    }
    if looked.is_empty() {
        bail!("{shown}: neither an EEPROM image nor a disk image with a FAT partition");
    }
    bail!(
        "{shown}: no EEPROM image found; looked at {}",
        looked.join(", ")
    )
}

fn show(global: &GlobalArgs, args: &ShowArgs) -> Result<()> {
    let (eeprom, inside) = load_eeprom(&args.file)?;
    let conf = String::from_utf8_lossy(eeprom.bootconf()).into_owned();
    let board = if eeprom.soc() == 2712 { "rpi5" } else { "rpi4" };
    let order = firmware::boot_order_in(&conf);
    let (description, problem) = match &order {
        Some((_, Ok(modes))) => (Some(firmware::order_in_words(modes)), None),
        Some((_, Err(why))) => (None, Some(why.clone())),
        None => (None, None),
    };
    if args.json {
        let j = ShowJson {
            file: args.file.display().to_string(),
            inside: inside.clone(),
            soc: eeprom.soc(),
            board,
            layout: match eeprom.layout() {
                Layout::Plain => "plain",
                Layout::Ab { .. } => "a/b",
            },
            bootconf_offset: eeprom.bootconf_offset(),
            bootconf: conf,
            boot_order: order.as_ref().map(|(hex, _)| hex.clone()),
            description,
            problem,
        };
        let mut s = serde_json::to_string_pretty(&j).context("encoding the result")?;
        s.push('\n');
        return write_stdout(&mut std::io::stdout().lock(), s.as_bytes());
    }
    if !global.quiet {
        let from = match &inside {
            Some(w) => format!("{} ({w})", args.file.display()),
            None => args.file.display().to_string(),
        };
        let order_text = match (&order, &description, &problem) {
            (Some((hex, _)), Some(words), _) => format!("BOOT_ORDER {hex}: {words}"),
            (Some((hex, _)), _, Some(why)) => format!("BOOT_ORDER {hex}: {why}"),
            _ => "no BOOT_ORDER (the bootloader's default applies)".to_string(),
        };
        eprintln!(
            "{from}: BCM{} ({board}) bootloader, bootconf.txt at offset {:#x}; {order_text}",
            eeprom.soc(),
            eeprom.bootconf_offset()
        );
    }
    write_stdout(&mut std::io::stdout().lock(), eeprom.bootconf())
}

fn card_cmd(global: &GlobalArgs, args: &CardArgs) -> Result<()> {
    let preset = firmware::preset(&args.preset).with_context(|| {
        format!(
            "no preset {:?}; the presets are {}",
            args.preset,
            firmware::preset_names()
        )
    })?;
    let (model, board) = match args.board {
        PiBoard::Rpi4 => (PiModel::Pi4, Board::RaspberryPi4),
        PiBoard::Rpi5 => (PiModel::Pi5, Board::RaspberryPi5),
    };
    if let Err(why) = preset.fits(&board) {
        bail!("{why}");
    }
    let channel = match args.channel {
        Channel::Default => CardChannel::Default,
        Channel::Latest => CardChannel::Latest,
    };
    let base = match &args.from {
        Some(p) => p.clone(),
        None => base_from_profile(global, &board)?,
    };
    let image = Image::open(&base)?;
    let layout = image
        .layout()
        .with_context(|| format!("{}: finding its root filesystem", base.display()))?;
    let (_, root) = image.filesystem(&layout.root.to_string())?;
    let boot = card::find_bootloader(&root, model, channel)
        .with_context(|| format!("{}: partition {}", base.display(), layout.root))?;
    let ts = crate::time::stamp_now();
    let files = card::card_files(model, preset, &boot, channel, ts)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("eeprom-{}.img", model.name())));
    let mut partial = crate::build::output::Partial::new();
    let file = partial.create(&out)?;
    card::write_card(&file, &crate::build::output::partial_name(&out), &files)
        .with_context(|| format!("writing {}", out.display()))?;
    drop(file);
    partial.commit()?;
    if !global.quiet {
        eprintln!(
            "{}: {} recovery card: {} from {}/{} with preset {} ({})",
            out.display(),
            model.name(),
            files.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            boot.dir,
            boot.release,
            preset.name,
            preset.boot_order_words()
        );
    }
    let line = format!("{}\n", out.display());
    write_stdout(&mut std::io::stdout().lock(), line.as_bytes())
}

/// The base image of the profile's first node on `board`, if it is at
/// hand (a local raw image, or in the cache).
fn base_from_profile(global: &GlobalArgs, board: &Board) -> Result<PathBuf> {
    if !global.profile.exists() {
        bail!(
            "--from BASE_IMAGE is needed: there is no profile at {} to take a base image from",
            global.profile.display()
        );
    }
    let resolved = super::profile_cmds::load_and_resolve(&global.profile)?;
    let Some(node) = resolved.cluster.nodes.iter().find(|n| &n.board == board) else {
        bail!(
            "--from BASE_IMAGE is needed: no node in {} is a {}",
            global.profile.display(),
            match board {
                Board::RaspberryPi5 => "rpi5",
                _ => "rpi4",
            }
        );
    };
    let cache = super::source_cmds::cache_root(global)?;
    crate::build::base_check::available(node, &cache).map_err(|why| {
        anyhow::anyhow!(
            "node {}'s base image: {why}; or give --from BASE_IMAGE",
            node.hostname
        )
    })
}
