//! Published ports: turning `-p` specs into mappings with concrete host ports, holding a bound
//! socket per host port while a mapping lives (so no other process can take it, and conflicts
//! are found by the kernel's own bind check), the DNAT entries that send the traffic to the
//! sandbox, and berth's complete firewall ruleset derived from the state. It never edits
//! nftables itself; the firewall layer does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use berth_firewall::{Dnat, NetworkPolicy, RoutedPort, Ruleset};
use berth_types::{
    EndpointRecord, GatewayMode, NetworkRecord, PortMapping, PortProtocol, PortRange, PortSpec, PortsChange,
    ProxyMapping, Sandbox, SandboxRecord,
};
use ipnet::IpNet;
use socket2::Socket;

use super::{Controller, State};
use crate::error::{Error, Result};

/// A mapping and the sockets that reserve its host ports.
#[derive(Debug)]
pub(super) struct Reservation {
    pub mapping: PortMapping,
    sockets: Vec<HostSocket>,
}

/// One reserved host socket; with the userland proxy it also serves loopback clients.
#[derive(Debug)]
struct HostSocket {
    /// The proxy's name for it: `SANDBOX/PROTO/ADDR/PORT`.
    proxy_id: String,
    host: SocketAddr,
    socket: Socket,
}

fn proxy_id(sandbox_id: &str, protocol: PortProtocol, host: SocketAddr) -> String {
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

/// How many random starting points `-P` and `-p CPORT` try before giving up.
const RANDOM_PORT_ATTEMPTS: usize = 64;

fn host_addresses(host_ip: Option<IpAddr>) -> Vec<IpAddr> {
    match host_ip {
        Some(ip) => vec![ip],
        None => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
    }
}

impl State {
    /// The sandbox (by name) that already publishes an overlapping host port, if any.
    fn publisher_of(&self, mapping: &PortMapping) -> Option<&str> {
        self.sandboxes.values().find_map(|s| {
            s.ports
                .iter()
                .any(|m| {
                    m.protocol == mapping.protocol
                        && m.host_ports.overlaps(&mapping.host_ports)
                        && (m.host_ip.is_none() || mapping.host_ip.is_none() || m.host_ip == mapping.host_ip)
                })
                .then_some(s.name.as_str())
        })
    }

    /// DNAT entries for a sandbox's mappings: to its address of each family on its first
    /// non-internal network. An IPv6 host address in front of an IPv4-only sandbox gets no entry
    /// (that path is the userland proxy's). None at all with `--userland-proxy-only`.
    pub(super) fn sandbox_dnats(&self, sandbox: &SandboxRecord) -> Vec<Dnat> {
        self.dnats_for(sandbox, &sandbox.ports)
    }

    /// DNAT entries for some of a sandbox's mappings (see [`Self::sandbox_dnats`]).
    fn dnats_for(&self, sandbox: &SandboxRecord, mappings: &[PortMapping]) -> Vec<Dnat> {
        if !self.kernel_dnat {
            return Vec::new();
        }
        let Some((_, endpoint)) = self.publishing_endpoint(sandbox) else { return Vec::new() };
        let targets: Vec<IpAddr> = super::endpoint_addresses(endpoint).collect();
        mappings
            .iter()
            .flat_map(|m| {
                targets.iter().filter(|t| leads_to(m, **t)).map(move |target| Dnat {
                    protocol: m.protocol,
                    host_ip: m.host_ip,
                    host_ports: m.host_ports,
                    target: *target,
                    target_ports: m.container_ports,
                })
            })
            .collect()
    }

    /// The endpoint a sandbox's published ports lead to: the first on a non-internal network.
    fn publishing_endpoint<'a>(
        &'a self,
        sandbox: &'a SandboxRecord,
    ) -> Option<(&'a NetworkRecord, &'a EndpointRecord)> {
        sandbox.endpoints.iter().find_map(|e| Some((self.networks.get(&e.network_id).filter(|n| !n.internal)?, e)))
    }

    /// The sandbox's addresses that its publishing network routes straight to it (gateway mode
    /// `routed` for the address's family).
    fn routed_addresses(&self, sandbox: &SandboxRecord) -> Vec<IpAddr> {
        let Some((network, endpoint)) = self.publishing_endpoint(sandbox) else { return Vec::new() };
        let options = network.bridge_options();
        super::endpoint_addresses(endpoint)
            .filter(|a| options.gateway_mode(a.is_ipv6()) == GatewayMode::Routed)
            .collect()
    }

    /// The sandbox's published container ports at its routed addresses, one per port.
    fn routed_ports(&self, sandbox: &SandboxRecord) -> Vec<RoutedPort> {
        let addresses = self.routed_addresses(sandbox);
        sandbox
            .ports
            .iter()
            .flat_map(|m| {
                addresses.iter().filter(|a| leads_to(m, **a)).flat_map(move |address| {
                    (m.container_ports.start..=m.container_ports.end).map(move |port| RoutedPort {
                        protocol: m.protocol,
                        address: *address,
                        port,
                    })
                })
            })
            .collect()
    }

    /// Whether the sandbox has published ports on a routed network: they live in the whole
    /// ruleset only, so changing them means applying it again.
    pub(super) fn has_routed_ports(&self, sandbox: &SandboxRecord) -> bool {
        let addresses = self.routed_addresses(sandbox);
        sandbox.ports.iter().any(|m| addresses.iter().any(|a| leads_to(m, *a)))
    }

    /// berth's firewall ruleset as the records describe it (the daemon's settings are added by
    /// `Controller::ruleset`).
    pub(super) fn ruleset(&self) -> Ruleset {
        Ruleset {
            networks: self
                .networks
                .values()
                .map(|n| {
                    let options = n.bridge_options();
                    let subnets: Vec<IpNet> = n.subnets.iter().map(|s| s.subnet).collect();
                    NetworkPolicy {
                        name: n.name.clone(),
                        bridge: n.bridge.clone(),
                        unmasqueraded: subnets
                            .iter()
                            .copied()
                            .filter(|s| !options.masquerades(s.addr().is_ipv6()))
                            .collect(),
                        subnets,
                        internal: n.internal,
                    }
                })
                .collect(),
            dnats: self.sandboxes.values().flat_map(|s| self.sandbox_dnats(s)).collect(),
            loopback_dnat: false,
            routed_ports: self.sandboxes.values().flat_map(|s| self.routed_ports(s)).collect(),
        }
    }
}

