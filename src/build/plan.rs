//! The pure build plan: for every selected node, the base image it starts
//! from, where its image goes and every file that will be put into it.
//! `build --dry-run` prints exactly this.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{FileRow, Manifest, rows};
use crate::profile::resolved::{Cluster, ImageSource, ResolvedNode};
use crate::render::FileSpec;

#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub base: ImageSource,
    /// The raw base image on disk, once it was fetched or found (`None` in
    /// a dry run whose base is not at hand).
    pub base_path: Option<PathBuf>,
    pub out: PathBuf,
    pub files: Vec<FileSpec>,
    /// What checking the base image found (the image, each user's uid),
    /// or why it was not checked.
    pub notes: Vec<String>,
    /// The size the image is grown to (a VM's `vm.disk_size`); `None`
    /// keeps the base's.
    pub disk_size: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub out_dir: PathBuf,
    pub nodes: Vec<NodePlan>,
    /// Time stamped on files the build creates.
    pub epoch: i64,
}

pub fn describe_source(s: &ImageSource) -> String {
    match s {
        ImageSource::Catalog { entry, named: true } => format!("catalog:{}", entry.name),
        ImageSource::Catalog { named: false, .. } => "catalog (default for the board)".into(),
        ImageSource::Url { url, .. } => crate::source::redact::url(url),
        ImageSource::Path(p) => p.display().to_string(),
    }
}

pub fn node_plan(node: &ResolvedNode, files: Vec<FileSpec>, out_dir: &Path) -> NodePlan {
    let name = node.hostname.as_str().to_string();
    let mut files = files;
    let m = Manifest::of(&name, &files);
    files.push(m.spec());
    NodePlan {
        out: out_dir.join(format!("{name}.img")),
        base: node.image.source.clone(),
        base_path: None,
        name,
        files,
        notes: Vec::new(),
        disk_size: node.vm.as_ref().map(|vm| vm.disk_size.bytes()),
    }
}

#[derive(Serialize)]
struct JsonNode<'a> {
    node: &'a str,
    base: String,
    out: String,
    notes: &'a [String],
    files: Vec<FileRow>,
}

/// The plan as JSON (`build --dry-run --json`).
pub fn to_json(plan: &BuildPlan) -> String {
    let nodes: Vec<JsonNode> = plan
        .nodes
        .iter()
        .map(|n| JsonNode {
            node: &n.name,
            base: describe_source(&n.base),
            out: n.out.display().to_string(),
            notes: &n.notes,
            files: rows(&n.files),
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&nodes).unwrap_or_default();
    s.push('\n');
    s
}

/// The plan for people: per node, the base, the output and each file.
pub fn to_text(plan: &BuildPlan, cluster: &Cluster) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "build plan: {} node(s) into {} (state {})\n",
        plan.nodes.len(),
        plan.out_dir.display(),
        cluster.state_dir.display()
    ));
    for n in &plan.nodes {
        s.push_str(&format!(
            "\nnode {}\n  base  {}\n  out   {}\n",
            n.name,
            describe_source(&n.base),
            n.out.display()
        ));
        for note in &n.notes {
            s.push_str(&format!("  note  {note}\n"));
        }
        for r in rows(&n.files) {
            let size = r
                .size
                .map(|b| crate::io::units::human_size(b as u64))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {:<4}  {:<14} {:>4} {:>9} {:>9}  {}\n",
                r.target, r.kind, r.mode, r.owner, size, r.path
            ));
        }
    }
    s
}
