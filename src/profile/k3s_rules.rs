//! The rules of the `k3s:` section against the nodes, checked by `check`
//! and every command that resolves a profile: one cluster kind per
//! profile, an etcd quorum that can hold a majority, every node in
//! exactly one role, address ranges that do not cover the LAN, a release
//! that publishes the nodes' architecture, and labels/taints only where
//! there is a cluster to apply them. Each problem names the field it is
//! about, so `locate` points it at the value's line and column.

use std::collections::BTreeMap;

use crate::k3s::{K3sArch, K3sVersion};
use crate::profile::hint;
use crate::profile::hostname::Hostname;
use crate::profile::k3s::{
    COMPONENTS, DEFAULT_CLUSTER_CIDR, DEFAULT_SERVICE_CIDR, K3s, K3sSpec, K3sToken, node_arch,
};
use crate::profile::net::Ipv4Cidr;
use crate::profile::problem::Report;
use crate::profile::resolve::{Context, SecretValue, read_secret_plain};
use crate::profile::resolved::ResolvedNode;

/// Checks `spec` against `nodes`. `all_resolved` is false when some node
/// failed to resolve: membership rules are then skipped (a node missing
/// from the list would be noise). `microcloud` says the profile also has a
/// `microcloud:` section.
pub fn check(
    spec: &K3sSpec,
    nodes: &[ResolvedNode],
    all_resolved: bool,
    microcloud: bool,
    ctx: &Context<'_>,
    report: &mut Report,
) -> Option<K3s> {
    let before = report.errors.len();
    if microcloud {
        report.error(
            None,
            "k3s",
            "a profile sets up one kind of cluster: k3s or microcloud, not both",
        );
    }
    let agents = roles(spec, nodes, all_resolved, report);
    let token = token(spec, ctx, report);
    let disable = disabled(spec, report);
    let cluster_cidr = range(
        spec.cluster_cidr,
        DEFAULT_CLUSTER_CIDR,
        "cluster_cidr",
        report,
    );
    let service_cidr = range(
        spec.service_cidr,
        DEFAULT_SERVICE_CIDR,
        "service_cidr",
        report,
    );
    overlaps(spec, cluster_cidr, service_cidr, nodes, report);
    // One message for the version: every node of one architecture has it.
    if let Some(why) = nodes
        .iter()
        .find_map(|n| unpublished(&spec.version, node_arch(n), n.hostname.as_str()))
    {
        report.error(None, "k3s.version", why);
    }
    if report.errors.len() > before {
        return None;
    }
    Some(K3s {
        version: spec.version.clone(),
        servers: spec.servers.clone(),
        agents,
        token: token?,
        tls_san: spec.tls_san.clone(),
        disable,
        cluster_cidr,
        service_cidr,
        airgap_images: spec.airgap_images,
    })
}

