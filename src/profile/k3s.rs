//! The `k3s:` section of a profile (docs/PROFILE.md, "k3s") and the
//! per-node `node_labels` / `node_taints`: serde types, the newtypes that
//! parse labels and taints as Kubernetes defines them, and the resolved
//! cluster the renderers take. The rules that look at the nodes are in
//! `k3s_rules`.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;
use thiserror::Error;

use crate::k3s::{K3sArch, K3sVersion};
use crate::profile::hostname::{DomainName, Hostname};
use crate::profile::inventory::SecretSpec;
use crate::profile::net::Ipv4Cidr;
use crate::profile::resolved::ResolvedNode;

/// k3s's packaged components, the values its `--disable` takes
/// (docs.k3s.io, "Managing Packaged Components" and the server CLI).
pub const COMPONENTS: [&str; 6] = [
    "coredns",
    "servicelb",
    "traefik",
    "local-storage",
    "metrics-server",
    "runtimes",
];

/// k3s's defaults (docs.k3s.io, server CLI `--cluster-cidr`, `--service-cidr`).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// `k3s:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sSpec {
    /// An exact release, e.g. `v1.31.4+k3s1`.
    pub version: K3sVersion,
    /// The servers' hostnames; the first one initialises the cluster.
    pub servers: Vec<Hostname>,
    /// The agents; without it every node that is no server is one.
    pub agents: Option<Vec<Hostname>>,
    /// The cluster's join secret [default: generate: true].
    pub token: Option<SecretSpec>,
    /// More names and addresses for the servers' certificate.
    #[serde(default)]
    pub tls_san: Vec<TlsSan>,
    /// Packaged components not to deploy (checked against `COMPONENTS`
    /// by `k3s_rules`, where a near miss gets a suggestion).
    #[serde(default)]
    pub disable: Vec<String>,
    /// [default: 10.42.0.0/16]
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// [default: 10.43.0.0/16]
    pub service_cidr: Option<Ipv4Cidr>,
    /// Put the release's air-gap images into every node [default: false].
    #[serde(default)]
    pub airgap_images: bool,
}

/// A name or address for the servers' certificate (`tls-san`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSan {
    Ip(Ipv4Addr),
    Name(DomainName),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is neither an IPv4 address nor a DNS name")]
pub struct TlsSanError(String);

impl TlsSan {
    pub fn parse(s: &str) -> Result<Self, TlsSanError> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Self::Ip(ip));
        }
        DomainName::parse(s)
            .map(Self::Name)
            .map_err(|_| TlsSanError(s.to_owned()))
    }
}

impl fmt::Display for TlsSan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(n) => write!(f, "{n}"),
        }
    }
}

crate::profile::newtype::string_serde!(TlsSan, TlsSan::parse);

/// Why a label or taint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a valid {what}: {why}")]
pub struct LabelError {
    what: &'static str,
    text: String,
    why: String,
}

/// A node label `key=value` (`--node-label`). Key and value follow
/// Kubernetes' syntax (an optional DNS-subdomain prefix and `/`, a name of
/// at most 63 characters; a value of at most 63), and a key in the
/// `kubernetes.io` / `k8s.io` namespaces must be one the kubelet may set
/// itself: any other makes the kubelet refuse to start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeLabel {
    text: String,
    key_len: usize,
}

impl NodeLabel {
    pub fn parse(s: &str) -> Result<Self, LabelError> {
        let err = |why: String| LabelError {
            what: "node label (key=value)",
            text: s.to_owned(),
            why,
        };
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| err("it has no `=`".to_owned()))?;
        label_key(key).map_err(err)?;
        label_value(value).map_err(err)?;
        Ok(Self {
            text: s.to_owned(),
            key_len: key.len(),
        })
    }

    pub fn key(&self) -> &str {
        &self.text[..self.key_len]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for NodeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

crate::profile::newtype::string_serde!(NodeLabel, NodeLabel::parse);

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "NoSchedule" => Some(Self::NoSchedule),
            "PreferNoSchedule" => Some(Self::PreferNoSchedule),
            "NoExecute" => Some(Self::NoExecute),
            _ => None,
        }
    }
}

/// A node taint `key[=value]:Effect` (`--node-taint`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeTaint {
    text: String,
    key_len: usize,
    pub effect: TaintEffect,
}

impl NodeTaint {
    pub fn parse(s: &str) -> Result<Self, LabelError> {
        let err = |why: String| LabelError {
            what: "node taint (key=value:Effect)",
            text: s.to_owned(),
            why,
        };
        let (pair, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| err("it has no `:Effect`".to_owned()))?;
        let effect = TaintEffect::parse(effect).ok_or_else(|| {
            err(format!(
                "the effect {effect:?} is none of NoSchedule, PreferNoSchedule, NoExecute"
            ))
        })?;
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // A taint's key may be any qualified name: the kubelet's label
        // namespace rule is for labels only.
        qualified_name(key).map_err(err)?;
        label_value(value).map_err(err)?;
        Ok(Self {
            text: s.to_owned(),
            key_len: key.len(),
            effect,
        })
    }

