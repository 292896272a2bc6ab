//! What a k3s node gets in its root file system (docs/K3S.md): k3s's
//! configuration file, our own `k3s.service` / `k3s-agent.service` (what
//! upstream's install.sh would write, rendered here: no `curl | sh` on the
//! node), the binary from the download cache with the `kubectl`, `crictl`
//! and `ctr` links install.sh makes, and optionally the air-gap images.
//! The units are not enabled in the image: the first-boot unit enables and
//! starts the node's one, once the network and the clock are up.

use serde::Serialize;

use crate::k3s::K3sArch;
use crate::profile::k3s::{K3s, K3sRole};
use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::profile::state::State;
use crate::render::RenderError;
use crate::render::file_spec::{CachedBlob, CachedFile, FileSpec};
use crate::render::yaml;

/// k3s reads this by default, server and agent alike.
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
pub const BINARY_PATH: &str = "/usr/local/bin/k3s";
/// The links install.sh makes beside the binary (k3s dispatches on argv[0]).
pub const LINKS: [&str; 3] = ["kubectl", "crictl", "ctr"];
pub const SERVER_UNIT: &str = "k3s.service";
pub const AGENT_UNIT: &str = "k3s-agent.service";
/// Images k3s imports on start when the node is air-gapped.
pub const AIRGAP_DIR: &str = "/var/lib/rancher/k3s/agent/images";
/// The supervisor and API port joiners register with.
pub const API_PORT: u16 = 6443;

/// What the cache holds for one node: the binary and, with
/// `airgap_images`, the images tarball (each `None` when not there yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K3sFiles {
    pub binary: Option<CachedBlob>,
    pub airgap: Option<CachedBlob>,
}

/// The unit the node runs.
pub fn unit_name(role: K3sRole) -> &'static str {
    if role.is_server() {
        SERVER_UNIT
    } else {
        AGENT_UNIT
    }
}

pub fn unit_path(role: K3sRole) -> String {
    format!("/etc/systemd/system/{}", unit_name(role))
}

/// `config.yaml` as k3s reads it: its CLI flags by their long names. Keys
/// an agent refuses (the server-only flags) are left out on agents.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    #[serde(rename = "cluster-init", skip_serializing_if = "Option::is_none")]
    pub cluster_init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub token: String,
    #[serde(rename = "node-name")]
    pub node_name: String,
    #[serde(rename = "node-ip")]
    pub node_ip: String,
    #[serde(rename = "tls-san", skip_serializing_if = "Vec::is_empty")]
    pub tls_san: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    #[serde(rename = "node-label", skip_serializing_if = "Vec::is_empty")]
    pub node_label: Vec<String>,
    #[serde(rename = "node-taint", skip_serializing_if = "Vec::is_empty")]
    pub node_taint: Vec<String>,
    #[serde(rename = "cluster-cidr", skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<String>,
    #[serde(rename = "service-cidr", skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
}

/// The token `role` is given: the bare secret on the first server (as
/// upstream's installer gives it), the full token that pins the server
/// CA everywhere else, so a joiner refuses a server with another CA.
fn token(role: K3sRole, state: &State) -> Result<String, RenderError> {
    let k = state
        .k3s
        .as_ref()
        .ok_or_else(|| RenderError::MissingState("k3s token and certificates".to_owned()))?;
    Ok(match role {
        K3sRole::FirstServer => k.secret.clone(),
        _ => k.full_token.clone(),
    })
}

/// Where the first server's CA files go (k3s's own directory).
pub const TLS_DIR: &str = "/var/lib/rancher/k3s/server/tls";

/// The first server's address, which every other node joins.
fn first_server(cluster: &Cluster, k3s: &K3s) -> Option<std::net::Ipv4Addr> {
    let first = k3s.servers.first()?;
    cluster
        .node(first.as_str())
        .map(|n| n.network.address.addr())
}

