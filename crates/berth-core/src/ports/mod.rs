//! Published ports. A sandbox's `-p` mappings hold a bound socket per host port and family
//! while they live ([`Reservation`]: no other process can take the port, and conflicts are the
//! kernel's own bind check), and each [`PortPublisher`] makes what arrives on those ports reach
//! the sandbox its own way: [`KernelDnat`] (nftables DNAT map elements, UDP conntrack flows
//! forgotten), [`RoutedPorts`] (container ports opened at the sandbox's own address on a routed
//! network) and [`UserlandProxy`] (berth-proxy serves the sockets themselves). [`PortTable`] is
//! their composition as berthd runs it: it keeps every sandbox's reservations and where they
//! lead, and turns a command's change into one call, rolled back if a publisher fails.
//! Another kind of host (rootless) adds a publisher here; the controller does not change.

mod kernel_dnat;
mod reservation;
mod routed;
mod userland_proxy;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use berth_firewall::Ruleset;
use berth_types::{EndpointRecord, GatewayMode, NetworkRecord, PortMapping, PortSpec, SandboxRecord};

use crate::error::{Error, Result};
use crate::firewall::BlockingFirewall;
use crate::host::Host;

pub use kernel_dnat::KernelDnat;
pub use reservation::{port_specs, Reservation};
pub use routed::RoutedPorts;
pub use userland_proxy::{ProxyClient, ProxyError, UserlandProxy};

/// Where a sandbox's published ports lead: its addresses on its publishing network, the first
/// non-internal one it is connected to. The default leads nowhere (no such network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    /// The sandbox's addresses there, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// Those of `addresses` the network routes to directly (gateway mode `routed`).
    pub routed: Vec<IpAddr>,
    /// Where specs without a host address publish (the network's `host_binding_ipv4`); None
    /// for every address of both families.
    pub default_host_ip: Option<IpAddr>,
}

impl Destination {
    /// Where `sandbox`'s published ports lead, None when it has no network that can publish.
    pub fn of(networks: &BTreeMap<String, NetworkRecord>, sandbox: &SandboxRecord) -> Option<Self> {
        let (network, endpoint) = publishing_endpoint(networks, sandbox)?;
        let options = network.bridge_options();
        let addresses: Vec<IpAddr> = endpoint.addresses().collect();
        Some(Self {
            routed: addresses
                .iter()
                .copied()
                .filter(|a| options.gateway_mode(a.is_ipv6()) == GatewayMode::Routed)
                .collect(),
            addresses,
            default_host_ip: options.host_binding.filter(|ip| !ip.is_unspecified()),
        })
    }
}

/// The endpoint a sandbox's published ports lead to: the first on a non-internal network.
fn publishing_endpoint<'a>(
    networks: &'a BTreeMap<String, NetworkRecord>,
    sandbox: &'a SandboxRecord,
) -> Option<(&'a NetworkRecord, &'a EndpointRecord)> {
    sandbox.endpoints.iter().find_map(|e| Some((networks.get(&e.network_id).filter(|n| !n.internal)?, e)))
}

/// Whether a mapping leads to `target`: a mapping on a host address serves that address's
/// family only, one on every address both.
fn leads_to(mapping: &PortMapping, target: IpAddr) -> bool {
    mapping.host_ip.is_none_or(|h| h.is_ipv4() == target.is_ipv4())
}

/// Some of one sandbox's published ports, as a publisher is asked to serve them.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    /// The sandbox's name, for messages.
    pub sandbox: &'a str,
    pub destination: &'a Destination,
    pub reservations: &'a [Reservation],
    /// The sandbox's other reservations, which stay published (what two mappings share, such
    /// as a routed container port, must stay while one of them is left).
    pub others: &'a [Reservation],
}

/// One way of making published ports reach their sandbox. Each call covers one sandbox's
/// ports; a publisher keeps no record of its own beyond what the kernel or its process holds.
pub trait PortPublisher: Debug + Send + Sync {
    /// Whether reservation sockets must listen (TCP) because this publisher accepts on them.
    fn accepts_connections(&self) -> bool {
        false
    }

    /// Host sockets it kept across a restart of berthd, by [`Reservation`] socket id: the
    /// restored reservations take these instead of binding their ports again.
    fn kept_sockets(&self) -> HashMap<String, OwnedFd> {
        HashMap::new()
    }