    pub fn key(&self) -> &str {
        &self.text[..self.key_len]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for NodeTaint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

crate::profile::newtype::string_serde!(NodeTaint, NodeTaint::parse);

/// `[a-zA-Z0-9]` at both ends, `[-_.a-zA-Z0-9]` between, 1 to 63 bytes.
fn name_part(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    (1..=63).contains(&s.len())
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS subdomain (RFC 1123, lower case), at most 253 bytes.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let edge =
                |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            (1..=63).contains(&l.len())
                && edge(l.as_bytes().first())
                && edge(l.as_bytes().last())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// `[prefix/]name`, Kubernetes' "qualified name".
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix.filter(|p| !dns_subdomain(p)) {
        return Err(format!(
            "the key's prefix {p:?} is not a lower-case DNS subdomain"
        ));
    }
    if !name_part(name) {
        return Err(format!(
            "the key's name {name:?} must be 1 to 63 letters, digits, `-`, `_` or `.`, \
             beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Label keys the kubelet may set on its own node in the reserved
/// namespaces (Kubernetes' `kubeletapis.KubeletLabels` and namespaces).
const KUBELET_LABELS: [&str; 9] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const KUBELET_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

fn label_key(key: &str) -> Result<(), String> {
    qualified_name(key)?;
    let Some((prefix, _)) = key.split_once('/') else {
        return Ok(());
    };
    let under = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    let reserved = under("kubernetes.io") || under("k8s.io");
    let allowed = KUBELET_LABELS.contains(&key) || KUBELET_NAMESPACES.iter().any(|ns| under(ns));
    if reserved && !allowed {
        return Err(format!(
            "the kubelet refuses to start with a label of its own in the \
             {prefix} namespace (only the node.kubernetes.io and \
             kubelet.kubernetes.io ones); set it later with `kubectl label node`"
        ));
    }
    Ok(())
}

fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "the value {value:?} must be empty or 1 to 63 letters, digits, `-`, `_` \
             or `.`, beginning and ending with a letter or digit"
        ))
    }
}

/// The resolved `k3s:` section.
#[derive(Debug, Clone)]
pub struct K3s {
    pub version: K3sVersion,
    /// In the profile's order; the first initialises the cluster.
    pub servers: Vec<Hostname>,
    pub agents: Vec<Hostname>,
    pub token: K3sToken,
    pub tls_san: Vec<TlsSan>,
    /// Names of `COMPONENTS`.
    pub disable: Vec<String>,
    pub cluster_cidr: Ipv4Cidr,
    pub service_cidr: Ipv4Cidr,
    pub airgap_images: bool,
}

/// The cluster's join secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum K3sToken {
    Known(String),
    /// `generate: true` (the default): kept in the state directory.
    Generated,
}

/// What a node is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum K3sRole {
    /// The first server: `cluster-init`, the others join it.
    FirstServer,
    Server,
    Agent,
}

impl K3sRole {
    pub fn is_server(self) -> bool {
        matches!(self, Self::FirstServer | Self::Server)
    }

    /// `server` or `agent`, as the status file says.
    pub fn name(self) -> &'static str {
        if self.is_server() { "server" } else { "agent" }
    }
}

impl K3s {
    /// The role of the node called `host`, if it is in the cluster.
    pub fn role(&self, host: &Hostname) -> Option<K3sRole> {
        match self.servers.iter().position(|s| s == host) {
            Some(0) => Some(K3sRole::FirstServer),
            Some(_) => Some(K3sRole::Server),
            None => self.agents.contains(host).then_some(K3sRole::Agent),
        }
    }
}

/// The architecture a node's k3s binary is built for: the node's `arch`
/// (arm64 on every board; a VM may be amd64).
pub fn node_arch(node: &ResolvedNode) -> K3sArch {
    match node.arch {
        crate::profile::platform::Arch::Amd64 => K3sArch::Amd64,
        crate::profile::platform::Arch::Arm64 => K3sArch::Arm64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_kubernetes_syntax_and_the_kubelet_namespace_rule() {
        for ok in [
            "role=storage",
            "example.com/disk=ssd",
            "empty=",
            "node.kubernetes.io/exclude-from-external-load-balancers=true",
            "topology.kubernetes.io/zone=rack-1",
            "a.b_c-d=E.f",
        ] {
            let l = NodeLabel::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(l.as_str(), ok);
        }
        assert_eq!(
            NodeLabel::parse("example.com/disk=ssd").unwrap().key(),
            "example.com/disk"
        );
        for bad in [
            "role",
            "=x",
            "-role=x",
            "role=x y",
            "Example.com/disk=ssd",
            "role=-x",
            "node-role.kubernetes.io/worker=true",
            "k8s.io/x=1",
        ] {
            assert!(NodeLabel::parse(bad).is_err(), "{bad}");
        }
        let long = format!("k={}", "a".repeat(64));
        assert!(NodeLabel::parse(&long).is_err());
    }

    #[test]
    fn taints_need_a_known_effect() {
        let t = NodeTaint::parse("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(t.key(), "dedicated");
        assert_eq!(t.effect, TaintEffect::NoSchedule);
        assert_eq!(
            NodeTaint::parse("node-role.kubernetes.io/control-plane:NoExecute")
                .unwrap()
                .effect,
            TaintEffect::NoExecute
        );
        for bad in [
            "dedicated=gpu",
            "dedicated=gpu:noschedule",
            "dedicated=gpu:Never",
            ":NoSchedule",
            "a b:NoSchedule",
        ] {
            assert!(NodeTaint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_sans_are_addresses_or_names() {
        assert_eq!(
            TlsSan::parse("10.0.0.5").unwrap(),
            TlsSan::Ip("10.0.0.5".parse().unwrap())
        );
        assert!(matches!(
            TlsSan::parse("k8s.lab.home.arpa").unwrap(),
            TlsSan::Name(_)
        ));
        assert!(TlsSan::parse("not a name").is_err());
    }
}