/// Why `version` cannot run on node `host` of architecture `arch`, if it
/// publishes no binary for it.
fn unpublished(version: &K3sVersion, arch: K3sArch, host: &str) -> Option<String> {
    let published = version.arches();
    (!published.contains(&arch)).then(|| {
        format!(
            "k3s {version} publishes no {arch} binary (node {host} is {arch}); it has {}",
            published
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `node_labels` / `node_taints` on a node of a profile without `k3s:`.
pub fn labels_without_k3s(nodes: &[ResolvedNode], report: &mut Report) {
    for n in nodes {
        for (field, set) in [
            ("node_labels", !n.node_labels.is_empty()),
            ("node_taints", !n.node_taints.is_empty()),
        ] {
            if set {
                report.error(
                    Some(n.hostname.as_str()),
                    field,
                    "there is no k3s section to apply it to: add `k3s:` or remove it",
                );
            }
        }
    }
}

/// Duplicate label and taint keys on one node: the kubelet keeps one of
/// them silently.
pub fn duplicate_keys(node: &ResolvedNode, report: &mut Report) {
    let name = Some(node.hostname.as_str());
    let mut seen = BTreeMap::new();
    for (i, l) in node.node_labels.iter().enumerate() {
        if let Some(first) = seen.insert(l.key(), i) {
            report.error(
                name,
                format!("node_labels[{i}]"),
                format!("the key {} is already set by node_labels[{first}]", l.key()),
            );
        }
    }
    let mut seen = BTreeMap::new();
    for (i, t) in node.node_taints.iter().enumerate() {
        if let Some(first) = seen.insert((t.key(), t.effect), i) {
            report.error(
                name,
                format!("node_taints[{i}]"),
                format!(
                    "the key {} with this effect is already set by node_taints[{first}]",
                    t.key()
                ),
            );
        }
    }
}

/// Checks the server and agent lists and returns the agents.
fn roles(
    spec: &K3sSpec,
    nodes: &[ResolvedNode],
    all_resolved: bool,
    report: &mut Report,
) -> Vec<Hostname> {
    let n = spec.servers.len();
    if n == 0 {
        report.error(None, "k3s.servers", "list at least one server");
    } else if n.is_multiple_of(2) {
        report.error(
            None,
            "k3s.servers",
            format!(
                "{n} servers: embedded etcd needs a majority: 1, 3 or 5 servers \
                 (an even number tolerates no more failures than one fewer)"
            ),
        );
    }
    let known = |h: &Hostname| nodes.iter().any(|n| &n.hostname == h);
    let mut listed: BTreeMap<&Hostname, String> = BTreeMap::new();
    let lists = [
        ("servers", Some(&spec.servers)),
        ("agents", spec.agents.as_ref()),
    ];
    for (list, names) in lists {
        for (i, h) in names.into_iter().flatten().enumerate() {
            let field = format!("k3s.{list}[{i}]");
            if all_resolved && !known(h) {
                report.error(None, &field, format!("{h} is not a node of this profile"));
            } else if let Some(was) = listed.get(h) {
                report.error(None, &field, format!("{h} is already listed in k3s.{was}"));
            } else {
                listed.insert(h, format!("{list}[{i}]"));
            }
        }
    }
    match &spec.agents {
        None => nodes
            .iter()
            .map(|n| n.hostname.clone())
            .filter(|h| !spec.servers.contains(h))
            .collect(),
        Some(agents) => {
            if all_resolved {
                for n in nodes.iter().filter(|n| !listed.contains_key(&n.hostname)) {
                    report.error(
                        None,
                        "k3s.agents",
                        format!(
                            "node {} is in neither k3s.servers nor k3s.agents: with \
                             `agents:` every node must be in one of them",
                            n.hostname
                        ),
                    );
                }
            }
            agents.clone()
        }
    }
}

fn token(spec: &K3sSpec, ctx: &Context<'_>, report: &mut Report) -> Option<K3sToken> {
    let Some(secret) = &spec.token else {
        return Some(K3sToken::Generated);
    };
    let field = "k3s.token";
    match read_secret_plain(secret, true, ctx) {
        Ok(SecretValue::Generated) => Some(K3sToken::Generated),
        Ok(SecretValue::Text(t)) if t.is_empty() => {
            report.error(None, field, "the token is empty");
            None
        }
        // The token is written as one YAML scalar and passed on k3s's
        // command line of joiners; `:` separates the parts of a full token
        // (K10<ca hash>::server:<secret>), so a secret holding one would be
        // misread.
        Ok(SecretValue::Text(t)) if !t.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {
            report.error(
                None,
                field,
                "a token is printable ASCII without spaces or `:`",
            );
            None
        }
        Ok(SecretValue::Text(t)) => Some(K3sToken::Known(t)),
        Err(msg) => {
            report.error(None, field, msg);
            None
        }
    }
}

fn disabled(spec: &K3sSpec, report: &mut Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, name) in spec.disable.iter().enumerate() {
        let field = format!("k3s.disable[{i}]");
        if !COMPONENTS.contains(&name.as_str()) {
            report.error_with_hint(
                None,
                field,
                format!(
                    "{name:?} is not a packaged component of k3s ({})",
                    COMPONENTS.join(", ")
                ),
                hint::closest(name, &COMPONENTS).map(|s| format!("did you mean {s}?")),
            );
        } else if out.contains(name) {
            report.error(None, field, format!("{name} is listed twice"));
        } else {
            out.push(name.clone());
        }
    }
    out
}

/// The range as given (a network address, not a host in it) or k3s's default.
fn range(given: Option<Ipv4Cidr>, default: &str, key: &str, report: &mut Report) -> Ipv4Cidr {
    match given {
        Some(c) if c != c.network() => {
            report.error(
                None,
                format!("k3s.{key}"),
                format!(
                    "{c} is not a network address; did you mean {}?",
                    c.network()
                ),
            );
            c
        }
        Some(c) => c,
        // A literal known to parse.
        None => Ipv4Cidr::parse(default).unwrap_or_else(|_| unreachable!("{default} parses")),
    }
}

fn overlap(a: Ipv4Cidr, b: Ipv4Cidr) -> bool {
    a.contains(b.network().addr()) || b.contains(a.network().addr())
}

/// Pod and service addresses are routed inside the cluster: a range that
/// covers the LAN makes the nodes unreachable from their own pods.
fn overlaps(
    spec: &K3sSpec,
    cluster: Ipv4Cidr,
    service: Ipv4Cidr,
    nodes: &[ResolvedNode],
    report: &mut Report,
) {
    if overlap(cluster, service) {
        let field = if spec.service_cidr.is_some() {
            "k3s.service_cidr"
        } else {
            "k3s.cluster_cidr"
        };
        report.error(
            None,
            field,
            format!(
                "the pod range {} (cluster_cidr) and the service range {} \
                 (service_cidr) overlap",
                cluster.network(),
                service.network()
            ),
        );
    }
    for (key, range, given) in [
        ("cluster_cidr", cluster, spec.cluster_cidr.is_some()),
        ("service_cidr", service, spec.service_cidr.is_some()),
    ] {
        let mut reported = Vec::new();
        for n in nodes {
            let lan = n.network.address.network();
            if overlap(range, lan) && !reported.contains(&lan) {
                reported.push(lan);
                let what = if given { "" } else { " (k3s's default)" };
                let msg = format!(
                    "{}{what} overlaps the LAN {lan} of node {}: set k3s.{key} to a \
                     range the LAN does not use",
                    range.network(),
                    n.hostname
                );
                if given {
                    report.error(None, format!("k3s.{key}"), msg);
                } else {
                    report.error(None, "k3s", msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_architecture_the_release_does_not_publish_is_named() {
        // k3s published s390x binaries from v1.22.10 to v1.28.4+k3s1 only.
        let new = K3sVersion::parse("v1.31.4+k3s1").unwrap();
        let why = unpublished(&new, K3sArch::S390x, "z1").expect("refused");
        assert!(
            why.contains("k3s v1.31.4+k3s1 publishes no s390x binary (node z1 is s390x)"),
            "{why}"
        );
        assert!(why.ends_with("it has amd64, arm64, arm"), "{why}");
        assert_eq!(unpublished(&new, K3sArch::Arm64, "pi1"), None);
        let old = K3sVersion::parse("v1.25.3+k3s1").unwrap();
        assert_eq!(unpublished(&old, K3sArch::S390x, "z1"), None);
    }
}
