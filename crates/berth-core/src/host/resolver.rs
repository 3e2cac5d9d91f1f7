//! The embedded resolver's sockets inside a sandbox's namespace: UDP and TCP on the resolver
//! address (127.0.0.11), the ports a previous berthd had first, and the redirect of the
//! sandbox's port 53 to them. [`super::Host::open_resolver`] runs this in the namespace.

use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};

use berth_dns::RESOLVER_ADDRESS;
use berth_types::ResolverPorts;

/// A resolver listener half made: sockets bound inside the sandbox's namespace, and the `nft`
/// writing the redirect to them, if it needed writing, still running.
#[derive(Debug)]
pub struct ResolverSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub ports: ResolverPorts,
    pub redirect: Option<berth_firewall::NftRun>,
}

/// Runs inside the sandbox's namespace: binds UDP and TCP on the resolver address (the
/// preferred ports first) and starts writing the redirect from port 53 to them unless it already
/// leads there (same ports, and the caller knows the namespace kept its table).
pub(super) fn open_here(preferred: Option<ResolverPorts>, rewrite_redirect: bool) -> Result<ResolverSockets, String> {
    let at = |port| SocketAddrV4::new(RESOLVER_ADDRESS, port);
    let udp = preferred
        .and_then(|p| UdpSocket::bind(at(p.udp)).ok())
        .map_or_else(|| UdpSocket::bind(at(0)), Ok)
        .map_err(|e| format!("cannot bind UDP on {RESOLVER_ADDRESS}: {e}"))?;
    let tcp = preferred
        .and_then(|p| bind_tcp(at(p.tcp)).ok())
        .map_or_else(|| bind_tcp(at(0)), Ok)
        .map_err(|e| format!("cannot listen on TCP {RESOLVER_ADDRESS}: {e}"))?;
    let port_of = |addr: std::io::Result<SocketAddr>| addr.map(|a| a.port()).map_err(|e| e.to_string());
    let ports = ResolverPorts { udp: port_of(udp.local_addr())?, tcp: port_of(tcp.local_addr())? };
    for socket_nonblocking in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
        socket_nonblocking.map_err(|e| format!("cannot make the resolver sockets non-blocking: {e}"))?;
    }
    let redirect = (rewrite_redirect || preferred != Some(ports))
        .then(|| berth_firewall::start_resolver_redirect(RESOLVER_ADDRESS, ports.udp, ports.tcp))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(ResolverSockets { udp, tcp, ports, redirect })
}

/// A TCP listener that can take its port back while connections of a previous berthd linger
/// in TIME_WAIT.
fn bind_tcp(addr: SocketAddrV4) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
