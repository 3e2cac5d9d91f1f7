//! berthd: the berth daemon and the only writer of berth's state. It opens the store under
//! --data-root, reconciles the kernel with it, and serves the HTTP+JSON API on a unix socket
//! until SIGTERM or SIGINT; networks and sandboxes stay in the kernel and the store across a
//! restart.

mod api;
mod docker;
mod rootless;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_firewall::FirewallKind;
use clap::Parser;
use ipnet::IpNet;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use berth_core::controller::{self, Backends, Controller, DaemonSettings, DefaultNetwork, Paths};
use berth_core::ports;

#[derive(Debug, Parser)]
#[command(name = "berthd", version, about = "berth daemon: container networking for Linux")]
struct Args {
    /// Where persistent state lives [default: /var/lib/berth; rootless: $XDG_DATA_HOME/berth]
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Where runtime files live (pinned namespaces, sandbox files) [default: /run/berth;
    /// rootless: $XDG_RUNTIME_DIR/berth]
    #[arg(long)]
    exec_root: Option<PathBuf>,
    /// The API's unix socket, created mode 0660 [default: berth.sock in the exec root]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Run rootless: as an ordinary user, in user, network and mount namespaces of its own
    /// (the default when started by a user other than root; refused for root).
    #[arg(long)]
    rootless: bool,
    /// Rootless: let sandboxes reach the user's 127.0.0.1 (as 10.0.2.2), which slirp4netns
    /// closes by default.
    #[arg(long)]
    rootless_host_loopback: bool,
    /// error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Subnet of the default network `bridge` when berthd creates it.
    #[arg(long, default_value = "172.17.0.0/16")]
    bridge_subnet: IpNet,
    /// Do not create the default network `bridge`.
    #[arg(long)]
    no_default_network: bool,
    /// Firewall backend for NAT, published ports and isolation: nftables or none.
    #[arg(long, default_value = "nftables")]
    firewall: FirewallKind,
    /// Serve host-loopback (and IPv6-to-IPv4) access to published ports with berth-proxy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    userland_proxy: bool,
    /// Serve published ports on every host address with the userland proxy only, with no
    /// kernel DNAT (for hosts where berth must not write NAT rules for them; sandboxes then see
    /// the proxy, not the client, as the source).
    #[arg(long)]
    userland_proxy_only: bool,
    /// The berth-proxy binary (default: next to berthd's own).
    #[arg(long)]
    userland_proxy_path: Option<PathBuf>,
    /// Upstream resolver for names that are not berth's (repeatable), and the nameserver of
    /// sandboxes without the embedded resolver (the default network); default: the nameservers
    /// of the host's /etc/resolv.conf, followed when it changes.
    #[arg(long = "dns", value_name = "IP")]
    dns: Vec<IpAddr>,
    /// Where networks created without a subnet get one (repeatable, either family; Docker's
    /// flag): base=CIDR,size=PREFIXLEN. A family given none keeps the defaults: Docker's
    /// 172.17-31.0.0/16 and 192.168.0.0/16 in /20s for IPv4, a unique local /48 in /64s for IPv6.
    #[arg(long = "default-address-pool", value_name = "base=CIDR,size=N")]
    default_address_pool: Vec<berth_ipam::SubnetPool>,
}

/// How often berthd checks that the userland proxy is alive.
const PROXY_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How long after an nftables change event the ruleset is checked (events come in bursts).
const FIREWALL_CHECK_DELAY: Duration = Duration::from_millis(100);

/// How often the host's /etc/resolv.conf is checked for new upstream resolvers.
const RESOLV_CONF_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often `--rm` sandboxes are checked for a finished main process.
const AUTO_REMOVE_INTERVAL: Duration = Duration::from_millis(500);

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match start(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// Picks the mode: the rootless child (started by a rootless parent), the rootless parent (an
/// ordinary user, or `--rootless`), or the rootful daemon. Runs while the process has one
/// thread, as making a user namespace requires. Returns the exit code.
fn start(args: Args) -> anyhow::Result<i32> {
    if let Some(child) = berth_sys::userns::ChildEnd::from_env() {
        let service = child?.enter().context("cannot enter the rootless child's namespaces")?;
        return serve(args, Some(service));
    }
    let is_root = nix::unistd::Uid::effective().is_root();
    if args.rootless && is_root {
        bail!("berthd --rootless runs as the user who is to own it, not as root: start it as that user");
    }
    if is_root {
        return serve(args, None);
    }
    if !args.userland_proxy {
        bail!("a rootless berthd publishes ports through its userland proxy: --userland-proxy=false cannot be used rootless");
    }
    let user = rootless::check()?;
    let dirs = rootless::UserDirs::from_env()?;
    // The child gets every path explicitly: it resolves nothing from the user's environment.
    let mut child_args: Vec<String> = std::env::args().skip(1).collect();
    let exec_root = args.exec_root.clone().unwrap_or(dirs.exec_root);
    for (flag, given, default) in [
        ("--data-root", &args.data_root, dirs.data_root),
        ("--exec-root", &args.exec_root, exec_root.clone()),
        ("--socket", &args.socket, exec_root.join("berth.sock")),
    ] {
        if given.is_none() {
            child_args.extend([flag.to_owned(), default.display().to_string()]);
        }
    }
    rootless::run_parent(user, child_args, args.rootless_host_loopback)
}

/// Runs the daemon until SIGTERM or SIGINT: rootful, or as the rootless child when it has the
/// socket to its parent, which binds published ports in the user's namespace.
fn serve(args: Args, parent: Option<std::os::fd::OwnedFd>) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args, parent))?;
    Ok(0)
}

