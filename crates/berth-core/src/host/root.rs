//! The root host: berthd runs as root in the host's own network namespace and acts on it
//! directly. Ports are bound here, sysctls written under /proc/sys/net, conntrack entries
//! deleted with the `conntrack` tool.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use berth_firewall::Dnat;
use berth_netlink::Netlink;
use berth_types::PortProtocol;
use socket2::{Domain, Protocol, Socket, Type};

use super::{port_holder, resolver, Host, HostFuture, ResolverSockets};

/// Backlog of published TCP sockets the userland proxy accepts on.
const LISTEN_BACKLOG: i32 = 4096;

/// Most host ports of one UDP range whose conntrack entries are deleted one by one; a longer
/// range is cleared through its backend address instead (on removal) or left (on add).
const CONNTRACK_PORTS_PER_RANGE: u16 = 64;

/// A socket bound to `ip:port` in the calling thread's network namespace (listening, for TCP,
/// when `listen`); a wildcard IPv6 address binds IPv6 only. What every host's `bind_port` does
/// where the host's ports are.
pub fn bind_host_port(protocol: PortProtocol, ip: IpAddr, port: u16, listen: bool) -> io::Result<Socket> {
    let domain = if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let (kind, proto) = match protocol {
        PortProtocol::Tcp => (Type::STREAM, Protocol::TCP),
        PortProtocol::Udp => (Type::DGRAM, Protocol::UDP),
        PortProtocol::Sctp => (Type::SEQPACKET, Protocol::from(libc::IPPROTO_SCTP)),
    };
    let socket = Socket::new(domain, kind.cloexec(), Some(proto))?;
    if ip.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&SocketAddr::new(ip, port).into())?;
    if listen && protocol == PortProtocol::Tcp {
        socket.listen(LISTEN_BACKLOG)?;
    }
    Ok(socket)
}

#[derive(Debug)]
pub struct RootHost {
    netlink: Netlink,
}

impl RootHost {
    /// The host that berthd's own network namespace is.
    pub fn connect() -> anyhow::Result<Self> {
        Ok(Self { netlink: Netlink::connect()? })
    }

    /// A netlink handle in the host's namespace (for the network drivers).
    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }
}

impl Host for RootHost {
    fn taken_prefixes(&self) -> HostFuture<'_, Vec<ipnet::IpNet>> {
        Box::pin(async move {
            let routes = self.netlink.route_destinations().await?;
            let addresses = self.netlink.addresses().await?;
            Ok(routes
                .into_iter()
                .filter(|r| r.prefix_len() > 0)
                .chain(addresses.into_iter().map(|(_, a)| a.trunc()))
                .collect())
        })
    }

    fn create_netns<'a>(&'a self, path: &'a Path) -> HostFuture<'a, ()> {
        Box::pin(async move { Ok(berth_drivers::namespace::create_sandbox_netns(path).await?) })
    }

    fn delete_netns(&self, path: &Path) -> crate::error::Result<()> {
        Ok(berth_drivers::namespace::delete_sandbox_netns(path)?)
    }

    fn free_interface_name<'a>(&'a self, netns: &'a Path) -> HostFuture<'a, String> {
        Box::pin(async move { Ok(berth_drivers::namespace::free_interface_name(netns).await?) })
    }

    fn open_resolver(
        &self,
        netns: &Path,
        preferred: Option<berth_types::ResolverPorts>,
        rewrite_redirect: bool,
    ) -> Result<ResolverSockets, String> {
        berth_sys::netns::run_in_netns(netns, move || resolver::open_here(preferred, rewrite_redirect))
            .map_err(|e| e.to_string())
            .and_then(|opened| opened)
    }

    fn netns_path(&self) -> String {
        format!("/proc/{}/ns/net", std::process::id())
    }

    fn bind_port(&self, protocol: PortProtocol, ip: IpAddr, port: u16, listen: bool) -> io::Result<Socket> {
        bind_host_port(protocol, ip, port, listen)
    }

    fn ephemeral_ports(&self) -> (u16, u16) {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut parts = s.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .unwrap_or((32768, 60999))
    }

    fn port_holder(&self, protocol: PortProtocol, port: u16) -> Option<String> {
        port_holder::port_holder(protocol, port)
    }

    fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        berth_sys::sysctl::set_sysctl(key, value).map_err(io::Error::other)
    }

    /// Deletes the entries with `conntrack -D`, as Docker does: clients stop reaching the old
    /// backend (or no backend at all: datagrams that arrived while nothing was published leave
    /// an un-NATed entry that would shadow a new mapping).
    fn forget_udp_flows(&self, dnats: &[Dnat]) {
        for dnat in dnats.iter().filter(|d| d.protocol == PortProtocol::Udp) {
            let family = if dnat.target.is_ipv4() { "ipv4" } else { "ipv6" };
            let mut selectors: Vec<Vec<String>> = Vec::new();
            if dnat.host_ports.count() <= u32::from(CONNTRACK_PORTS_PER_RANGE) {
                for port in dnat.host_ports.start..=dnat.host_ports.end {
                    let mut selector = vec!["--orig-port-dst".to_owned(), port.to_string()];
                    if let Some(ip) = dnat.host_ip {
                        selector.extend(["--orig-dst".to_owned(), ip.to_string()]);
                    }
                    selectors.push(selector);
                }
            } else {
                selectors.push(vec!["--reply-src".to_owned(), dnat.target.to_string()]);
            }
            for selector in selectors {
                let status = std::process::Command::new("conntrack")
                    .args(["-D", "-f", family, "-p", "udp"])
                    .args(&selector)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                if let Err(e) = status {
                    tracing::warn!("cannot run conntrack to forget UDP flows of {dnat}: {e}");
                    return;
                }
            }
        }
    }
}
