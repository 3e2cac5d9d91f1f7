//! The host: what berthd does to the machine whose containers it networks, as opposed to what
//! it does inside sandboxes. Its namespace's links, routes and addresses (a netlink handle),
//! the namespace file `--network host` shares, the host ports published ports hold, its sysctls
//! and its conntrack table, and making the namespaces sandboxes live in (and the embedded
//! resolver's sockets inside them). The controller reaches the host only through [`Host`], so another
//! kind of host (the rootless child namespace, whose ports a parent process binds) is another
//! implementation beside [`root::RootHost`], not a branch in every command.

mod port_holder;
mod resolver;
mod root;
mod rootless;

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;

use berth_firewall::Dnat;
use berth_types::PortProtocol;
use ipnet::IpNet;
use socket2::Socket;

pub use resolver::ResolverSockets;
pub use root::{bind_host_port, RootHost};
pub use rootless::{BindReply, BindRequest, RootlessHost};

/// What the host's async operations return: a boxed future, so hosts can sit behind `dyn`.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = crate::error::Result<T>> + Send + 'a>>;

pub trait Host: Debug + Send + Sync {
    /// The prefixes the host's routes (but its default routes) and addresses cover: a subnet
    /// berth picks for a network must overlap none of them.
    fn taken_prefixes(&self) -> HostFuture<'_, Vec<IpNet>>;

    /// The file of the host's network namespace (what `--network host` sandboxes join).
    fn netns_path(&self) -> String;

    /// Reserves `ip:port`: a socket bound there (and listening, for TCP, when `listen`) that no
    /// other process can take while it is held. A wildcard IPv6 address binds IPv6 only, so the
    /// IPv4 wildcard is reserved by its own socket.
    fn bind_port(&self, protocol: PortProtocol, ip: IpAddr, port: u16, listen: bool) -> io::Result<Socket>;

    /// The range random host ports come from (`-P`, `-p CPORT`).
    fn ephemeral_ports(&self) -> (u16, u16);

    /// Who holds a host port, to name it in a conflict (`"python3" (pid 1234)`), if visible.
    fn port_holder(&self, protocol: PortProtocol, port: u16) -> Option<String>;

    /// Sets a sysctl of the host's network namespace (`net/ipv4/ip_forward`, ...).
    fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()>;

    /// Makes a sandbox's own network namespace, pinned at `path`, with its loopback up.
    fn create_netns<'a>(&'a self, path: &'a Path) -> HostFuture<'a, ()>;

    /// Unpins a sandbox's namespace; its links go once no process holds it.
    fn delete_netns(&self, path: &Path) -> crate::error::Result<()>;

    /// The first `ethN` that is not a link in the namespace at `netns` yet.
    fn free_interface_name<'a>(&'a self, netns: &'a Path) -> HostFuture<'a, String>;

    /// Opens the embedded resolver's sockets inside the namespace at `netns` (on `preferred`
    /// ports when free) and starts redirecting its port 53 to them when they are not the
    /// preferred ones or `rewrite_redirect` says the redirect may be missing. Blocking.
    fn open_resolver(
        &self,
        netns: &Path,
        preferred: Option<berth_types::ResolverPorts>,
        rewrite_redirect: bool,
    ) -> Result<ResolverSockets, String>;

    /// Forgets the conntrack entries of the UDP host ports of `dnats` (their mappings were
    /// added or removed), so a flow's next datagram meets the mapping as it is now.
    fn forget_udp_flows(&self, dnats: &[Dnat]);
}