/// The configuration of `node` in the role `role`.
pub fn config(
    node: &ResolvedNode,
    role: K3sRole,
    cluster: &Cluster,
    k3s: &K3s,
    state: &State,
) -> Result<Config, RenderError> {
    let server = match role {
        K3sRole::FirstServer => None,
        _ => {
            let ip = first_server(cluster, k3s).ok_or_else(|| {
                RenderError::MissingState(format!("the address of k3s server {:?}", k3s.servers))
            })?;
            Some(format!("https://{ip}:{API_PORT}"))
        }
    };
    let is_server = role.is_server();
    let mut tls_san = Vec::new();
    if is_server {
        let own = [node.network.address.addr().to_string(), node.fqdn()];
        for san in own
            .into_iter()
            .chain(k3s.tls_san.iter().map(ToString::to_string))
        {
            if !tls_san.contains(&san) {
                tls_san.push(san);
            }
        }
    }
    Ok(Config {
        cluster_init: (role == K3sRole::FirstServer).then_some(true),
        server,
        token: token(role, state)?,
        node_name: node.hostname.to_string(),
        node_ip: node.network.address.addr().to_string(),
        tls_san,
        disable: if is_server {
            k3s.disable.clone()
        } else {
            Vec::new()
        },
        node_label: node.node_labels.iter().map(ToString::to_string).collect(),
        node_taint: node.node_taints.iter().map(ToString::to_string).collect(),
        cluster_cidr: is_server.then(|| k3s.cluster_cidr.to_string()),
        service_cidr: is_server.then(|| k3s.service_cidr.to_string()),
    })
}

/// The systemd unit for `role`: the service install.sh writes (notify
/// readiness, delegated cgroups, no resource accounting limits, restart
/// for ever, the two modules the container runtime needs), started with
/// no flags: everything is in `CONFIG_PATH`.
pub fn unit(role: K3sRole) -> String {
    let (what, command) = if role.is_server() {
        ("server", "server")
    } else {
        ("agent", "agent")
    };
    format!(
        "# Generated by homelab-image; see docs/K3S.md. Enabled and started by
# homelab-firstboot on the node's first boot; configured by {CONFIG_PATH}.
[Unit]
Description=Lightweight Kubernetes (k3s {what})
Documentation=https://docs.k3s.io
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
KillMode=process
Delegate=yes
User=root
# Limits of 0 cost accounting overhead in the kernel; containers are
# accounted for in their own cgroups.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={BINARY_PATH} {command}

[Install]
WantedBy=multi-user.target
"
    )
}

/// Everything k3s puts into `node`'s root file system.
pub fn files(
    node: &ResolvedNode,
    cluster: &Cluster,
    k3s: &K3s,
    state: &State,
    arch: K3sArch,
    cached: &K3sFiles,
) -> Result<Vec<FileSpec>, RenderError> {
    let Some(role) = k3s.role(&node.hostname) else {
        return Ok(Vec::new());
    };
    let config = config(node, role, cluster, k3s, state)?;
    let mut out = vec![
        // 0600: it holds the cluster's token.
        FileSpec::root_file(CONFIG_PATH, 0o600, yaml::to_yaml("k3s config", &config)?),
        FileSpec::root_file(&unit_path(role), 0o644, unit(role)),
        FileSpec::root_cached(
            BINARY_PATH,
            0o755,
            CachedFile {
                what: format!("k3s {} {arch} binary", k3s.version),
                found: cached.binary.clone(),
            },
        ),
    ];
    // The cluster's CAs, made at build time so `out/kubeconfig` works as
    // soon as the server is up: k3s uses a CA pair it finds in its TLS
    // directory on first start (`k3s::pki`). Only the first server gets
    // them; joiners fetch them from it with the token.
    if role == K3sRole::FirstServer {
        let k = state
            .k3s
            .as_ref()
            .ok_or_else(|| RenderError::MissingState("k3s token and certificates".to_owned()))?;
        out.push(FileSpec::root_dir(TLS_DIR, 0o700));
        if k.tls_files.iter().any(|(p, _, _)| p.contains('/')) {
            out.push(FileSpec::root_dir(&format!("{TLS_DIR}/etcd"), 0o700));
        }
        for (path, mode, pem) in &k.tls_files {
            out.push(FileSpec::root_file(
                &format!("{TLS_DIR}/{path}"),
                *mode,
                pem.clone(),
            ));
        }
    }
    for link in LINKS {
        out.push(FileSpec::root_symlink(
            &format!("/usr/local/bin/{link}"),
            "k3s",
        ));
    }
    if k3s.airgap_images {
        out.push(FileSpec::root_cached(
            &format!("{AIRGAP_DIR}/{}", arch.airgap_asset()),
            0o644,
            CachedFile {
                what: format!("k3s {} {arch} air-gap images", k3s.version),
                found: cached.airgap.clone(),
            },
        ));
    }
    Ok(out)
}
