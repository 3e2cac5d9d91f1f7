//! The controller executes the API's commands as transactions: it checks the request against the
//! state, does the kernel work through the drivers, and commits the store last. When a step
//! fails, the steps already done are undone in reverse, so the kernel and the store are left as
//! they were. It is the only code that writes the store; one lock serialises all commands.

mod dns;
mod events;
mod networks;
mod ports;
mod reconcile;
mod sandboxes;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_dns::{Resolver, SandboxListener};
use berth_drivers::Drivers;
use berth_firewall::Firewall;
use berth_ipam::{default_v4_pools, default_v6_pool, AddressPool, SubnetPool};
use berth_store::Store;
use berth_types::{EndpointRecord, NetworkRecord, SandboxRecord};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::firewall::BlockingFirewall;
use crate::host::{Host, RootHost, RootlessHost};
use crate::ports::{PortTable, ProxyClient};

pub use dns::upstreams_of;
pub use events::Subscription;
pub use reconcile::DefaultNetwork;

/// Where the daemon keeps its state and runtime files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent state (`--data-root`).
    pub data_root: PathBuf,
    /// Pinned sandbox namespaces, one file per sandbox id.
    pub netns_dir: PathBuf,
    /// Per-sandbox hosts, resolv.conf and hostname files.
    pub sandboxes_dir: PathBuf,
}

impl Paths {
    pub fn new(data_root: &Path, exec_root: &Path) -> Self {
        Self {
            data_root: data_root.to_owned(),
            netns_dir: exec_root.join("netns"),
            sandboxes_dir: exec_root.join("sandboxes"),
        }
    }
}

/// The address pools of one network, one per address family it has.
#[derive(Debug, Default)]
struct NetworkPools {
    pools: Vec<AddressPool>,
}

impl NetworkPools {
    fn for_family(&mut self, v6: bool) -> Option<&mut AddressPool> {
        self.pools.iter_mut().find(|p| p.subnet().addr().is_ipv6() == v6)
    }

    fn release(&mut self, addr: IpAddr) {
        if let Some(pool) = self.for_family(addr.is_ipv6()) {
            pool.release(addr);
        }
    }
}

/// What the daemon knows: the store's records in memory plus what derives from them (address
/// pools, published ports, resolver listeners).
#[derive(Debug)]
struct State {
    networks: BTreeMap<String, NetworkRecord>,
    sandboxes: BTreeMap<String, SandboxRecord>,
    pools: HashMap<String, NetworkPools>,
    /// Every sandbox's published ports: their host sockets and the publishers serving them.
    ports: PortTable,
    /// The embedded resolver's listeners, by sandbox id.
    resolver_listeners: HashMap<String, SandboxListener>,
}

impl State {
    /// A network by exact name, full id, or unique id prefix (Docker's lookup order).
    fn network(&self, key: &str) -> Result<&NetworkRecord> {
        lookup(&self.networks, key, |n| &n.name).ok_or_else(|| Error::NotFound(format!("network {key} not found")))
    }

    fn sandbox(&self, key: &str) -> Result<&SandboxRecord> {
        lookup(&self.sandboxes, key, |s| &s.name).ok_or_else(|| Error::NotFound(format!("no such sandbox: {key}")))
    }

    fn endpoints_on<'a>(
        &'a self,
        network_id: &'a str,
    ) -> impl Iterator<Item = (&'a SandboxRecord, &'a EndpointRecord)> + 'a {
        self.sandboxes
            .values()
            .flat_map(move |s| s.endpoints.iter().filter(move |e| e.network_id == network_id).map(move |e| (s, e)))
    }

    fn subnets(&self) -> impl Iterator<Item = (&NetworkRecord, IpNet)> {
        self.networks.values().flat_map(|n| n.subnets.iter().map(move |s| (n, s.subnet)))
    }

    /// Rebuilds a network's pools from its record and the endpoints on it.
    fn rebuild_pools(&mut self, network_id: &str) -> Result<()> {
        let network = &self.networks[network_id];
        let mut pools = NetworkPools::default();
        for subnet in &network.subnets {
            pools.pools.push(AddressPool::new(subnet.subnet, subnet.ip_range, Some(subnet.gateway))?);
        }
        for (_, endpoint) in self.endpoints_on(network_id) {
            for addr in endpoint.addresses() {
                if let Some(pool) = pools.for_family(addr.is_ipv6()) {
                    pool.reserve(addr)?;
                }
            }
        }
        self.pools.insert(network_id.to_owned(), pools);
        Ok(())
    }
}

fn lookup<'a, T>(map: &'a BTreeMap<String, T>, key: &str, name: impl Fn(&T) -> &String) -> Option<&'a T> {
    if let Some(found) = map.values().find(|v| name(v) == key) {
        return Some(found);
    }
    if let Some(found) = map.get(key) {
        return Some(found);
    }
    let mut prefixed = map.range(key.to_owned()..).take_while(|(id, _)| id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some((_, found)), None) if !key.is_empty() => Some(found),
        _ => None,
    }
}

/// What berthd's command line says about how the controller works.
#[derive(Debug, Clone, Default)]
pub struct DaemonSettings {
    /// `--userland-proxy-only`: the userland proxy alone serves published ports.
    pub userland_proxy_only: bool,
    /// `--dns`: see [`Controller`]'s field.
    pub dns_servers: Vec<IpAddr>,
    /// `--default-address-pool`: see [`Controller`]'s field; empty for the defaults.
    pub address_pools: Vec<SubnetPool>,
}

