//! Arguments of the commands that look inside an image file.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Disk image to inspect (raw .img)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Print machine-readable JSON (shape in docs/INSPECT.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Disk image (raw .img)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Partition number (1, 2, …) or filesystem label (system-boot, writable)
    #[arg(value_name = "PARTITION")]
    pub partition: String,

    /// Directory inside the filesystem
    #[arg(value_name = "PATH", default_value = "/")]
    pub path: String,

    /// Long listing: type, mode, owner, size, modification time
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Disk image (raw .img)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Partition number (1, 2, …) or filesystem label (system-boot, writable)
    #[arg(value_name = "PARTITION")]
    pub partition: String,

    /// File inside the filesystem
    #[arg(value_name = "PATH")]
    pub path: String,
}
