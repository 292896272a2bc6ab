//! A node's seed on its own (`build --seed-only`), for a cloud image the
//! user keeps unmodified: cloud-init's `user-data`, `meta-data` and
//! `network-config`, where everything the build would have written into
//! the root file system travels inside `user-data` instead — as
//! `write_files` (the host key and its sshd drop-in, the first-boot
//! script and unit, the MicroCloud preseed), with `runcmd` making the
//! directories and links and starting the first-boot unit. The FAT disk
//! that carries it is `build::seed_disk`.

use thiserror::Error;

use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::profile::state::State;
use crate::render::cloud_init::{self, WriteFile};
use crate::render::quirks::{Quirks, SEED_DIR};
use crate::render::{FileKind, RenderError, Target, firstboot, yaml};

/// The three files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

#[derive(Debug, Error)]
pub enum SeedError {
    #[error(
        "node {node}: {os} images have no cloud-init to read a seed; build the image \
         instead (without --seed-only)"
    )]
    NoCloudInit { node: String, os: String },
    #[error(
        "node {node}: {what} goes into the image and is too large for a seed; build the \
         image instead (without --seed-only)"
    )]
    TooLarge { node: String, what: String },
    #[error("node {node}: the rendered {file} is missing")]
    Missing { node: String, file: &'static str },
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// `node`'s seed, carrying what a build writes into its root file system.
pub fn seed_only(node: &ResolvedNode, cluster: &Cluster, state: &State) -> Result<Seed, SeedError> {
    let quirks = Quirks::new(node.image.os, &node.board);
    if !quirks.uses_cloud_init() {
        return Err(SeedError::NoCloudInit {
            node: node.hostname.to_string(),
            os: node.image.os.to_string(),
        });
    }
    let specs = super::node(node, cluster, state)?;
    let seed_path = |name: &str| match quirks.seed_dir() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_owned(),
    };
    let text = |name: &'static str| {
        specs
            .iter()
            .find(|s| s.path == seed_path(name))
            .and_then(|s| match &s.kind {
                FileKind::File { bytes } => String::from_utf8(bytes.clone()).ok(),
                _ => None,
            })
            .ok_or_else(|| SeedError::Missing {
                node: node.hostname.to_string(),
                file: name,
            })
    };
    let meta_data = text("meta-data")?;
    let network_config = text("network-config")?;
    let mut user_data = cloud_init::user_data(node, state, &quirks)?;
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for s in specs.iter().filter(|s| s.target == Target::Root) {
        if s.path.starts_with(&format!("{SEED_DIR}/")) {
            continue;
        }
        match &s.kind {
            FileKind::File { bytes } => {
                let (content, encoding) = WriteFile::content_of(bytes);
                user_data.write_files.push(WriteFile {
                    path: s.path.clone(),
                    content,
                    encoding,
                    // Rendered root files of a cloud-init node are root's;
                    // the profile's own files are in write_files already.
                    owner: "root:root".to_owned(),
                    permissions: format!("{:04o}", s.mode),
                    defer: false,
                });
            }
            FileKind::Dir => dirs.push(vec![
                "install".to_owned(),
                "-d".to_owned(),
                "-m".to_owned(),
                format!("{:04o}", s.mode),
                s.path.clone(),
            ]),
            FileKind::Symlink { target } => links.push(vec![
                "ln".to_owned(),
                "-sfn".to_owned(),
                target.clone(),
                s.path.clone(),
            ]),
            FileKind::Cached { file } => {
                return Err(SeedError::TooLarge {
                    node: node.hostname.to_string(),
                    what: file.what.clone(),
                });
            }
            // Armbian's edits: not on a cloud-init node.
            FileKind::Absent | FileKind::AccountEntries { .. } | FileKind::CmdlineEdit { .. } => {}
        }
    }
    // write_files makes missing parents 0755 before this runs; `install -d`
    // then sets the modes the build would have.
    user_data.runcmd.extend(dirs);
    user_data.runcmd.extend(links);
    user_data
        .runcmd
        .push(vec!["systemctl".into(), "daemon-reload".into()]);
    // runcmd runs inside cloud-final.service, which the first-boot unit
    // is ordered after: queue it, do not wait for it.
    user_data.runcmd.push(vec![
        "systemctl".into(),
        "start".into(),
        "--no-block".into(),
        firstboot::UNIT_NAME.into(),
    ]);
    let user_data = format!(
        "#cloud-config\n{}",
        yaml::to_yaml("user-data", &user_data).map_err(RenderError::from)?
    );
    Ok(Seed {
        user_data,
        meta_data,
        network_config,
    })
}