async fn run(args: Args, parent: Option<std::os::fd::OwnedFd>) -> anyhow::Result<()> {
    let rootless = api::Rootless(parent.is_some());
    let data_root = args.data_root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let exec_root = args.exec_root.clone().unwrap_or_else(|| PathBuf::from("/run/berth"));
    let socket = args.socket.clone().unwrap_or_else(|| exec_root.join("berth.sock"));
    if args.userland_proxy_only && !args.userland_proxy {
        bail!("--userland-proxy-only needs the userland proxy (--userland-proxy=true)");
    }
    // A socket per published host port and family: lift the soft limit, as Docker does.
    match berth_sys::limits::raise_open_file_limit() {
        Ok(limit) => tracing::debug!("open file limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    std::fs::create_dir_all(&data_root).with_context(|| format!("cannot create data root {}", data_root.display()))?;
    let store = berth_store::Store::open(&data_root.join("state.redb"))?;
    let default_network = (!args.no_default_network).then_some(DefaultNetwork { subnet: args.bridge_subnet });
    // Subscribe before reconciling, so no change between the two goes unseen.
    let firewall_changes = match args.firewall {
        FirewallKind::None => None,
        _ => Some(berth_firewall::watch_changes().context("cannot watch nftables for changes")?),
    };
    let firewall = berth_firewall::select(args.firewall);
    let proxy = if args.userland_proxy {
        let binary = match args.userland_proxy_path {
            Some(path) => path,
            None => std::env::current_exe()?.with_file_name("berth-proxy"),
        };
        std::fs::create_dir_all(&exec_root)?;
        Some(tokio::task::block_in_place(|| ports::ProxyClient::connect_or_start(&binary, &exec_root))?)
    } else {
        None
    };
    let proxied = proxy.is_some();
    let resolver = berth_dns::Resolver::new(berth_dns::server::ResolverConfig::default())?;
    // Kept until berthd stops: dropping the handle would not stop the watch, aborting it does.
    let _resolv_conf_watch = if args.dns.is_empty() {
        let resolver = resolver.clone();
        let resolv_conf = if rootless.0 { rootless::upstream_resolv_conf() } else { PathBuf::from("/etc/resolv.conf") };
        let source = resolv_conf.display().to_string();
        Some(berth_dns::upstreams::watch_resolv_conf(resolv_conf, RESOLV_CONF_CHECK_INTERVAL, move |conf| {
            tracing::info!(upstreams = ?conf.nameservers, "upstream resolvers from {source}");
            resolver.set_upstreams(conf.nameservers);
        }))
    } else {
        resolver.set_upstreams(controller::upstreams_of(&args.dns));
        None
    };
    let paths = Paths::new(&data_root, &exec_root);
    berth_sys::netns::prepare_netns_dir(&paths.netns_dir)?;
    let controller = Arc::new(
        Controller::start(
            store,
            paths,
            match parent {
                Some(parent) => Backends::rootless(firewall, parent)?,
                None => Backends::root(firewall)?,
            },
            proxy,
            resolver,
            default_network,
            DaemonSettings {
                // Rootless, clients arrive in the user's namespace, where the kernel of the
                // child's cannot DNAT them: the proxy serves every published port.
                userland_proxy_only: args.userland_proxy_only || rootless.0,
                dns_servers: args.dns.clone(),
                address_pools: args.default_address_pool.clone(),
            },
        )
        .await
        .context("cannot start")?,
    );
    if proxied {
        let controller = controller.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROXY_CHECK_INTERVAL);
            loop {
                tick.tick().await;
                controller.keep_ports_alive().await;
            }
        });
    }
    if let Some(mut changes) = firewall_changes {
        let controller = controller.clone();
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                tokio::time::sleep(FIREWALL_CHECK_DELAY).await;
                while changes.try_recv().is_ok() {}
                controller.heal_firewall().await;
            }
        });
    }
    let listener = bind_socket(&socket).await?;
    tracing::info!(socket = %socket.display(), "berthd ready");

    let reaper = tokio::spawn({
        let controller = controller.clone();
        async move {
            let mut tick = tokio::time::interval(AUTO_REMOVE_INTERVAL);
            loop {
                tick.tick().await;
                controller.remove_finished_sandboxes().await;
            }
        }
    });
    let served = axum::serve(
        listener,
        api::router(controller.clone(), rootless).into_make_service_with_connect_info::<api::Caller>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Open event streams would otherwise keep the server waiting for their clients.
        controller.end_event_streams();
    })
    .await;
    reaper.abort();
    let _ = std::fs::remove_file(&socket);
    served.context("api server failed")?;
    tracing::info!("berthd stopped; networks and sandboxes stay in place");
    Ok(())
}

/// Binds the API socket, refusing to take over one another daemon still serves.
async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("another berthd already serves {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
