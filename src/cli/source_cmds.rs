//! Arguments of the base-image commands: `images`, `pull`, `cache`. The
//! download and trust options are one struct so `build` can take the same.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print machine-readable JSON (shape in docs/JSON.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalog name (see `images`), http(s) URL, or local image file
    /// (.img, .img.xz, .img.gz, .img.zst, .qcow2). Without it: every base
    /// image the profile's nodes need
    #[arg(value_name = "NAME|URL|PATH")]
    pub source: Option<String>,

    /// The image's SHA-256 (with a URL: required unless --checksums; with a
    /// file: checked)
    #[arg(long, value_name = "HEX", conflicts_with = "checksums")]
    pub sha256: Option<String>,

    /// URL of a checksum file (SHA256SUMS style) that lists the image; its
    /// detached signature is fetched from URL.gpg or URL.asc
    #[arg(long, value_name = "URL")]
    pub checksums: Option<String>,

    /// URL of the detached signature of the --checksums file
    #[arg(long, value_name = "URL", requires = "checksums")]
    pub signature: Option<String>,

    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// How images are downloaded and checked (shared with `build`).
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Fetch catalog images from this mirror: its scheme, host and path
    /// replace the publisher's scheme and host. For k3s releases it
    /// replaces https://github.com/k3s-io/k3s/releases/download
    #[arg(long, value_name = "URL", env = "HOMELAB_MIRROR")]
    pub mirror: Option<String>,

    /// Also trust signatures by the OpenPGP public key(s) in FILE (armored
    /// or binary); repeatable
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Vec<PathBuf>,

    /// Do not check OpenPGP signatures (checksums are still checked)
    #[arg(long)]
    pub insecure_skip_signature: bool,

    /// Further attempts per download after a failure of any kind (no
    /// connection, a transfer cut short or too slow, a range answered
    /// wrongly): at most N+1 requests per file; the next run resumes
    #[arg(long, value_name = "N", default_value_t = 5, env = "HOMELAB_RETRIES")]
    pub retries: u32,

    /// First delay between attempts, doubled each time (at most 60 s)
    #[arg(
        long,
        value_name = "SECS",
        default_value = "1",
        value_parser = parse_secs,
        env = "HOMELAB_RETRY_DELAY"
    )]
    pub retry_delay: Duration,

    /// Give up connecting after this long
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Give up on a server silent for this long (headers or any read), or
    /// sending less than 16 KiB in this long
    #[arg(
        long,
        value_name = "SECS",
        default_value = "60",
        value_parser = parse_secs,
        env = "HOMELAB_READ_TIMEOUT"
    )]
    pub read_timeout: Duration,

    /// Decoder threads for multi-block xz images [default: one per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached images and k3s downloads (damaged ones marked) and
    /// partial downloads
    List {
        /// Print machine-readable JSON (shape in docs/JSON.md)
        #[arg(long)]
        json: bool,
    },
    /// Re-hash cached images and k3s downloads in full and compare them
    /// with the hash they were cached under; exits 1 if any is damaged
    /// (every use already checks the size and a sampled fingerprint)
    Verify {
        /// Only the image whose SHA-256 starts with HEX (as `cache list`
        /// shows it) [default: every image]
        #[arg(value_name = "HEX")]
        sha256: Option<String>,
        /// Delete damaged images (the next pull or build makes them again)
        #[arg(long)]
        remove: bool,
    },
    /// Delete partial downloads, compressed files already decompressed,
    /// and images superseded by a newer release of the same catalog entry
    Prune {
        /// Delete every cached image and k3s download as well
        #[arg(long)]
        all: bool,
    },
}

/// Seconds, fractions allowed (`0.5`), at most a day.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s} is not between 0 and 86400 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("x").is_err());
        assert!(parse_secs("NaN").is_err());
    }
}
