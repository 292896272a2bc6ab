//! The bootloader recovery SD card: laid out like Raspberry Pi's own
//! recovery images (`rpi-eeprom` `imager/make-recovery-images`,
//! targets.md §4.5): an MBR with one partition of type `0x0c` at sector
//! 2048, 524288 sectors long, formatted FAT32 with one sector per cluster,
//! holding `recovery.bin` (which the Pi 4's boot ROM runs from an SD card),
//! `pieeprom.bin` (a bootloader release with the preset as its
//! `bootconf.txt`), `pieeprom.sig` (its SHA-256 and a timestamp, as
//! `rpi-eeprom-digest` writes it) and a `README.txt`.
//!
//! The bootloader comes from the base image's own root filesystem
//! (`/lib/firmware/raspberrypi/bootloader-2711|2712/CHANNEL/`, the
//! `rpi-eeprom` package's files), so nothing is used that `pull` did not
//! verify. The card is reproducible: fixed disk id and volume id, fixed
//! FAT timestamps, `ts:` from `SOURCE_DATE_EPOCH` when set.

use std::fs::File;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::eeprom::{Eeprom, SIZE_2711, SIZE_2712};
use super::{PiModel, Preset};
use crate::fs::{EntryKind, Filesystem};
use crate::image::Image;
use crate::io::{ByteLen, ByteOffset, ByteRange, PartitionWindow};

const SECTOR: u64 = 512;
/// The partition Raspberry Pi's recovery images use: 256 MiB at 1 MiB.
pub const PART_START: u64 = 2048;
pub const PART_SECTORS: u64 = 524_288;
/// make-recovery-images starts from a 258 MiB file.
pub const CARD_BYTES: u64 = 258 << 20;
/// Our own fixed ids, so the same inputs give the same card.
pub const DISK_ID: u32 = 0x4845_4550;
pub const VOLUME_ID: u32 = 0x4845_4550;
const VOLUME_LABEL: [u8; 11] = *b"RPI-EEPROM ";
/// recovery.bin is about 100 KiB; anything near this is not one.
const RECOVERY_LIMIT: u64 = 1 << 20;

/// Which rpi-eeprom release channel to take the bootloader from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Default,
    Latest,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Default => "default",
            Channel::Latest => "latest",
        }
    }
}

/// The bootloader files found in a base image.
#[derive(Debug)]
pub struct Bootloader {
    /// The directory inside the image they came from.
    pub dir: String,
    /// `pieeprom-YYYY-MM-DD.bin`.
    pub release: String,
    pub eeprom: Eeprom,
    pub recovery: Option<Vec<u8>>,
}

/// The directories a channel's files may be in: `/lib` first (usrmerged
/// images make it a symlink to `/usr/lib`, which the reader follows).
pub fn candidate_dirs(model: PiModel, channel: Channel) -> [String; 2] {
    let tail = format!(
        "firmware/raspberrypi/bootloader-{}/{}",
        model.soc(),
        channel.name()
    );
    [format!("/lib/{tail}"), format!("/usr/lib/{tail}")]
}

