//! The rootless child's host. berthd's child lives in network namespaces of its own, but the
//! host ports its users publish are those of the user's namespace, where its parent runs. So
//! this host is [`RootHost`] for everything in the child's namespace (links, routes, sysctls,
//! sandbox namespaces, the resolver) and asks the parent to bind published ports: the parent
//! binds in the user's namespace and hands the socket back with SCM_RIGHTS over a unix
//! SEQPACKET socket ([`BindRequest`] → [`BindReply`] and the socket). A socket keeps the
//! namespace it was made in, so the userland proxy in the child accepts the user's clients on
//! it and dials the sandboxes from the child's namespace.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

use berth_firewall::Dnat;
use berth_sys::fdpass::{recv_with_fds, send_with_fds};
use berth_types::{PortProtocol, ResolverPorts};
use serde::{Deserialize, Serialize};
use socket2::Socket;

use super::{Host, HostFuture, ResolverSockets, RootHost};

/// The child → parent request: bind this port in the user's namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindRequest {
    pub protocol: PortProtocol,
    pub ip: IpAddr,
    pub port: u16,
    pub listen: bool,
}

/// The parent's answer; with `Ok` comes the bound socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BindReply {
    Ok,
    /// The bind failed: its errno (so the child tells a port in use from a missing address)
    /// and the parent's message.
    Failed {
        errno: i32,
        message: String,
    },
}

/// Largest request or reply on the channel.
const MESSAGE_BYTES: usize = 4096;

#[derive(Debug)]
pub struct RootlessHost {
    inner: RootHost,
    /// To the parent; one request at a time.
    parent: Mutex<OwnedFd>,
}

impl RootlessHost {
    /// The child's host: `inner` for its own namespace, `parent` the channel to the parent.
    pub fn new(inner: RootHost, parent: OwnedFd) -> Self {
        Self { inner, parent: Mutex::new(parent) }
    }

    pub fn netlink(&self) -> &berth_netlink::Netlink {
        self.inner.netlink()
    }
}

impl Host for RootlessHost {
    fn taken_prefixes(&self) -> HostFuture<'_, Vec<ipnet::IpNet>> {
        self.inner.taken_prefixes()
    }

    fn netns_path(&self) -> String {
        self.inner.netns_path()
    }

    /// Asked of the parent, which binds in the user's namespace.
    fn bind_port(&self, protocol: PortProtocol, ip: IpAddr, port: u16, listen: bool) -> io::Result<Socket> {
        let request = serde_json::to_vec(&BindRequest { protocol, ip, port, listen }).map_err(io::Error::other)?;
        let parent = self.parent.lock().unwrap_or_else(|p| p.into_inner());
        send_with_fds(parent.as_fd(), &request, &[])?;
        let mut buffer = [0u8; MESSAGE_BYTES];
        let (length, mut fds) = recv_with_fds(parent.as_fd(), &mut buffer)?;
        if length == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the rootless parent is gone"));
        }
        match serde_json::from_slice(&buffer[..length]).map_err(io::Error::other)? {
            BindReply::Ok if fds.len() == 1 => Ok(Socket::from(fds.remove(0))),
            BindReply::Ok => Err(io::Error::other("the rootless parent sent no socket")),
            BindReply::Failed { errno, message } => {
                Err(io::Error::new(io::Error::from_raw_os_error(errno).kind(), message))
            }
        }
    }

    fn ephemeral_ports(&self) -> (u16, u16) {
        self.inner.ephemeral_ports()
    }

    /// The user's namespace is the parent's; its holders are not visible from here.
    fn port_holder(&self, _protocol: PortProtocol, _port: u16) -> Option<String> {
        None
    }

    fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        self.inner.set_sysctl(key, value)
    }

    fn create_netns<'a>(&'a self, path: &'a Path) -> HostFuture<'a, ()> {
        self.inner.create_netns(path)
    }

    fn delete_netns(&self, path: &Path) -> crate::error::Result<()> {
        self.inner.delete_netns(path)
    }

    fn free_interface_name<'a>(&'a self, netns: &'a Path) -> HostFuture<'a, String> {
        self.inner.free_interface_name(netns)
    }

    fn open_resolver(
        &self,
        netns: &Path,
        preferred: Option<ResolverPorts>,
        rewrite_redirect: bool,
    ) -> Result<ResolverSockets, String> {
        self.inner.open_resolver(netns, preferred, rewrite_redirect)
    }

    fn forget_udp_flows(&self, dnats: &[Dnat]) {
        self.inner.forget_udp_flows(dnats);
    }
}
