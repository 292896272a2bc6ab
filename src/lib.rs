//! homelab-image: per-node Ubuntu/Armbian images for a homelab cluster, made
//! by editing partition tables, FAT and ext4 in pure Rust.
//!
//! Data flows one way: profile → resolved nodes → plan → disk edits. The
//! modules mirror that pipeline (see shared/DESIGN.md); `app` is the only
//! place that ties a parsed command line to the work.
// Denied, not forbidden: `flash::blkdev` allows it for two ioctls, each
// with its proof of soundness.
#![deny(unsafe_code)]

pub mod app;
pub mod build;
pub mod cli;
pub mod digest;
pub mod disk;
pub mod firmware;
pub mod flash;
pub mod fs;
pub mod image;
pub mod inspect;
pub mod io;
pub mod k3s;
pub mod netboot;
pub mod profile;
pub mod progress;
pub mod render;
pub mod source;
pub mod status;
pub mod time;
