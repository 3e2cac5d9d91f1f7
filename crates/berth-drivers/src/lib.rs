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

use berth_netlink::{Link, Netlink};
use berth_types::{EndpointRecord, NetworkRecord};

pub use bridge::BridgeDriver;

/// What a driver's operations return: a boxed future, so drivers can sit behind `dyn`.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// The kernel side of one kind of network. Each operation undoes its own kernel work when it
/// fails half way; the controller decides addresses, names and MACs and keeps the records.
pub trait NetworkDriver: std::fmt::Debug + Send + Sync {
    /// The driver's name, as networks record it (`bridge`).
    fn name(&self) -> &'static str;

    /// Makes the network exist (also repairing it on reconcile); refuses to take over objects
    /// berth did not make.
    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()>;

    /// Removes the network (gone already is fine).
    fn delete_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()>;

    /// Connects the sandbox whose namespace is `netns` as `endpoint` describes: its interface,
    /// addresses, MAC, and (when `default_route`) the default routes via the gateways.
    fn join<'a>(
        &'a self,
        network: &'a NetworkRecord,
        endpoint: &'a EndpointRecord,
        netns: &'a Path,
        default_route: bool,
    ) -> DriverFuture<'a, ()>;

    /// The MAC the kernel gave the endpoint's interface (when the controller chose none).
    fn peer_mac<'a>(&'a self, endpoint: &'a EndpointRecord, netns: &'a Path) -> DriverFuture<'a, String>;

    /// Whether the endpoint's kernel objects are present.
    fn endpoint_exists<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, bool>;

    /// Removes the endpoint's kernel objects (gone already is fine).
    fn leave<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, ()>;

    /// The host's links this driver made (for reconcile to remove those no record knows).
    fn own_links(&self) -> DriverFuture<'_, Vec<Link>>;

    /// Deletes a link found by [`Self::own_links`].
    fn delete_link<'a>(&'a self, link: &'a Link) -> DriverFuture<'a, ()>;
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
    #[error("network driver {0:?} is not supported")]
    UnknownDriver(String),
}
