//! Arguments of `devices`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
Lists the whole disks of this machine from sysfs: path, size, transport,
model, serial, removable and read-only flags, what is mounted, swapped on or
held (md, LVM, dm-crypt) from it, and whether `flash` would take it
(\"candidate\") or which safety rule excludes it. USB and SD/MMC disks are
candidates whatever their removable flag says; internal SATA/NVMe disks
need --allow-internal; disks above 512 GiB need confirmation. The cache
directory is protected. Loop devices are listed only with --all and are
flashable only when named. --check DEVICE judges one disk (exit 1 when it
would be refused), including whether you may write it and whether the
kernel grants exclusive access. Rules and JSON shape: docs/FLASH.md.")]
pub struct DevicesArgs {
    /// Also list loop, device-mapper, md, zram devices and empty readers
    #[arg(long)]
    pub all: bool,

    /// Print machine-readable JSON (shape in docs/FLASH.md)
    #[arg(long)]
    pub json: bool,

    /// Judge one disk: may a node image be written to it?
    #[arg(long, value_name = "DEVICE")]
    pub check: Option<PathBuf>,

    /// With --check: the image to be written (too small a disk, or the disk
    /// holding the image, is refused)
    #[arg(long, value_name = "FILE", requires = "check")]
    pub image: Option<PathBuf>,

    /// Accept internal (SATA, NVMe, SCSI, virtio) disks
    #[arg(long)]
    pub allow_internal: bool,

    /// With --check: count the confirmation for disks above 512 GiB as given
    #[arg(long, requires = "check")]
    pub yes: bool,
}