/// The daemon's command executor; shared by every API handler.
pub struct Controller {
    state: Mutex<State>,
    store: Store,
    /// The network drivers, picked by each network's recorded driver name.
    drivers: Drivers,
    firewall: Arc<BlockingFirewall>,
    /// The embedded DNS server every sandbox's listener feeds.
    resolver: Arc<Resolver>,
    /// The daemon's `--dns` servers: the upstreams of the embedded resolver, and the
    /// nameservers of sandboxes without it (unless they name their own); empty for the host's.
    dns_servers: Vec<IpAddr>,
    /// Where networks that ask for no subnet get one, both families in one list, in order:
    /// `--default-address-pool` for a family that has them, else Docker's IPv4 pools and a
    /// unique local /48 derived from the engine id for IPv6.
    address_pools: Vec<SubnetPool>,
    /// The machine whose containers berthd networks (see [`Host`]).
    host: Arc<dyn Host>,
    paths: Paths,
    /// What commands changed, for `GET /events`.
    events: events::EventBus,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl Controller {
    /// Loads the store, reconciles the kernel with it and makes sure the default network exists.
    /// `paths.netns_dir` must be ready for pinned namespaces (berth_sys::netns::prepare_netns_dir).
    /// Published ports are served as [`PortTable::rootful`] says, with `proxy` when there is one.
    pub async fn start(
        store: Store,
        paths: Paths,
        backends: Backends,
        proxy: Option<ProxyClient>,
        resolver: Arc<Resolver>,
        default_network: Option<DefaultNetwork>,
        settings: DaemonSettings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&paths.sandboxes_dir)?;
        let firewall = Arc::new(BlockingFirewall::new(backends.firewall));
        let ports = PortTable::rootful(backends.host.clone(), firewall.clone(), proxy, settings.userland_proxy_only);
        let state = State {
            networks: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            pools: HashMap::new(),
            ports,
            resolver_listeners: HashMap::new(),
        };
        let controller = Self {
            state: Mutex::new(state),
            store,
            drivers: backends.drivers,
            firewall,
            resolver,
            dns_servers: settings.dns_servers,
            address_pools: address_pools(settings.address_pools, &engine_id(&paths.data_root)),
            host: backends.host,
            paths,
            events: events::EventBus::default(),
        };
        controller.reconcile(default_network).await?;
        Ok(controller)
    }
}

/// What the controller acts on besides its store and the userland proxy: the host, the network
/// drivers and the firewall. berthd passes the real ones; the core's unit tests pass fakes.
#[derive(Debug)]
pub struct Backends {
    pub host: Arc<dyn Host>,
    pub drivers: Drivers,
    pub firewall: Box<dyn Firewall>,
}

impl Backends {
    /// The root host (berthd's own namespace), its drivers, and `firewall`.
    pub fn root(firewall: Box<dyn Firewall>) -> anyhow::Result<Self> {
        let host = RootHost::connect()?;
        let drivers = Drivers::new(host.netlink().clone());
        Ok(Self { host: Arc::new(host), drivers, firewall })
    }

    /// The rootless child's host (its own namespace, with published ports bound by the parent
    /// over `parent`), its drivers, and `firewall`.
    pub fn rootless(firewall: Box<dyn Firewall>, parent: std::os::fd::OwnedFd) -> anyhow::Result<Self> {
        let host = RootlessHost::new(RootHost::connect()?, parent);
        let drivers = Drivers::new(host.netlink().clone());
        Ok(Self { host: Arc::new(host), drivers, firewall })
    }
}

impl Controller {
    /// berthd's engine id (see [`engine_id`]).
    pub fn engine_id(&self) -> String {
        engine_id(&self.paths.data_root)
    }

    /// Where berthd keeps its state (`--data-root`).
    pub fn data_root(&self) -> &Path {
        &self.paths.data_root
    }

    /// The event bus's kept events and a receiver of new ones (`GET /events`).
    pub fn subscribe_events(&self) -> Subscription {
        self.events.subscribe()
    }

    /// How many event streams are open.
    pub fn event_subscribers(&self) -> usize {
        self.events.subscribers()
    }

    /// Ends every event stream, so a stopping daemon does not wait for clients listening to them.
    pub fn end_event_streams(&self) {
        self.events.close();
    }
}

/// berthd's engine id: stable for one data root on one host, as Docker's is (64 hex digits).
fn engine_id(data_root: &Path) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    hex::encode(Sha256::digest(format!("{}\n{}", hostname.trim(), data_root.display())))
}

/// The pools of `configured` for each family that has some, Docker's defaults for the others:
/// its IPv4 pools, and for IPv6 a unique local /48 whose global id is the engine id's first
/// 40 bits (so it is the same on every start of this daemon).
fn address_pools(configured: Vec<SubnetPool>, engine_id: &str) -> Vec<SubnetPool> {
    let has = |v6: bool| configured.iter().any(|p| p.base().addr().is_ipv6() == v6);
    let (has_v4, has_v6) = (has(false), has(true));
    let mut pools = configured;
    if !has_v4 {
        pools.extend(default_v4_pools());
    }
    if !has_v6 {
        let mut global_id = [0u8; 5];
        hex::decode_to_slice(&engine_id[..10], &mut global_id).expect("the engine id is hex");
        pools.push(default_v6_pool(global_id));
    }
    pools
}
