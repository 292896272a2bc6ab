//! `serve`: netboot the profile's `netboot:` nodes from this machine.
//! The nodes go through the build pipeline (base fetched and checked,
//! state saved, files rendered and patched into memory over the base, no
//! `.img` written); `netboot::serve` then runs the servers until Ctrl-C.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};

use super::GlobalArgs;
use crate::cli::ServeArgs;
use crate::netboot::boot_files::{BootNode, Watched, boot_partition};
use crate::netboot::disk::Disk;
use crate::netboot::http::Tokens;
use crate::netboot::ports::Ports;
use crate::netboot::registry::{NodeId, Registry};
use crate::netboot::serve::{Served, Setup};
use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::progress::Progress;

pub fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    // Installed first: a Ctrl-C while the nodes are prepared stops the
    // servers before they start, not the process midway.
    let stop = super::interrupt_flag()?;
    let resolved = super::profile_cmds::load_and_resolve(&global.profile)?;
    let cluster = &resolved.cluster;
    if args.status_only {
        return status_only(args, cluster, &stop);
    }
    let nodes = select(cluster, &args.node)?;
    for r in &args.reset {
        if !nodes.iter().any(|n| n.hostname.as_str() == r) {
            bail!(
                "--reset {r}: not one of the nodes served ({})",
                names(&nodes).join(", ")
            );
        }
    }
    let setup = setup(args, &nodes)?;
    let (address, ports) = (setup.address, setup.ports);
    for n in &nodes {
        if let Some(server) = n.netboot.as_ref().and_then(|nb| nb.server)
            && server != address
        {
            super::say::warning(format_args!(
                "node {}: the profile's netboot.server is {server}, but this \
                 machine serves as {address}; cmdline.txt is served with {address}",
                n.hostname
            ));
        }
    }

    crate::netboot::serve::check_ports(&setup, false)?;

    let progress = Progress::for_stderr(global.quiet);
    let names = names(&nodes);
    let prepared = super::build_cmds::prepare_fetched(
        global,
        &args.fetch,
        cluster,
        &names,
        &args.out,
        &progress,
    )?;

    let delta_dir = args.out.join("netboot");
    let mut served = Vec::new();
    let mut ids = Vec::new();
    for plan in &prepared.plan.nodes {
        let node = cluster
            .node(&plan.name)
            .ok_or_else(|| anyhow!("node {} is not in the profile", plan.name))?;
        super::say::line(format_args!(
            "{}: laying its files over {}",
            plan.name,
            base_name(plan)
        ));
        let nd = crate::netboot::prepare::node_disk(node, plan, prepared.plan.epoch)?;
        let reset = args.reset.contains(&plan.name);
        let delta = crate::netboot::delta::Delta::open(crate::netboot::delta::DeltaSpec {
            dir: &delta_dir,
            node: &plan.name,
            lower: nd.lower.clone(),
            size: nd.lower.size(),
            identity: &nd.fingerprint,
            reset,
        })?;
        if reset {
            super::say::line(format_args!(
                "{}: its disk starts from the image again (--reset)",
                plan.name
            ));
        }
        let disk: Arc<dyn Disk> = Arc::new(delta);
        let boot = boot_partition(&plan.name, &disk)?;
        let watched = Arc::new(Watched::new(disk, boot));
        let netboot = node.netboot.as_ref();
        let boot_node = BootNode::new(
            &plan.name,
            &watched,
            boot,
            crate::netboot::prepare::cmdline_ops(node, address, ports.nbd),
        )?;
        crate::netboot::prepare::check_initrd(&boot_node)?;
        ids.push(NodeId {
            serial: netboot.and_then(|nb| nb.serial),
            ..plain_id(node)
        });
        served.push(Served {
            disk: watched,
            boot: boot_node,
        });
    }
    // Nodes that boot from their own disks but report to this server.
    for n in cluster.nodes.iter().filter(|n| n.status_url.is_some()) {
        if !ids.iter().any(|id| id.name == n.hostname.as_str()) {
            ids.push(plain_id(n));
        }
    }
    let tokens = load_tokens(cluster, &ids)?;
    let registry = Arc::new(Registry::new(ids));
    super::say::line(format_args!(
        "serving {} on {address}: ProxyDHCP port {}, TFTP port {}, NBD port {}, status page \
         http://{address}:{}/; disk writes in {}; Ctrl-C stops",
        names.join(", "),
        ports.dhcp,
        ports.tftp,
        ports.nbd,
        ports.http,
        delta_dir.display()
    ));
    crate::netboot::serve::run(&setup, served, registry, tokens, &stop)?;
    super::say::line(format_args!("stopped"));
    Ok(())
}

