//! Arguments of `firmware`: the Raspberry Pi bootloader EEPROM presets,
//! reading the configuration inside an EEPROM image, and the recovery card.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct FirmwareArgs {
    #[command(subcommand)]
    pub command: FirmwareCommand,
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// List the boot-order presets (firmware/*.conf, built in)
    Presets(PresetsArgs),
    /// Print the bootconf.txt inside an EEPROM image or a recovery card
    Show(ShowArgs),
    /// Make an SD card image that writes a bootloader with a preset into a
    /// Raspberry Pi's EEPROM
    Card(CardArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  homelab-image firmware presets
  homelab-image firmware presets --json | jq -r '.[].name'

A preset fits the boards whose bootloader has every boot mode it names:
NVMe (6) needs a Pi 5, BCM USB (5) a Pi 4.")]
pub struct PresetsArgs {
    /// Print machine-readable JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  homelab-image firmware show pieeprom-2025-05-08.bin
  homelab-image firmware show eeprom-rpi4.img > boot.conf
  homelab-image firmware show --json eeprom-rpi4.img

FILE is a bootloader EEPROM image (512 KiB for a Pi 4, 2 MiB for a Pi 5),
or a disk image whose FAT partition holds pieeprom.bin or pieeprom.upd (a
recovery card, or a boot partition with an update pending). bootconf.txt
goes to stdout as it is stored; where it was found and its boot order in
words go to stderr.")]
pub struct ShowArgs {
    /// EEPROM image or disk image
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print machine-readable JSON
    #[arg(long)]
    pub json: bool,
}

/// The boards with a bootloader EEPROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PiBoard {
    Rpi4,
    Rpi5,
}

/// rpi-eeprom's release channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Channel {
    Default,
    Latest,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  homelab-image firmware card --preset boot-usb-sd --board rpi4 \\
      --from \"$(homelab-image pull ubuntu-24.04-raspi)\"
  homelab-image firmware card --preset boot-nvme-usb --board rpi5 \\
      --channel latest --out eeprom-rpi5.img
  homelab-image flash eeprom-rpi4.img /dev/sdX

The card is laid out like Raspberry Pi's own recovery images: MBR, one
FAT32 partition of 256 MiB at 1 MiB, holding recovery.bin (Pi 4; Pi 5 when
the base image has one), pieeprom.bin (the newest bootloader release of the
channel, with the preset as its bootconf.txt), pieeprom.sig (SHA-256 and
`ts:`, from SOURCE_DATE_EPOCH when set) and README.txt. The bootloader is
read from the base image's /lib/firmware/raspberrypi/bootloader-2711 (Pi 4)
or bootloader-2712 (Pi 5), so it is what `pull` verified. Without --from,
the profile's first node of the board gives the base image, which must
already be in the cache (`homelab-image pull`). Boot a Pi from the card:
its green LED blinks rapidly when the EEPROM is written.")]
pub struct CardArgs {
    /// Preset name (`homelab-image firmware presets`)
    #[arg(long, value_name = "NAME")]
    pub preset: String,

    /// The board the card is for
    #[arg(long, value_enum)]
    pub board: PiBoard,

    /// Base image (raw .img) whose rootfs holds the bootloader releases
    /// [default: the profile's base image for a node of the board]
    #[arg(long, value_name = "BASE_IMAGE")]
    pub from: Option<PathBuf>,

    /// Release channel to take the newest bootloader from
    #[arg(long, value_enum, default_value_t = Channel::Default)]
    pub channel: Channel,

    /// Card image to write [default: eeprom-rpi4.img or eeprom-rpi5.img]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}
