//! Arguments of the commands that look inside an image file.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
Once the partition table is read, whatever cannot be read (a damaged
filesystem, an unreadable or implausibly large file) is marked in the
report and listed under Unreadable (JSON: problems); everything else is
still reported, and the exit status is then 1.")]
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

#[derive(Debug, Args)]
#[command(after_help = "\
Semantics follow cp -r: SOURCE copied to a DEST that does not exist becomes
DEST; into an existing directory it keeps its name; SOURCE/. copies what is
inside SOURCE; a DEST ending in / must be a directory. Directories are made
as needed, files are created or replaced (an existing file keeps its inode),
symlinks inside trees are copied as symlinks. Modes and modification times
come from the sources; owners default to root. The copy is made in memory,
read back and checked, and only then written to the image: a refusal or
error leaves it unchanged. One writer per image: a second cp or rm is
refused, naming the first. On FAT, directories must already exist and
--owner/--mode do not apply.")]
pub struct CpArgs {
    /// Disk image (raw .img), changed in place
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Partition number (1, 2, …) or filesystem label (system-boot, writable)
    #[arg(value_name = "PARTITION")]
    pub partition: String,

    /// Local files or directories to copy (SRC...), then the absolute
    /// destination inside the partition (DEST)
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<PathBuf>,

    /// Copy directories and their contents
    #[arg(short = 'r', short_alias = 'R', long = "recursive")]
    pub recursive: bool,

    /// Owner of everything copied, as numeric UID:GID
    #[arg(long, value_name = "UID:GID", default_value = "0:0")]
    pub owner: Owner,

    /// Permission bits for copied files, in octal (directories keep theirs)
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<u16>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Directories, and paths ending in /, are refused. The removal is made in
memory, checked, and only then written to the image: if any path fails,
nothing is removed. One writer per image: a second cp or rm is refused,
naming the first.")]
pub struct RmArgs {
    /// Disk image (raw .img), changed in place
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Partition number (1, 2, …) or filesystem label (system-boot, writable)
    #[arg(value_name = "PARTITION")]
    pub partition: String,

    /// Absolute paths of the files, symlinks, FIFOs, sockets or device
    /// nodes to remove (not directories)
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,

    /// Ignore paths that do not exist
    #[arg(short, long)]
    pub force: bool,
}

/// A numeric `UID:GID` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Owner, String> {
        let (u, g) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not UID:GID (for example 1000:1000)"))?;
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{v:?} is not a numeric id (names are not looked up)"))
        };
        Ok(Owner {
            uid: num(u)?,
            gid: num(g)?,
        })
    }
}

fn parse_mode(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode from 0 to 7777"))
}
