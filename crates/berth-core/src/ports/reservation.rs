//! Reservations: the host sockets that hold a mapping's host ports while it lives. Turns specs
//! into mappings with concrete host ports (a random free one from the host's ephemeral range
//! for `-P` and `-p CPORT`), refuses ports berth already publishes or a host process holds,
//! and bounds how many sockets berthd holds.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use berth_types::{PortMapping, PortProtocol, PortRange, PortSpec};
use socket2::Socket;

use crate::error::{Error, Result};
use crate::host::Host;

/// A mapping and the sockets that reserve its host ports.
#[derive(Debug)]
pub struct Reservation {
    pub mapping: PortMapping,
    pub sockets: Vec<HostSocket>,
}

/// One reserved host socket; with the userland proxy it also serves loopback clients.
#[derive(Debug)]
pub struct HostSocket {
    /// Its name across berthd restarts (the proxy's mapping id): `SANDBOX/PROTO/ADDR/PORT`.
    pub id: String,
    pub host: SocketAddr,
    pub socket: Socket,
}

fn socket_id(sandbox_id: &str, protocol: PortProtocol, host: SocketAddr) -> String {
    format!("{sandbox_id}/{protocol}/{}/{}", host.ip(), host.port())
}

/// Most host ports one request may publish (a port without a host address counts once,
/// though it holds a socket for each family).
const MAX_PORTS_PER_REQUEST: usize = 10_000;

/// Most host sockets berthd holds for all sandboxes together; its open-file limit, less
/// [`FILE_HEADROOM`] for everything else, may bound it lower.
const MAX_HELD_SOCKETS: usize = 100_000;

/// Descriptors kept free of port reservations for the API, namespaces, netlink and the store.
const FILE_HEADROOM: usize = 1024;

/// How many random starting points `-P` and `-p CPORT` try before giving up.
const RANDOM_PORT_ATTEMPTS: usize = 64;

/// How many sockets berthd may hold for published ports, and what sets that bound.
fn socket_budget() -> (usize, String) {
    let by_files = berth_sys::limits::open_file_limit()
        .map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(FILE_HEADROOM));
    if by_files < MAX_HELD_SOCKETS {
        (by_files, format!("berthd's open-file limit less {FILE_HEADROOM}"))
    } else {
        (MAX_HELD_SOCKETS, "berthd's limit for all sandboxes".into())
    }
}

/// Host ports a spec publishes: its host range, or one random port per container port.
fn host_port_count(spec: &PortSpec) -> usize {
    spec.host_ports.map_or(spec.container_ports.count(), |p| p.count()) as usize
}

/// Host sockets a spec's mapping holds: one per host port and address family.
fn sockets_of(spec: &PortSpec) -> usize {
    host_port_count(spec) * host_addresses(spec.host_ip).len()
}

fn host_addresses(host_ip: Option<IpAddr>) -> Vec<IpAddr> {
    match host_ip {
        Some(ip) => vec![ip],
        None => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
    }
}

/// A spec's mapping once its host ports are known.
fn mapping_for(spec: &PortSpec, host_ports: PortRange) -> PortMapping {
    PortMapping { protocol: spec.protocol, host_ip: spec.host_ip, host_ports, container_ports: spec.container_ports }
}

/// Whether two mappings want a host port in common.
fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_ports.overlaps(&b.host_ports)
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

/// The port specs of a request: `ports` (`-p`), and with `publish_all` (`-P`) also `expose`,
/// which must name container ports only.
pub fn port_specs(ports: &[PortSpec], expose: &[PortSpec], publish_all: bool) -> Result<Vec<PortSpec>> {
    let mut specs = ports.to_vec();
    if publish_all {
        if let Some(spec) = expose.iter().find(|s| s.host_ip.is_some() || s.host_ports.is_some()) {
            return Err(Error::BadRequest(format!("--expose takes container ports only, not \"{spec}\"")));
        }
        specs.extend_from_slice(expose);
    }
    Ok(specs)
}

impl Reservation {
    /// A recorded mapping's sockets again, on start: `kept(id)` gives a socket a publisher kept
    /// across the restart; others are bound again (a port that cannot be is logged and skipped).
    pub(super) fn restore(
        host: &dyn Host,
        listen: bool,
        sandbox_id: &str,
        sandbox_name: &str,
        mapping: &PortMapping,
        mut kept: impl FnMut(&str) -> Option<OwnedFd>,
    ) -> Self {
        let mut sockets = Vec::new();
        for ip in host_addresses(mapping.host_ip) {
            for port in mapping.host_ports.start..=mapping.host_ports.end {
                let host_address = SocketAddr::new(ip, port);
                let id = socket_id(sandbox_id, mapping.protocol, host_address);
                let socket = match kept(&id) {
                    Some(fd) => Socket::from(fd),
                    None => match host.bind_port(mapping.protocol, ip, port, listen) {
                        Ok(socket) => socket,
                        Err(e) if skippable_v6(mapping, ip, &e) => continue,
                        Err(e) => {
                            tracing::warn!(sandbox = %sandbox_name, "cannot reserve host port {host_address}/{} again: {e}", mapping.protocol);
                            continue;
                        }
                    },
                };
                sockets.push(HostSocket { id, host: host_address, socket });
            }
        }
        Self { mapping: mapping.clone(), sockets }
    }
}

