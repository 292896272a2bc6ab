//! Arguments of `build`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Xz,
}

/// The image formats `build` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ImageFormat {
    /// NODE.img only
    #[default]
    Raw,
    /// NODE.img and NODE.qcow2 (for Proxmox, libvirt, qemu)
    Qcow2,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Writes OUT/NODE.img, NODE.img.bmap (for `flash` or bmaptool copy; SHA-256
per range) and OUT/known_hosts; NODE.img.sha256 with --sha256, NODE.qcow2
with --format qcow2. A `board: vm` node's image is grown to its
vm.disk_size; --seed-only writes OUT/NODE-cidata.img instead (docs/VMS.md).
Files are written under hidden .partial names and
renamed into place at the end; on
any error, Ctrl-C, SIGTERM, SIGHUP or SIGQUIT they are removed and an
existing good image is left as it was. One build at a time per OUT directory
(a second is refused, naming the first); the base image is locked against
cp/rm meanwhile. Every output is created 0600: an image carries its node's
SSH host key. Files the build creates are dated 2020-01-01 (or
$SOURCE_DATE_EPOCH), so the same profile, base image and state directory
give byte-identical images. The state directory is created on the first
build; one that git tracks is refused. Ends with a `next:` hint on stderr
(not with -q): `flash --node NODE` writes the image to a card or USB disk
(docs/FLASH.md), `serve` netboots, then `status --watch` follows the first
boots (docs/STATUS.md).")]
#[group(id = "selection", required = true, multiple = false)]
pub struct BuildArgs {
    /// Node (hostname) to build; repeat for several
    #[arg(long = "node", value_name = "NAME", group = "selection")]
    pub nodes: Vec<String>,

    /// Build every node of the profile
    #[arg(long, group = "selection")]
    pub all: bool,

    /// Output directory
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// Print the plan (base image, output, every file) and stop; writes
    /// nothing, not even the state directory
    #[arg(long)]
    pub dry_run: bool,

    /// Print the plan or the results as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Also write NODE.img.sha256 (a SHA-256 pass over the whole image,
    /// zeros included; the .bmap's range sums need none)
    #[arg(long)]
    pub sha256: bool,

    /// Also write NODE.img.xz (multi-threaded xz; a build without it
    /// removes an older one)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub compress: Option<Compression>,

    /// Also write NODE.qcow2 with `qcow2` (sparse, uncompressed; a build
    /// without it removes an older one)
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ImageFormat::Raw)]
    pub format: ImageFormat,

    /// Write only OUT/NODE-cidata.img per node: a small FAT disk labelled
    /// CIDATA with the node's cloud-init seed (what the build writes into
    /// the image travels in its user-data), to attach to a stock cloud
    /// image; no base image is read
    #[arg(long, conflicts_with_all = ["dry_run", "sha256", "compress", "format"])]
    pub seed_only: bool,

    /// Nodes built at the same time (default: the number of CPUs)
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    #[command(flatten)]
    pub fetch: super::source_cmds::FetchArgs,
}