/// Whether a mapping leads to `target`: a mapping on a host address serves that address's
/// family only, one on every address both.
fn leads_to(mapping: &PortMapping, target: IpAddr) -> bool {
    mapping.host_ip.is_none_or(|h| h.is_ipv4() == target.is_ipv4())
}

/// A spec's mapping once its host ports are known.
fn mapping_for(spec: &PortSpec, host_ports: PortRange) -> PortMapping {
    PortMapping { protocol: spec.protocol, host_ip: spec.host_ip, host_ports, container_ports: spec.container_ports }
}

impl Controller {
    /// Resolves and reserves the host ports of `specs` (and, with `publish_all`, of `expose`) for
    /// `sandbox`. Nothing is kept if one of them fails: the sockets close when dropped.
    pub(super) fn reserve_ports(
        &self,
        state: &State,
        sandbox: &SandboxRecord,
        specs: &[String],
        expose: &[String],
        publish_all: bool,
    ) -> Result<Vec<Reservation>> {
        let mut parsed = Vec::new();
        for text in specs {
            parsed.push(PortSpec::parse(text).map_err(Error::BadRequest)?);
        }
        if publish_all {
            for text in expose {
                let spec = PortSpec::parse(text).map_err(Error::BadRequest)?;
                if spec.host_ip.is_some() || spec.host_ports.is_some() {
                    return Err(Error::BadRequest(format!("--expose takes container ports only, not {text:?}")));
                }
                parsed.push(spec);
            }
        }
        if !parsed.is_empty() {
            state.check_can_publish(sandbox)?;
        }
        // A network's host_binding_ipv4 is where its specs without a host address publish.
        let binding = state
            .publishing_endpoint(sandbox)
            .and_then(|(n, _)| n.bridge_options().host_binding)
            .filter(|ip| !ip.is_unspecified());
        for spec in parsed.iter_mut().filter(|s| s.host_ip.is_none()) {
            spec.host_ip = binding;
        }
        let ports: usize = parsed.iter().map(host_port_count).sum();
        if ports > MAX_PORTS_PER_REQUEST {
            return Err(Error::BadRequest(format!(
                "{ports} host ports requested: one request may publish at most {MAX_PORTS_PER_REQUEST}"
            )));
        }
        let wanted: usize = parsed.iter().map(sockets_of).sum();
        let held: usize = state.reservations.values().flatten().map(|r| r.sockets.len()).sum();
        let (budget, bound) = socket_budget();
        if held + wanted > budget {
            return Err(Error::BadRequest(format!(
                "publishing these ports needs {wanted} more host sockets, and berthd holds {held}: over {budget}, {bound}"
            )));
        }
        let mut reservations: Vec<Reservation> = Vec::new();
        // A container range without host ports gets one random host port per container port.
        let parsed: Vec<PortSpec> = parsed
            .into_iter()
            .flat_map(|spec| match spec.host_ports {
                None if spec.container_ports.count() > 1 => (spec.container_ports.start..=spec.container_ports.end)
                    .map(|port| PortSpec { container_ports: PortRange::single(port), ..spec.clone() })
                    .collect(),
                _ => vec![spec],
            })
            .collect();
        for spec in &parsed {
            let reservation = match spec.host_ports {
                Some(host_ports) => self.reserve(state, &sandbox.id, &reservations, mapping_for(spec, host_ports))?,
                None => self.reserve_random(state, &sandbox.id, &reservations, spec)?,
            };
            reservations.push(reservation);
        }
        Ok(reservations)
    }