/// `pieeprom-YYYY-MM-DD.bin`, the names rpi-eeprom gives its releases.
fn is_release_name(name: &str) -> bool {
    let Some(date) = name
        .strip_prefix("pieeprom-")
        .and_then(|n| n.strip_suffix(".bin"))
    else {
        return false;
    };
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The newest release of `channel` in the root filesystem `root` (the
/// dates in the names sort as text), with `recovery.bin` beside it.
pub fn find_bootloader(root: &Filesystem, model: PiModel, channel: Channel) -> Result<Bootloader> {
    let dirs = candidate_dirs(model, channel);
    let mut looked = Vec::new();
    for dir in &dirs {
        let entries = match root.list(dir) {
            Ok(e) => e,
            Err(crate::fs::FsError::NotFound(_) | crate::fs::FsError::NotADirectory(_)) => {
                looked.push(format!("{dir}/ (missing)"));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("listing {dir}")),
        };
        let newest = entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Symlink))
            .map(|e| e.name.as_str())
            .filter(|n| is_release_name(n))
            .max();
        let Some(release) = newest else {
            looked.push(format!("{dir}/ (no pieeprom-YYYY-MM-DD.bin)"));
            continue;
        };
        let path = format!("{dir}/{release}");
        // as: usize -> u64 widening.
        let bytes = root
            .read_bounded(&path, SIZE_2712 as u64)
            .with_context(|| format!("reading {path}"))?;
        let want = match model {
            PiModel::Pi4 => SIZE_2711,
            PiModel::Pi5 => SIZE_2712,
        };
        if bytes.len() != want {
            bail!(
                "{path}: {} bytes, but a {} bootloader image is {want} bytes",
                bytes.len(),
                model.name()
            );
        }
        let eeprom = Eeprom::parse(bytes).with_context(|| path.clone())?;
        let recovery_path = format!("{dir}/recovery.bin");
        let recovery = root
            .read_bounded_if_exists(&recovery_path, RECOVERY_LIMIT)
            .with_context(|| format!("reading {recovery_path}"))?;
        if recovery.is_none() && model == PiModel::Pi4 {
            bail!("{recovery_path} is missing: a Pi 4 recovery card needs it beside {release}");
        }
        return Ok(Bootloader {
            dir: dir.clone(),
            release: release.to_owned(),
            eeprom,
            recovery,
        });
    }
    bail!(
        "no {} bootloader release ({} channel) in the image's root filesystem; looked in {} \
         (the rpi-eeprom package installs them)",
        model.name(),
        channel.name(),
        looked.join(", ")
    )
}

/// `rpi-eeprom-digest`'s format: the SHA-256 in hex, then `ts: N`.
pub fn sig_text(bytes: &[u8], ts: i64) -> String {
    format!("{}\nts: {ts}\n", crate::digest::hex(&Sha256::digest(bytes)))
}

/// The card's README: what it does, what the LED says, what to do after.
pub fn readme(model: PiModel, preset: &Preset, boot: &Bootloader, channel: Channel) -> String {
    let pi = match model {
        PiModel::Pi4 => "Raspberry Pi 4",
        PiModel::Pi5 => "Raspberry Pi 5",
    };
    format!(
        "{pi} bootloader EEPROM recovery card, made by homelab-image\r\n\
         \r\n\
         Preset:     {name} (boot order: {order})\r\n\
         Bootloader: {release} ({channel} channel, from {dir} of the base image)\r\n\
         \r\n\
         This card writes that bootloader, with the preset as its configuration,\r\n\
         into the {pi}'s EEPROM:\r\n\
         \r\n\
         1. Power off the {pi} and insert this card.\r\n\
         2. Power it on and wait at least 10 seconds.\r\n\
         3. If the update worked, the green LED blinks rapidly, without end\r\n\
         \x20  (a screen on HDMI turns green). Any other blinking pattern is an\r\n\
         \x20  error code (a screen turns red): see Raspberry Pi's bootloader\r\n\
         \x20  documentation, and try again with a fresh card.\r\n\
         4. Power off and remove the card. Reformat or reflash it before using\r\n\
         \x20  it for anything else.\r\n\
         \r\n\
         The configuration written (bootconf.txt):\r\n\
         \r\n\
         {conf}",
        name = preset.name,
        order = preset.boot_order_words(),
        release = boot.release,
        channel = channel.name(),
        dir = boot.dir,
        conf = preset.conf_text.replace('\n', "\r\n"),
    )
}

/// The files of the card, in the order they are written.
pub fn card_files(
    model: PiModel,
    preset: &Preset,
    boot: &Bootloader,
    channel: Channel,
    ts: i64,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let eeprom = boot
        .eeprom
        .with_bootconf(preset.conf_text.as_bytes())
        .with_context(|| format!("{}/{}", boot.dir, boot.release))?;
    let pieeprom = eeprom.into_bytes();
    let mut files = Vec::new();
    if let Some(r) = &boot.recovery {
        files.push(("recovery.bin", r.clone()));
    }
    files.push(("pieeprom.sig", sig_text(&pieeprom, ts).into_bytes()));
    files.push(("pieeprom.bin", pieeprom));
    files.push((
        "README.txt",
        readme(model, preset, boot, channel).into_bytes(),
    ));
    Ok(files)
}

