//! The command line, defined once with clap derive. Help, the man page and
//! shell completions are all generated from these structs; nothing here does
//! work beyond parsing.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod examples;
mod image_cmds;
pub mod man;

mod build_cmds;
pub use build_cmds::{BuildArgs, Compression, ImageFormat};
mod device_cmds;
pub mod firmware_cmds;
mod flash_cmds;
mod serve_cmds;
pub use device_cmds::DevicesArgs;
pub use flash_cmds::FlashArgs;
pub use image_cmds::{CatArgs, CpArgs, InspectArgs, LsArgs, Owner, RmArgs};
pub use serve_cmds::ServeArgs;
pub mod profile_cmds;
pub mod source_cmds;
pub mod status_cmds;

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

/// The command tree as the binary shows it: the derived definition plus
/// each command's Examples section. Help, the man page and completions
/// are all made from this.
pub fn command() -> clap::Command {
    examples::add_examples(<Cli as clap::CommandFactory>::command(), "")
}

/// Options every command takes, listed under their own heading in each
/// `--help` so a command's own options stand apart.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
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
    /// Write a commented starter profile: asks on a terminal, else three
    /// nodes with detected defaults
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
    Images(source_cmds::ImagesArgs),
    /// Download, verify and decompress a base image into the cache (with
    /// no image named: the profile's, and its k3s release files); print
    /// the paths
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
    /// Show each node's first boot (reachable, state, cloud-init) and the
    /// MicroCloud members, over SSH or from `serve`
    Status(status_cmds::StatusArgs),
    /// Raspberry Pi bootloader EEPROM: boot-order presets, the configuration
    /// inside an EEPROM image, a recovery card that writes one
    Firmware(firmware_cmds::FirmwareArgs),
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