/// `--status-only`: the HTTP status server for every node whose profile
/// names a `status_url`, with the tokens `build` made.
fn status_only(args: &ServeArgs, cluster: &Cluster, stop: &AtomicBool) -> Result<()> {
    let ids: Vec<NodeId> = cluster
        .nodes
        .iter()
        .filter(|n| {
            n.status_url.is_some()
                && (args.node.is_empty() || args.node.contains(&n.hostname.as_str().to_string()))
        })
        .map(plain_id)
        .collect();
    if ids.is_empty() {
        bail!(
            "no node of the profile has a `status_url`, so none reports to a status server \
             (docs/PROFILE.md)"
        );
    }
    let nodes: Vec<&ResolvedNode> = cluster.nodes.iter().collect();
    let setup = setup(args, &nodes)?;
    let (address, ports) = (setup.address, setup.ports);
    crate::netboot::serve::check_ports(&setup, true)?;
    let tokens = load_tokens(cluster, &ids)?;
    let names: Vec<&str> = ids.iter().map(|i| i.name.as_str()).collect();
    super::say::line(format_args!(
        "status page for {} on http://{address}:{}/; Ctrl-C stops",
        names.join(", "),
        ports.http
    ));
    let registry = Arc::new(Registry::new(ids));
    crate::netboot::serve::run(&setup, Vec::new(), registry, tokens, stop)?;
    super::say::line(format_args!("stopped"));
    Ok(())
}

/// Where to serve: the ports with `--port-base`, and `--address`, else
/// the address this machine reaches the first of `nodes` from.
fn setup(args: &ServeArgs, nodes: &[&ResolvedNode]) -> Result<Setup> {
    let ports = Ports::with_base(args.port_base)
        .ok_or_else(|| anyhow!("--port-base {}: the ports would pass 65535", args.port_base))?;
    let address = match args.address {
        Some(a) => a,
        None => own_address(args.interface.as_deref(), nodes)?,
    };
    Ok(Setup {
        address,
        interface: args.interface.clone(),
        ports,
        any: args.any,
    })
}

/// A node known by name and address only (it boots from its own disk).
fn plain_id(n: &ResolvedNode) -> NodeId {
    NodeId {
        name: n.hostname.as_str().to_string(),
        serial: None,
        mac: n.network.mac,
        address: Some(n.network.address.addr()),
    }
}

/// The status tokens `build` made for the nodes that report; a node
/// without one is named (its reports will be refused).
fn load_tokens(cluster: &Cluster, ids: &[NodeId]) -> Result<Tokens> {
    let reporting: Vec<&str> = ids
        .iter()
        .filter(|id| {
            cluster
                .node(&id.name)
                .is_some_and(|n| n.status_url.is_some())
        })
        .map(|id| id.name.as_str())
        .collect();
    let tokens =
        Tokens::load(&cluster.state_dir, reporting.iter().copied()).with_context(|| {
            format!(
                "reading the status tokens in {}",
                cluster.state_dir.display()
            )
        })?;
    for n in tokens.missing(reporting.iter().copied()) {
        super::say::warning(format_args!(
            "node {n}: no status token in {} yet (`build` makes it), so its \
             reports will be refused",
            cluster.state_dir.display()
        ));
    }
    Ok(tokens)
}

/// The netboot nodes to serve: those named, or every one with `netboot:`.
fn select<'a>(cluster: &'a Cluster, wanted: &[String]) -> Result<Vec<&'a ResolvedNode>> {
    if wanted.is_empty() {
        let all: Vec<&ResolvedNode> = cluster
            .nodes
            .iter()
            .filter(|n| n.netboot.is_some())
            .collect();
        if all.is_empty() {
            bail!(
                "no node of the profile has `netboot:`; add `netboot: {{serial: …}}` to the \
                 nodes that boot from the network (docs/NETBOOT.md)"
            );
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for w in wanted {
        let n = cluster.node(w).ok_or_else(|| {
            anyhow!(
                "--node {w}: no such node in the profile (nodes: {})",
                cluster
                    .nodes
                    .iter()
                    .map(|n| n.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if n.netboot.is_none() {
            bail!(
                "--node {w}: the node has no `netboot:` in the profile, so it boots from its own disk"
            );
        }
        if !out.iter().any(|o: &&ResolvedNode| o.hostname == n.hostname) {
            out.push(n);
        }
    }
    Ok(out)
}

fn names(nodes: &[&ResolvedNode]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.hostname.as_str().to_string())
        .collect()
}

fn base_name(plan: &crate::build::plan::NodePlan) -> String {
    plan.base_path
        .as_ref()
        .map_or_else(|| "its base".into(), |p| p.display().to_string())
}

/// The address this machine serves as: the one the kernel would send
/// from towards the first node (no packet is sent: a UDP `connect` only
/// picks the route), on `interface` when given.
fn own_address(interface: Option<&str>, nodes: &[&ResolvedNode]) -> Result<Ipv4Addr> {
    let target = nodes
        .first()
        .map(|n| n.network.address.addr())
        .ok_or_else(|| anyhow!("no node to serve"))?;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("opening a UDP socket")?;
    if let Some(ifname) = interface {
        bind_to_device(&sock, ifname)?;
    }
    sock.connect((target, 9)).with_context(|| {
        format!("this machine has no route to {target}; give --address or --interface")
    })?;
    match sock
        .local_addr()
        .context("reading the route's source address")?
        .ip()
    {
        std::net::IpAddr::V4(a) if !a.is_unspecified() => Ok(a),
        other => bail!("no IPv4 address to reach {target} from (got {other}); give --address"),
    }
}

/// Ties `sock` to `ifname` (SO_BINDTODEVICE), so its route leaves there.
fn bind_to_device(sock: &UdpSocket, ifname: &str) -> Result<()> {
    socket2::SockRef::from(sock)
        .bind_device(Some(ifname.as_bytes()))
        .with_context(|| format!("--interface {ifname}: cannot use it"))
}
