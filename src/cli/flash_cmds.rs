//! Arguments of `flash`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
Forms:
  flash --node NAME [DEVICE]     OUT/NAME.img and its .bmap when built, else
                                 the node built straight onto the disk
  flash IMAGE DEVICE             any raw image; IMAGE.bmap used when beside it
  flash --all --to pi1=/dev/sdb,pi2=/dev/sdc   several disks in parallel

Writes only the mapped blocks (the .bmap, or the filesystems' used blocks
for an image without one), the partition table last; on any error or
Ctrl-C the partition table is wiped so a half-written disk cannot
half-boot. Then reads every mapped block back from the disk and compares
it with the map's SHA-256, and every file the build put in with its
manifest (--no-verify skips both). Without DEVICE on a terminal, asks
which disk (candidates from `homelab-image devices`) and for a typed
confirmation; --yes skips the questions and then DEVICE is required.
Safety rules and how to override them: docs/FLASH.md. Needs write access
to the disk: root, or the `disk` group where the disk belongs to it.")]
pub struct FlashArgs {
    /// IMAGE DEVICE, or with --node just DEVICE
    #[arg(value_name = "IMAGE|DEVICE", num_args = 0..=2)]
    pub paths: Vec<PathBuf>,

    /// The node (hostname) to flash
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub node: Option<String>,

    /// Flash several nodes at once (with --to)
    #[arg(long, requires = "to")]
    pub all: bool,

    /// NODE=DEVICE pairs, comma-separated, for --all
    #[arg(
        long,
        value_name = "NODE=DEVICE,...",
        value_delimiter = ',',
        requires = "all"
    )]
    pub to: Vec<String>,

    /// The block map of IMAGE [default: IMAGE.bmap beside it; without one,
    /// the blocks the image's filesystems use]
    #[arg(long, value_name = "FILE", conflicts_with_all = ["node", "all"])]
    pub bmap: Option<PathBuf>,

    /// Where built node images are looked for (and built into by `build`)
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// No questions: DEVICE must be given; disks above 512 GiB accepted
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Accept internal (SATA, NVMe, SCSI, virtio) disks
    #[arg(long)]
    pub allow_internal: bool,

    /// Skip reading the disk back after writing
    #[arg(long)]
    pub no_verify: bool,

    /// Eject the disk when done (power it off where the kernel can)
    #[arg(long)]
    pub eject: bool,

    /// Progress and results as JSON lines on stdout (for scripts)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub fetch: super::source_cmds::FetchArgs,
}