/// A host without IPv6 cannot have v6 users of a port published on every address either.
fn skippable_v6(mapping: &PortMapping, ip: IpAddr, error: &io::Error) -> bool {
    mapping.host_ip.is_none() && ip.is_ipv6() && error.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// Reserves ports for one sandbox, knowing what every sandbox publishes.
pub(super) struct Reserver<'a> {
    pub host: &'a dyn Host,
    /// Whether TCP sockets listen (a publisher accepts on them).
    pub listen: bool,
    pub sandbox_id: &'a str,
    /// Every sandbox's (name, reservations).
    pub published: &'a [(&'a str, &'a [Reservation])],
}

impl Reserver<'_> {
    /// Resolves and reserves the host ports of `specs`; those without a host address publish
    /// on `default_host_ip`. Nothing is kept if one fails: the sockets close when dropped.
    pub fn reserve(&self, mut specs: Vec<PortSpec>, default_host_ip: Option<IpAddr>) -> Result<Vec<Reservation>> {
        for spec in specs.iter_mut().filter(|s| s.host_ip.is_none()) {
            spec.host_ip = default_host_ip;
        }
        let ports: usize = specs.iter().map(host_port_count).sum();
        if ports > MAX_PORTS_PER_REQUEST {
            return Err(Error::BadRequest(format!(
                "{ports} host ports requested: one request may publish at most {MAX_PORTS_PER_REQUEST}"
            )));
        }
        let wanted: usize = specs.iter().map(sockets_of).sum();
        let held: usize = self.published.iter().flat_map(|(_, r)| r.iter()).map(|r| r.sockets.len()).sum();
        let (budget, bound) = socket_budget();
        if held + wanted > budget {
            return Err(Error::BadRequest(format!(
                "publishing these ports needs {wanted} more host sockets, and berthd holds {held}: over {budget}, {bound}"
            )));
        }
        // A container range without host ports gets one random host port per container port.
        let specs: Vec<PortSpec> = specs
            .into_iter()
            .flat_map(|spec| match spec.host_ports {
                None if spec.container_ports.count() > 1 => (spec.container_ports.start..=spec.container_ports.end)
                    .map(|port| PortSpec { container_ports: PortRange::single(port), ..spec.clone() })
                    .collect(),
                _ => vec![spec],
            })
            .collect();
        let mut reservations: Vec<Reservation> = Vec::new();
        for spec in &specs {
            let reservation = match spec.host_ports {
                Some(host_ports) => self.reserve_mapping(&reservations, mapping_for(spec, host_ports))?,
                None => self.reserve_random(&reservations, spec)?,
            };
            reservations.push(reservation);
        }
        Ok(reservations)
    }

    /// The sandbox (by name) that already publishes an overlapping host port, if any.
    fn publisher_of(&self, mapping: &PortMapping) -> Option<&str> {
        self.published
            .iter()
            .find_map(|(name, reservations)| reservations.iter().any(|r| clash(&r.mapping, mapping)).then_some(*name))
    }

    /// Reserves the host ports of `mapping`, refusing ports berth already publishes and ports
    /// a host process holds.
    fn reserve_mapping(&self, pending: &[Reservation], mapping: PortMapping) -> Result<Reservation> {
        if let Some(owner) = self.publisher_of(&mapping) {
            return Err(Error::Conflict(format!(
                "host port {}/{} is already published by sandbox {owner}",
                mapping.host_ports, mapping.protocol
            )));
        }
        if pending.iter().any(|r| clash(&r.mapping, &mapping)) {
            return Err(Error::BadRequest(format!(
                "host port {}/{} is requested twice",
                mapping.host_ports, mapping.protocol
            )));
        }
        let mut sockets = Vec::new();
        for ip in host_addresses(mapping.host_ip) {
            for port in mapping.host_ports.start..=mapping.host_ports.end {
                match self.host.bind_port(mapping.protocol, ip, port, self.listen) {
                    Ok(socket) => {
                        let host = SocketAddr::new(ip, port);
                        sockets.push(HostSocket {
                            id: socket_id(self.sandbox_id, mapping.protocol, host),
                            host,
                            socket,
                        });
                    }
                    Err(e) if skippable_v6(&mapping, ip, &e) => {}
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        let holder = self
                            .host
                            .port_holder(mapping.protocol, port)
                            .map(|h| format!(" by {h}"))
                            .unwrap_or_default();
                        return Err(Error::Conflict(format!(
                            "host port {ip}:{port}/{} is already in use{holder}",
                            mapping.protocol
                        )));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                        return Err(Error::BadRequest(format!("host address {ip} is not an address of this host")));
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        return Err(Error::BadRequest(format!(
                            "cannot publish host port {ip}:{port}/{}: {e}",
                            mapping.protocol
                        )));
                    }
                    Err(e) => {
                        return Err(Error::Internal(format!(
                            "cannot reserve host port {ip}:{port}/{}: {e}",
                            mapping.protocol
                        )))
                    }
                }
            }
        }
        Ok(Reservation { mapping, sockets })
    }

    /// Reserves a free random host port from the ephemeral range for a one-port spec without
    /// a host port.
    fn reserve_random(&self, pending: &[Reservation], spec: &PortSpec) -> Result<Reservation> {
        let (low, high) = self.host.ephemeral_ports();
        let span = high.saturating_sub(low).max(1);
        for _ in 0..RANDOM_PORT_ATTEMPTS {
            let port = low + (rand::random::<u16>() % span);
            match self.reserve_mapping(pending, mapping_for(spec, PortRange::single(port))) {
                Ok(r) => return Ok(r),
                Err(Error::Conflict(_)) | Err(Error::BadRequest(_)) if spec.host_ip.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("no free host port left for {}/{}", spec.container_ports, spec.protocol)))
    }
}