/// The MBR: no boot code, disk id, one partition of type 0x0c.
fn mbr() -> [u8; 512] {
    let mut s = [0u8; 512];
    s[440..444].copy_from_slice(&DISK_ID.to_le_bytes());
    let e = &mut s[446..462];
    e[0] = 0x00; // not active, as make-recovery-images leaves it
    e[1..4].copy_from_slice(&chs(PART_START));
    e[4] = 0x0c;
    e[5..8].copy_from_slice(&chs(PART_START + PART_SECTORS - 1));
    // as: both fit in u32 (constants well below 2^32).
    e[8..12].copy_from_slice(&(PART_START as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(PART_SECTORS as u32).to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The CHS form of `lba` with 255 heads and 63 sectors per track, as
/// sfdisk writes it for an image file.
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    // as: h < 255, s <= 63, c <= 1023 (checked), each fits its bits.
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

/// Writes the card into `file` (empty, read-write): table, FAT32, files;
/// then checks the volume again and reads every file back.
pub fn write_card(file: &File, shown: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    file.set_len(CARD_BYTES)
        .with_context(|| format!("sizing {}", shown.display()))?;
    file.write_all_at(&mbr(), 0)
        .with_context(|| format!("writing the partition table of {}", shown.display()))?;
    let storage: Arc<dyn crate::io::Storage> = Arc::new(
        file.try_clone()
            .with_context(|| format!("opening {} again", shown.display()))?,
    );
    let range = ByteRange::new(
        ByteOffset(PART_START * SECTOR),
        ByteLen(PART_SECTORS * SECTOR),
    )
    .context("the card's partition")?;
    let window = PartitionWindow::new(Arc::clone(&storage), range);
    fatfs::format_volume(
        window.clone(),
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .volume_id(VOLUME_ID)
            .volume_label(VOLUME_LABEL),
    )
    .context("formatting the card's FAT32")?;
    set_hidden_sectors(&window)?;
    let vol = crate::fs::fat::FatVolume::open(window).context("opening the new FAT32")?;
    for (name, bytes) in files {
        vol.write_file(name, bytes)
            .with_context(|| format!("writing {name} to the card"))?;
    }
    vol.count_free_clusters()
        .context("counting the card's free clusters")?;
    vol.unmount_checked()
        .context("checking the card's FAT32 after writing")?;
    // Read back through a fresh open of the table and the volume.
    let len = file
        .metadata()
        .with_context(|| format!("reading the size of {}", shown.display()))?
        .len();
    let image = Image::over(shown, storage, len)?;
    let (_, fs) = image.filesystem("1")?;
    for (name, bytes) in files {
        // as: usize -> u64 widening.
        let got = fs.read_bounded(name, bytes.len() as u64)?;
        if &got != bytes {
            bail!("{name} does not read back from the card as written");
        }
    }
    Ok(())
}

/// mkfs.fat on the partition of a loop device records the partition's
/// start as hidden sectors (what a card made the Raspberry Pi way has);
/// fatfs leaves 0. Patched in the boot sector and its backup (sector 6).
fn set_hidden_sectors(window: &PartitionWindow) -> Result<()> {
    // as: PART_START is a small constant.
    let hidden = (PART_START as u32).to_le_bytes();
    for sector in [0u64, 6] {
        window
            .write_all_at(sector * SECTOR + 0x1c, &hidden)
            .context("writing the FAT32 boot sector")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_are_dated_pieeprom_files_only() {
        assert!(is_release_name("pieeprom-2025-05-08.bin"));
        for bad in [
            "pieeprom-2025-05-08.bin.sig",
            "pieeprom.bin",
            "pieeprom-25-05-08.bin",
            "pieeprom-2025_05_08.bin",
            "recovery.bin",
        ] {
            assert!(!is_release_name(bad), "{bad}");
        }
    }

    #[test]
    fn chs_matches_what_sfdisk_writes_for_the_recovery_partition() {
        // Bytes 447..450 and 451..454 sfdisk wrote for this partition
        // (util-linux 2.38, a 258 MiB image file).
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(2048 + 524_288 - 1), [194, 34, 32]);
        assert_eq!(chs(30_000_000), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn the_sig_is_the_sha256_line_then_ts() {
        let s = sig_text(b"abc", 1_700_000_000);
        assert_eq!(
            s,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nts: 1700000000\n"
        );
    }
}
