//! `serve` as a library call: the prepared nodes go in, the servers run on
//! one tokio runtime until the stop flag is set (SIGINT/SIGTERM in the
//! command), then every node's disk is flushed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::boot_files::{BootFiles, BootNode, Watched};
use super::disk::Disk;
use super::http::{self, Tokens};
use super::nbd::{self, ProfileExports};
use super::ports::Ports;
use super::proxydhcp;
use super::registry::Registry;
use super::tftp;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct Setup {
    pub address: Ipv4Addr,
    pub interface: Option<String>,
    pub ports: Ports,
    /// Clients not in the profile are answered too.
    pub any: bool,
}

/// One node as the servers see it.
pub struct Served {
    /// The node's disk (its delta over the lower layer), watched for
    /// writes into the boot partition.
    pub disk: Arc<Watched>,
    pub boot: BootNode,
}

/// Why a bind failed, said so the user knows what to do.
pub fn bind_error(what: &str, addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            ": port {} needs root or CAP_NET_BIND_SERVICE (or use --port-base to move \
             every port above 1024)",
            addr.port()
        ),
        std::io::ErrorKind::AddrInUse => {
            format!(": another program listens on port {}", addr.port())
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!(": {} is not an address of this machine", addr.ip())
        }
        _ => String::new(),
    };
    anyhow!("{what}: cannot listen on {addr}: {e}{hint}")
}

/// Binds and starts ProxyDHCP, TFTP and NBD.
async fn spawn_netboot(
    setup: &Setup,
    tasks: &mut tokio::task::JoinSet<Result<()>>,
    files: Arc<BootFiles>,
    exports: &Arc<ProfileExports>,
    registry: &Arc<Registry>,
) -> Result<()> {
    let ip = IpAddr::V4(setup.address);
    let tftp_addr = SocketAddr::new(ip, setup.ports.tftp);
    let tftp = tftp::Server::bind(tftp_addr, files, tftp::Config::default())
        .await
        .map_err(|e| bind_error("TFTP", tftp_addr, &e))?;
    tracing::info!("TFTP on {}", tftp.local_addr()?);
    let nbd = nbd::Server::bind(ip, setup.ports.nbd, nbd::Config::default())
        .await
        .map_err(|e| anyhow!("NBD: {e}"))?;
    tracing::info!("NBD on {}", nbd.local_addr()?);
    let dhcp =
        proxydhcp::ProxyDhcp::bind(setup.address, setup.ports.dhcp, setup.interface.as_deref())
            .map_err(|e| anyhow!("ProxyDHCP: {e}"))?;
    tracing::info!("ProxyDHCP on port {}", setup.ports.dhcp);
    let dhcp_config = proxydhcp::Config {
        any: setup.any,
        client_port: setup.ports.dhcp + 1,
    };
    let reg = Arc::clone(registry);
    tasks.spawn(async move { dhcp.run(reg, dhcp_config).await.context("ProxyDHCP") });
    tasks.spawn(async move { tftp.run().await.context("TFTP") });
    let (ex, reg) = (
        Arc::clone(exports) as Arc<dyn nbd::Exports>,
        Arc::clone(registry),
    );
    tasks.spawn(async move { nbd.run(ex, reg).await.context("NBD") });
    Ok(())
}

/// Tries every port `serve` will listen on, so a port it may not use
/// (below 1024 without the right, or taken) stops it before the bases are
/// fetched and the nodes prepared. DHCP listens on every address (a
/// DISCOVER is a broadcast), the others on `setup.address`.
pub fn check_ports(setup: &Setup, status_only: bool) -> Result<()> {
    use std::net::{TcpListener, UdpSocket};
    let ip = IpAddr::V4(setup.address);
    let http = SocketAddr::new(ip, setup.ports.http);
    TcpListener::bind(http).map_err(|e| bind_error("HTTP", http, &e))?;
    if status_only {
        return Ok(());
    }
    let dhcp = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), setup.ports.dhcp);
    UdpSocket::bind(dhcp).map_err(|e| bind_error("ProxyDHCP", dhcp, &e))?;
    let tftp = SocketAddr::new(ip, setup.ports.tftp);
    UdpSocket::bind(tftp).map_err(|e| bind_error("TFTP", tftp, &e))?;
    let nbd = SocketAddr::new(ip, setup.ports.nbd);
    TcpListener::bind(nbd).map_err(|e| bind_error("NBD", nbd, &e))?;
    Ok(())
}

/// Serves `nodes` until `stop` is set; then flushes every disk. The HTTP
/// status server always runs; with no `nodes` (`--status-only`) it is
/// the only one.
pub fn run(
    setup: &Setup,
    nodes: Vec<Served>,
    registry: Arc<Registry>,
    tokens: Tokens,
    stop: &AtomicBool,
) -> Result<()> {
    let status_only = nodes.is_empty();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    let exports = Arc::new(ProfileExports::new(
        nodes
            .iter()
            .map(|n| (n.boot.name.clone(), Arc::clone(&n.disk) as Arc<dyn Disk>))
            .collect(),
        Arc::clone(&registry),
        setup.any,
    ));
    let boot_nodes: Vec<BootNode> = nodes.into_iter().map(|n| n.boot).collect();
    let files = Arc::new(BootFiles {
        nodes: boot_nodes,
        registry: Arc::clone(&registry),
    });
    let ip = IpAddr::V4(setup.address);
    let result = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let http =
            http::StatusServer::bind(ip, setup.ports.http).map_err(|e| anyhow!("HTTP: {e}"))?;
        tracing::info!("HTTP status page on http://{}/", http.local_addr()?);
        let reg = Arc::clone(&registry);
        tasks.spawn(async move { http.run(reg, tokens).await.context("HTTP") });
        if !status_only {
            spawn_netboot(setup, &mut tasks, files, &exports, &registry).await?;
        }
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(done)) =
                tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await
            {
                // A server ended on its own: an error on its socket.
                return done.map_err(|e| anyhow!("a server task failed: {e}"))?;
            }
        }
        tasks.abort_all();
        Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    let flush_errors: Vec<String> = exports
        .flush_all()
        .into_iter()
        .map(|(name, e)| format!("node {name}: flushing its disk: {e}"))
        .collect();
    drop(exports);
    result?;
    if !flush_errors.is_empty() {
        anyhow::bail!("{}", flush_errors.join("\n"));
    }
    Ok(())
}
