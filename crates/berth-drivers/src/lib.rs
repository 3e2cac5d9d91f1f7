//! Network drivers: what a network and an endpoint are in the kernel. `bridge` is the one network
//! driver today (a Linux bridge per network, a veth pair per endpoint); `namespace` prepares the
//! namespace a sandbox lives in for every mode (bridge, none, host, container, attached). Drivers
//! do kernel work only: they never allocate addresses or write the store.

pub mod bridge;
pub mod namespace;

pub use bridge::BridgeDriver;

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
}