    /// Starts serving `publication`. When it fails, nothing of it is left.
    fn publish(&self, publication: &Publication<'_>) -> Result<()>;

    /// Stops serving what [`Self::publish`] started. An error means the kernel may hold some
    /// of it still: the caller applies berth's whole ruleset again.
    fn unpublish(&self, publication: &Publication<'_>) -> Result<()>;

    /// The sandbox's ports now lead to `after.destination` instead of `before.destination`.
    fn redirect(&self, before: &Publication<'_>, after: &Publication<'_>) -> Result<()>;

    /// On start, once reservations are restored: serve exactly `all` from now on. `unclaimed`
    /// are ids of [`Self::kept_sockets`] no recorded mapping has any more.
    fn restore(&self, _all: &[Publication<'_>], _unclaimed: &[String]) {}

    /// Called periodically with everything published: repairs what died.
    fn keep_alive(&self, _all: &[Publication<'_>]) {}

    /// Its part of berth's whole firewall ruleset for everything published.
    fn add_to_ruleset(&self, _all: &[Publication<'_>], _ruleset: &mut Ruleset) {}
}

/// One sandbox's published ports.
#[derive(Debug)]
struct SandboxPorts {
    name: String,
    destination: Destination,
    reservations: Vec<Reservation>,
}

impl SandboxPorts {
    fn publication(&self) -> Publication<'_> {
        Publication {
            sandbox: &self.name,
            destination: &self.destination,
            reservations: &self.reservations,
            others: &[],
        }
    }
}

/// Every sandbox's published ports and the publishers that serve them, in order (kernel work
/// first, the proxy last).
#[derive(Debug)]
pub struct PortTable {
    host: Arc<dyn Host>,
    publishers: Vec<Box<dyn PortPublisher>>,
    /// By sandbox id; only sandboxes with published ports.
    sandboxes: HashMap<String, SandboxPorts>,
}

impl PortTable {
    fn new(host: Arc<dyn Host>, publishers: Vec<Box<dyn PortPublisher>>) -> Self {
        Self { host, publishers, sandboxes: HashMap::new() }
    }

    /// Published ports as berthd serves them as root: kernel DNAT (unless `proxy_only`; it
    /// also takes 127.0.0.1 when there is no proxy), routed ports on routed networks, and the
    /// userland proxy when there is one.
    pub fn rootful(
        host: Arc<dyn Host>,
        firewall: Arc<BlockingFirewall>,
        proxy: Option<ProxyClient>,
        proxy_only: bool,
    ) -> Self {
        let mut publishers: Vec<Box<dyn PortPublisher>> = Vec::new();
        if !proxy_only {
            publishers.push(Box::new(KernelDnat::new(firewall.clone(), host.clone(), proxy.is_none())));
        }
        publishers.push(Box::new(RoutedPorts::new(firewall)));
        if let Some(client) = proxy {
            publishers.push(Box::new(UserlandProxy::new(client)));
        }
        Self::new(host, publishers)
    }

    /// Reserves the host ports of `specs` for a sandbox whose ports would lead to
    /// `destination` (None: it has no network that can publish). Nothing is kept if one fails.
    pub fn reserve(
        &self,
        sandbox_id: &str,
        sandbox_name: &str,
        destination: Option<&Destination>,
        specs: Vec<PortSpec>,
    ) -> Result<Vec<Reservation>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(destination) = destination else {
            return Err(Error::BadRequest(format!(
                "sandbox {sandbox_name} has no network that can publish ports (internal networks and host/none modes cannot)"
            )));
        };
        reservation::Reserver {
            host: &*self.host,
            listen: self.publishers.iter().any(|p| p.accepts_connections()),
            sandbox_id,
            published: &self
                .sandboxes
                .values()
                .map(|s| (s.name.as_str(), s.reservations.as_slice()))
                .collect::<Vec<_>>(),
        }
        .reserve(specs, destination.default_host_ip)
    }

    /// Publishes `reservations` of a sandbox towards `destination`: every publisher serves
    /// them, or (when one fails) none does and the sockets close.
    pub fn publish(
        &mut self,
        sandbox_id: &str,
        sandbox_name: &str,
        destination: Destination,
        reservations: Vec<Reservation>,
    ) -> Result<()> {
        if reservations.is_empty() {
            return Ok(());
        }
        let others = self.sandboxes.get(sandbox_id).map_or(&[][..], |s| &s.reservations);
        let publication =
            Publication { sandbox: sandbox_name, destination: &destination, reservations: &reservations, others };
        for (done, publisher) in self.publishers.iter().enumerate() {
            if let Err(e) = publisher.publish(&publication) {
                for earlier in self.publishers[..done].iter().rev() {
                    if let Err(undo) = earlier.unpublish(&publication) {
                        tracing::error!(sandbox = %sandbox_name, "cannot undo publishing: {undo}");
                    }
                }
                return Err(e);
            }
        }
        let entry = self.sandboxes.entry(sandbox_id.to_owned()).or_insert_with(|| SandboxPorts {
            name: sandbox_name.to_owned(),
            destination: destination.clone(),
            reservations: Vec::new(),
        });
        entry.destination = destination;
        entry.reservations.extend(reservations);
        Ok(())
    }

    /// Stops publishing the sandbox's `mappings` (all of them when None) and closes their
    /// sockets. Every publisher is asked even when one fails; an error means the kernel may
    /// still hold some of it (the caller applies the whole ruleset again).
    pub fn withdraw(&mut self, sandbox_id: &str, mappings: Option<&[PortMapping]>) -> Result<()> {
        let Some(entry) = self.sandboxes.get_mut(sandbox_id) else { return Ok(()) };
        let (closing, kept): (Vec<Reservation>, Vec<Reservation>) =
            entry.reservations.drain(..).partition(|r| mappings.is_none_or(|wanted| wanted.contains(&r.mapping)));
        entry.reservations = kept;
        let publication = Publication {
            sandbox: &entry.name,
            destination: &entry.destination,
            reservations: &closing,
            others: &entry.reservations,
        };
        let mut failed = None;
        for publisher in self.publishers.iter().rev() {
            if let Err(e) = publisher.unpublish(&publication) {
                failed = Some(e);
            }
        }
        if entry.reservations.is_empty() {
            self.sandboxes.remove(sandbox_id);
        }
        failed.map_or(Ok(()), Err)
    }

    /// The sandbox's ports now lead to `destination` (its publishing network changed); a
    /// sandbox without published ports or with the same destination is left alone.
    pub fn redirect(&mut self, sandbox_id: &str, destination: Option<Destination>) -> Result<()> {
        let destination = destination.unwrap_or_default();
        let Some(entry) = self.sandboxes.get_mut(sandbox_id) else { return Ok(()) };
        if entry.destination == destination {
            return Ok(());
        }
        let before = std::mem::replace(&mut entry.destination, destination);
        let old = Publication { destination: &before, ..entry.publication() };
        let mut failed = None;
        for publisher in &self.publishers {
            if let Err(e) = publisher.redirect(&old, &entry.publication()) {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// On start: takes back the host sockets of every recorded mapping (from a publisher that
    /// kept them across the restart, by binding them again otherwise), then has every
    /// publisher serve exactly those. `sandboxes` are (id, name, destination, mappings).
    pub fn restore<'a>(&mut self, sandboxes: impl Iterator<Item = (&'a str, &'a str, Destination, &'a [PortMapping])>) {
        let mut kept: Vec<HashMap<String, OwnedFd>> = self.publishers.iter().map(|p| p.kept_sockets()).collect();
        let listen = self.publishers.iter().any(|p| p.accepts_connections());
        self.sandboxes.clear();
        for (id, name, destination, mappings) in sandboxes {
            if mappings.is_empty() {
                continue;
            }
            let reservations = mappings
                .iter()
                .map(|mapping| {
                    Reservation::restore(&*self.host, listen, id, name, mapping, |socket_id| {
                        kept.iter_mut().find_map(|k| k.remove(socket_id))
                    })
                })
                .collect();
            self.sandboxes.insert(id.to_owned(), SandboxPorts { name: name.to_owned(), destination, reservations });
        }
        let all = self.publications();
        for (publisher, unclaimed) in self.publishers.iter().zip(kept) {
            let unclaimed: Vec<String> = unclaimed.into_keys().collect();
            publisher.restore(&all, &unclaimed);
        }
    }

    /// Lets every publisher repair what died (the proxy process).
    pub fn keep_alive(&self) {
        let all = self.publications();
        for publisher in &self.publishers {
            publisher.keep_alive(&all);
        }
    }

    /// The publishers' part of berth's whole firewall ruleset.
    pub fn add_to_ruleset(&self, ruleset: &mut Ruleset) {
        let all = self.publications();
        for publisher in &self.publishers {
            publisher.add_to_ruleset(&all, ruleset);
        }
    }

    fn publications(&self) -> Vec<Publication<'_>> {
        self.sandboxes.values().map(SandboxPorts::publication).collect()
    }
}
