//! The command line, defined once with clap derive. Help, the man page and
//! shell completions are all generated from these structs; nothing here does
//! work beyond parsing.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod image_cmds;

mod build_cmds;
pub use build_cmds::{BuildArgs, Compression};
mod device_cmds;
mod flash_cmds;
mod serve_cmds;
pub use device_cmds::DevicesArgs;
pub use flash_cmds::FlashArgs;
pub use image_cmds::{CatArgs, CpArgs, InspectArgs, LsArgs, Owner, RmArgs};
pub use serve_cmds::ServeArgs;
pub mod profile_cmds;
pub mod source_cmds;

/// Turn a stock Ubuntu Server or Armbian arm64 image into one ready-to-boot
/// image per node of a homelab cluster.
#[derive(Debug, Parser)]
#[command(name = "homelab-image", version, max_term_width = 80)]
#[command(propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Inventory file describing the cluster
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "homelab.yaml",
        env = "HOMELAB_PROFILE"
    )]
    pub profile: PathBuf,

    /// Where downloaded and decompressed base images are kept
    /// [default: $XDG_CACHE_HOME/homelab-image]
    #[arg(long, global = true, value_name = "DIR", env = "HOMELAB_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to use colours
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter profile (three nodes, detected defaults)
    Init(profile_cmds::InitArgs),
    /// Validate the profile and the base images at hand
    Check(profile_cmds::CheckArgs),
    /// Show the files the build step would put into one node's image
    Render(profile_cmds::RenderArgs),
    /// Build one ready-to-boot image per node from the profile
    Build(build_cmds::BuildArgs),
    /// Show an image's partitions, filesystems, OS and boot configuration
    Inspect(InspectArgs),
    /// List a directory inside a partition of an image (FAT or ext4)
    Ls(LsArgs),
    /// Print a file from inside a partition of an image (FAT or ext4)
    Cat(CatArgs),
    /// Copy local files or trees into a partition of an image (ext4 or FAT)
    Cp(CpArgs),
    /// Remove files or symlinks from a partition of an image (ext4 or FAT)
    Rm(RmArgs),
    /// List the catalog of base images `pull` and the profile can name
    Images,
    /// Download, verify and decompress a base image into the cache; print
    /// the path of the raw image
    Pull(source_cmds::PullArgs),
    /// Show or clean the image cache
    Cache(source_cmds::CacheArgs),
    /// List the disks a node image may be flashed to, or judge one
    Devices(DevicesArgs),
    /// Write node images to SD cards and USB disks: mapped blocks only,
    /// verified, several disks at once
    Flash(FlashArgs),
    /// Netboot the profile's Raspberry Pis from this machine: ProxyDHCP,
    /// TFTP and NBD from the node images, and a status page
    Serve(ServeArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout
    Manpage,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