    /// Reserves the host ports of `mapping`, refusing ports berth already publishes and ports
    /// a host process holds.
    fn reserve(
        &self,
        state: &State,
        sandbox_id: &str,
        pending: &[Reservation],
        mapping: PortMapping,
    ) -> Result<Reservation> {
        let clash = |m: &PortMapping| {
            m.protocol == mapping.protocol
                && m.host_ports.overlaps(&mapping.host_ports)
                && (m.host_ip.is_none() || mapping.host_ip.is_none() || m.host_ip == mapping.host_ip)
        };
        if let Some(owner) = state.publisher_of(&mapping) {
            return Err(Error::Conflict(format!(
                "host port {}/{} is already published by sandbox {owner}",
                mapping.host_ports, mapping.protocol
            )));
        }
        if pending.iter().any(|r| clash(&r.mapping)) {
            return Err(Error::BadRequest(format!(
                "host port {}/{} is requested twice",
                mapping.host_ports, mapping.protocol
            )));
        }
        let mut sockets = Vec::new();
        for ip in host_addresses(mapping.host_ip) {
            for port in mapping.host_ports.start..=mapping.host_ports.end {
                match self.host.bind_port(mapping.protocol, ip, port, self.proxy.is_some()) {
                    Ok(socket) => {
                        let host = SocketAddr::new(ip, port);
                        sockets.push(HostSocket {
                            proxy_id: proxy_id(sandbox_id, mapping.protocol, host),
                            host,
                            socket,
                        });
                    }
                    // A host without IPv6 cannot have v6 users of the port either.
                    Err(e)
                        if mapping.host_ip.is_none()
                            && ip.is_ipv6()
                            && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
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
    fn reserve_random(
        &self,
        state: &State,
        sandbox_id: &str,
        pending: &[Reservation],
        spec: &PortSpec,
    ) -> Result<Reservation> {
        let (low, high) = self.host.ephemeral_ports();
        let span = high.saturating_sub(low).max(1);
        for _ in 0..RANDOM_PORT_ATTEMPTS {
            let port = low + (rand::random::<u16>() % span);
            match self.reserve(state, sandbox_id, pending, mapping_for(spec, PortRange::single(port))) {
                Ok(r) => return Ok(r),
                Err(Error::Conflict(_)) | Err(Error::BadRequest(_)) if spec.host_ip.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("no free host port left for {}/{}", spec.container_ports, spec.protocol)))
    }

    pub async fn publish_ports(&self, key: &str, change: PortsChange) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let mut sandbox = state.sandbox(key)?.clone();
        let reservations = self.reserve_ports(&state, &sandbox, &change.ports, &[], false)?;
        let new_mappings: Vec<PortMapping> = reservations.iter().map(|r| r.mapping.clone()).collect();
        // Only the new mappings' entries: the cost of a publish must not grow with the ports
        // already published.
        let added = state.dnats_for(&sandbox, &new_mappings);
        sandbox.ports.extend(new_mappings);
        self.firewall.add_dnats(&added)?;
        if let Err(e) = self.store.commit(&[berth_store::Change::PutSandbox(&sandbox)]) {
            if let Err(undo) = self.firewall.remove_dnats(&added) {
                tracing::error!("cannot undo DNAT entries: {undo}");
            }
            return Err(e.into());
        }
        self.host.forget_udp_flows(&added);
        self.serve_through_proxy(&state, &sandbox, &reservations);
        state.reservations.entry(sandbox.id.clone()).or_default().extend(reservations);
        let view = state.sandbox_view(&sandbox);
        let before = state.sandboxes.insert(sandbox.id.clone(), sandbox.clone()).expect("the sandbox was in the state");
        self.apply_routed_ports(&state, &before, Some(&sandbox));
        Ok(view)
    }

    pub async fn unpublish_ports(&self, key: &str, change: PortsChange) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let mut sandbox = state.sandbox(key)?.clone();
        let mut removed = Vec::new();
        for text in &change.ports {
            let spec = PortSpec::parse(text).map_err(Error::BadRequest)?;
            let matching = |m: &PortMapping| {
                m.protocol == spec.protocol
                    && m.container_ports == spec.container_ports
                    && spec.host_ip.is_none_or(|ip| m.host_ip == Some(ip))
                    && spec.host_ports.is_none_or(|p| m.host_ports == p)
            };
            let before = sandbox.ports.len();
            removed.extend(sandbox.ports.iter().filter(|m| matching(m)).cloned());
            sandbox.ports.retain(|m| !matching(m));
            if sandbox.ports.len() == before {
                return Err(Error::NotFound(format!("sandbox {} does not publish {text}", sandbox.name)));
            }
        }
        let gone = state.dnats_for(&sandbox, &removed);
        // Store first: an entry the firewall then fails to remove is dropped by the next full apply.
        self.store.commit(&[berth_store::Change::PutSandbox(&sandbox)])?;
        if let Err(e) = self.firewall.remove_dnats(&gone) {
            tracing::error!(sandbox = %sandbox.name, "cannot remove DNAT entries, re-applying the ruleset: {e}");
        }
        if let Some(held) = state.reservations.get_mut(&sandbox.id) {
            let (closing, kept): (Vec<Reservation>, Vec<Reservation>) =
                held.drain(..).partition(|r| removed.contains(&r.mapping));
            *held = kept;
            self.stop_proxying(&closing);
        }
        self.host.forget_udp_flows(&gone);
        let view = state.sandbox_view(&sandbox);
        let before = state.sandboxes.insert(sandbox.id.clone(), sandbox.clone()).expect("the sandbox was in the state");
        self.apply_routed_ports(&state, &before, Some(&sandbox));
        if !gone.is_empty() {
            self.apply_firewall_if_drifted(&state);
        }
        Ok(view)
    }

    /// Applies berth's whole ruleset and the forwarding sysctls it needs.
    pub(super) fn apply_firewall(&self, state: &State) -> Result<()> {
        let ruleset = self.ruleset(state);
        let forwarding = state.networks.values().filter(|n| !n.internal);
        let (mut v4, mut v6) = (false, false);
        for network in forwarding {
            v4 = true;
            v6 |= network.subnet_v6().is_some();
        }
        let set = |key: &str| {
            self.host.set_sysctl(key, "1").map_err(|e| Error::Internal(format!("cannot set sysctl {key}: {e}")))
        };
        if v4 {
            set("net/ipv4/ip_forward")?;
        }
        if v6 {
            set("net/ipv6/conf/all/forwarding")?;
        }
        if ruleset.loopback_dnat {
            // Without the proxy, 127.0.0.1 is DNATed into the sandbox: the bridge must route
            // loopback-sourced packets; the firewall's guard drops 127/8 arriving elsewhere.
            for network in state.networks.values().filter(|n| !n.internal) {
                if let Err(e) = set(&format!("net/ipv4/conf/{}/route_localnet", network.bridge)) {
                    tracing::warn!(network = %network.name, "{e}");
                }
            }
        }
        Ok(self.firewall.apply(&ruleset)?)
    }

    /// berth's whole ruleset for the current state and daemon settings.
    pub(super) fn ruleset(&self, state: &State) -> Ruleset {
        Ruleset { loopback_dnat: self.proxy.is_none(), ..state.ruleset() }
    }

    fn apply_firewall_if_drifted(&self, state: &State) {
        let ruleset = self.ruleset(state);
        if !self.firewall.matches(&ruleset).unwrap_or(false) {
            if let Err(e) = self.firewall.apply(&ruleset) {
                tracing::error!("cannot re-apply the firewall ruleset: {e}");
            }
        }
    }

    /// `berth firewall reload`: applies the whole ruleset again.
    pub async fn reload_firewall(&self) -> Result<()> {
        let state = self.state.lock().await;
        self.apply_firewall(&state)?;
        tracing::info!("firewall ruleset reloaded");
        Ok(())
    }

    /// Called after nftables changed in the daemon's namespace: restores berth's ruleset when
    /// it no longer matches (a flush, a deleted table, a firewalld reload).
    pub async fn heal_firewall(&self) {
        let ruleset = self.ruleset(&*self.state.lock().await);
        match self.firewall.matches(&ruleset) {
            Ok(true) => {}
            Ok(false) => {
                let state = self.state.lock().await;
                match self.apply_firewall(&state) {
                    Ok(()) => tracing::warn!("berth's nftables ruleset was changed behind its back; restored"),
                    Err(e) => tracing::error!("cannot restore the firewall ruleset: {e}"),
                }
            }
            Err(e) => tracing::error!("cannot check the firewall ruleset: {e}"),
        }
    }

    /// Takes back the reservation sockets of every recorded mapping on start: from the userland
    /// proxy when it survived the restart (it holds them, and its connections stay up), by
    /// binding them again otherwise; then makes the proxy serve exactly those.
    pub(super) fn restore_reservations(&self, state: &mut State) {
        let mut from_proxy: HashMap<String, OwnedFd> = HashMap::new();
        if let Some(proxy) = &self.proxy {
            match tokio::task::block_in_place(|| proxy.list()) {
                Ok(list) => from_proxy.extend(list.into_iter().map(|(m, fd)| (m.id, fd))),
                Err(e) => tracing::error!("cannot list the userland proxy's mappings: {e}"),
            }
        }
        let mut all: HashMap<String, Vec<Reservation>> = HashMap::new();
        for sandbox in state.sandboxes.values() {
            for mapping in &sandbox.ports {
                let mut sockets = Vec::new();
                for ip in host_addresses(mapping.host_ip) {
                    for port in mapping.host_ports.start..=mapping.host_ports.end {
                        let host = SocketAddr::new(ip, port);
                        let id = proxy_id(&sandbox.id, mapping.protocol, host);
                        let socket = match from_proxy.remove(&id) {
                            Some(fd) => Socket::from(fd),
                            None => match self.host.bind_port(mapping.protocol, ip, port, self.proxy.is_some()) {
                                Ok(socket) => socket,
                                Err(e)
                                    if ip.is_ipv6()
                                        && mapping.host_ip.is_none()
                                        && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                                {
                                    continue
                                }
                                Err(e) => {
                                    tracing::warn!(sandbox = %sandbox.name, "cannot reserve host port {host}/{} again: {e}", mapping.protocol);
                                    continue;
                                }
                            },
                        };
                        sockets.push(HostSocket { proxy_id: id, host, socket });
                    }
                }
                all.entry(sandbox.id.clone()).or_default().push(Reservation { mapping: mapping.clone(), sockets });
            }
        }
        if let Some(proxy) = &self.proxy {
            for stale in from_proxy.keys() {
                if let Err(e) = tokio::task::block_in_place(|| proxy.remove(stale)) {
                    tracing::error!("cannot remove stale proxy mapping {stale}: {e}");
                }
            }
        }
        for (sandbox_id, reservations) in &all {
            if let Some(sandbox) = state.sandboxes.get(sandbox_id) {
                self.serve_through_proxy(state, sandbox, reservations);
            }
        }
        state.reservations = all;
    }

    /// Has the userland proxy serve the host sockets of `reservations` (replacing what it had
    /// for them), each towards the sandbox's address of the socket's family, or of the other
    /// family when the sandbox has none (IPv6 clients of an IPv4-only sandbox).
    pub(super) fn serve_through_proxy(&self, state: &State, sandbox: &SandboxRecord, reservations: &[Reservation]) {
        let Some(proxy) = &self.proxy else { return };
        for reservation in reservations {
            for held in &reservation.sockets {
                let result = match state.proxy_backend(sandbox, &reservation.mapping, held.host) {
                    Some(backend) => {
                        let mapping =
                            ProxyMapping { id: held.proxy_id.clone(), protocol: reservation.mapping.protocol, backend };
                        tokio::task::block_in_place(|| proxy.add(&mapping, held.socket.as_fd()))
                    }
                    None => tokio::task::block_in_place(|| proxy.remove(&held.proxy_id)),
                };
                if let Err(e) = result {
                    tracing::error!(sandbox = %sandbox.name, "userland proxy: {e}");
                }
            }
        }
    }

    /// Routed ports live in the whole ruleset only: after a change to a sandbox (its record
    /// before and after the change, None once removed) the ruleset is applied again when either
    /// has some.
    pub(super) fn apply_routed_ports(&self, state: &State, before: &SandboxRecord, after: Option<&SandboxRecord>) {
        if state.has_routed_ports(before) || after.is_some_and(|s| state.has_routed_ports(s)) {
            if let Err(e) = self.apply_firewall(state) {
                tracing::error!(sandbox = %before.name, "cannot apply the ruleset for routed ports: {e}");
            }
        }
    }

    /// Has the userland proxy stop serving the host sockets of `reservations`.
    pub(super) fn stop_proxying(&self, reservations: &[Reservation]) {
        let Some(proxy) = &self.proxy else { return };
        for held in reservations.iter().flat_map(|r| &r.sockets) {
            if let Err(e) = tokio::task::block_in_place(|| proxy.remove(&held.proxy_id)) {
                tracing::error!("userland proxy: {e}");
            }
        }
    }

    /// Restarts the userland proxy if it died, and hands it every host socket again.
    pub async fn keep_proxy_alive(&self) {
        let Some(proxy) = &self.proxy else { return };
        if proxy.is_alive() {
            return;
        }
        tracing::warn!("the userland proxy died; restarting it");
        if let Err(e) = tokio::task::block_in_place(|| proxy.restart()) {
            tracing::error!("{e}");
            return;
        }
        let state = self.state.lock().await;
        for (sandbox_id, reservations) in &state.reservations {
            if let Some(sandbox) = state.sandboxes.get(sandbox_id) {
                self.serve_through_proxy(&state, sandbox, reservations);
            }
        }
    }
}

impl State {
    /// Where the proxy sends what arrives on host socket `host` of `mapping`: the sandbox's
    /// address on its first non-internal network, of the socket's family when it has one.
    fn proxy_backend(&self, sandbox: &SandboxRecord, mapping: &PortMapping, host: SocketAddr) -> Option<SocketAddr> {
        let (_, endpoint) = self.publishing_endpoint(sandbox)?;
        let v4 = endpoint.ipv4.map(|a| IpAddr::V4(a.addr()));
        let v6 = endpoint.ipv6.map(|a| IpAddr::V6(a.addr()));
        let address = if host.is_ipv4() { v4.or(v6) } else { v6.or(v4) }?;
        let offset = host.port() - mapping.host_ports.start;
        let port = if mapping.container_ports.count() == 1 {
            mapping.container_ports.start
        } else {
            mapping.container_ports.start + offset
        };
        Some(SocketAddr::new(address, port))
    }

    /// Whether `sandbox` can have published ports: it needs a non-internal network.
    fn check_can_publish(&self, sandbox: &SandboxRecord) -> Result<()> {
        if self.publishing_endpoint(sandbox).is_some() {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "sandbox {} has no network that can publish ports (internal networks and host/none modes cannot)",
            sandbox.name
        )))
    }
}
