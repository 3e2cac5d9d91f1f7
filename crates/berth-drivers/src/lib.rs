//! Network drivers: what a network and an endpoint are in the kernel, behind [`NetworkDriver`],
//! picked by the network's recorded driver name through [`Drivers`]. `bridge/` is the one driver
//! today (a Linux bridge per network, a veth pair per endpoint); `namespace` prepares the
//! namespace a sandbox lives in for every mode (bridge, none, host, container, attached). Drivers
//! do kernel work only: they never allocate addresses or write the store.

pub mod bridge;
pub mod namespace;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use berth_firewall::NetworkPolicy;
use berth_netlink::{Link, Netlink};
use berth_types::{EndpointRecord, NetworkRecord};

pub use bridge::BridgeDriver;

/// What a driver's operations return: a boxed future, so drivers can sit behind `dyn`.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// The kernel side of one kind of network. Each operation undoes its own kernel work when it
/// fails half way. The controller decides addresses, interface names inside sandboxes and MACs,
/// and keeps the records; the driver fills in and alone reads its own part of them (for
/// `bridge`: the network's bridge and each endpoint's host-side veth).
pub trait NetworkDriver: std::fmt::Debug + Send + Sync {
    /// The driver's name, as networks record it (`bridge`).
    fn name(&self) -> &'static str;

    /// Checks a new network's driver options and fills in the driver's part of its record,
    /// refusing a network whose kernel objects would clash with those of `others`.
    fn plan_network(&self, network: &mut NetworkRecord, others: &[&NetworkRecord]) -> Result<(), DriverError>;

    /// Fills in the driver's part of a new endpoint's record.
    fn plan_endpoint(&self, endpoint: &mut EndpointRecord);

    /// Makes the network exist (also repairing it on reconcile); refuses to take over objects
    /// berth did not make.
    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()>;

    /// What berth's firewall must do for the network (masquerade, isolation, forwarding).
    fn firewall_policy(&self, network: &NetworkRecord) -> NetworkPolicy;

    /// Removes the network (gone already is fine).
    fn delete_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()>;

    /// Connects the sandbox whose namespace is `netns` as `endpoint` describes: its interface,
    /// addresses, MAC (the kernel picks one when the record has none), and (when
    /// `default_route`) the default routes via the gateways. Returns the interface's MAC.
    fn join<'a>(
        &'a self,
        network: &'a NetworkRecord,
        endpoint: &'a EndpointRecord,
        netns: &'a Path,
        default_route: bool,
    ) -> DriverFuture<'a, String>;

    /// Whether the endpoint's kernel objects are present.
    fn endpoint_exists<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, bool>;

    /// Removes the endpoint's kernel objects (gone already is fine).
    fn leave<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, ()>;

    /// The host's links this driver made, marked as berth's (for reconcile and leak checks).
    fn own_links(&self) -> DriverFuture<'_, Vec<Link>>;

    /// Deletes the links this driver made that none of `networks` and `endpoints` (its own, as
    /// recorded) owns; returns their names. Reconcile calls it after a crash.
    fn remove_orphans<'a>(
        &'a self,
        networks: &'a [&'a NetworkRecord],
        endpoints: &'a [&'a EndpointRecord],
    ) -> DriverFuture<'a, Vec<String>>;
}

/// Every network driver berthd has, by name.
#[derive(Debug)]
pub struct Drivers {
    drivers: Vec<Box<dyn NetworkDriver>>,
}

impl Drivers {
    /// The drivers of a host whose namespace `host` is a netlink handle of.
    pub fn new(host: Netlink) -> Self {
        Self::with(vec![Box::new(BridgeDriver::new(host))])
    }

    /// These drivers (a test's fakes, say).
    pub fn with(drivers: Vec<Box<dyn NetworkDriver>>) -> Self {
        Self { drivers }
    }

    /// The driver of networks recorded with `name`.
    pub fn select(&self, name: &str) -> Result<&dyn NetworkDriver, DriverError> {
        self.drivers
            .iter()
            .find(|d| d.name() == name)
            .map(AsRef::as_ref)
            .ok_or_else(|| DriverError::UnknownDriver(name.to_owned()))
    }

    pub fn all(&self) -> impl Iterator<Item = &dyn NetworkDriver> {
        self.drivers.iter().map(AsRef::as_ref)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Netlink(#[from] berth_netlink::NetlinkError),
    #[error(transparent)]
    Netns(#[from] berth_sys::netns::NetnsError),
    #[error(transparent)]
    Sysctl(#[from] berth_sys::sysctl::SysctlError),
    #[error("cannot open network namespace {path}: {source}")]
    OpenNetns {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Conflict(String),
    /// A request the driver cannot take (an option it does not know or a bad value).
    #[error("{0}")]
    BadRequest(String),
    #[error("network driver {0:?} is not supported")]
    UnknownDriver(String),
}
