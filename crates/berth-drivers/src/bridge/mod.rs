//! The bridge driver: a Linux bridge per network holding the gateway addresses, and per endpoint
//! a veth pair whose host end is a bridge port and whose peer is created inside the sandbox's
//! namespace as eth0, eth1, ... with Docker's MAC, its addresses and the default route. Every
//! link it creates carries the alias [`LINK_ALIAS_MARK`] so reconcile can find berth's own.
//! Each operation undoes its own kernel work when it fails half way. Its options are Docker's
//! `com.docker.network.bridge.*` (berth_types::BridgeOptions); a network's bridge is named by
//! `com.docker.network.bridge.name` or `br-` + 12 hex of its id, an endpoint's host veth `bth` +
//! 8 hex of its id.

use std::fs::File;
use std::path::Path;

use berth_firewall::NetworkPolicy;
use berth_netlink::{Link, Netlink, VethPeer, VethSettings};
use berth_types::{
    validate_interface_name, BridgeOptions, EndpointRecord, MacAddress, NetworkRecord, BRIDGE_DRIVER, HOST_VETH_PREFIX,
    LINK_ALIAS_MARK, OPTION_BRIDGE_NAME,
};
use ipnet::IpNet;

use crate::{DriverError, DriverFuture, NetworkDriver};

/// Kernel work of bridge networks, through a netlink handle of the daemon's namespace.
#[derive(Debug, Clone)]
pub struct BridgeDriver {
    host: Netlink,
}

/// A link berth made: marked with its alias, or a host veth by its name, which also covers a
/// veth whose creation was cut short before the alias was set.
fn is_berth_link(link: &Link) -> bool {
    link.alias.as_deref() == Some(LINK_ALIAS_MARK)
        || (link.name.starts_with(HOST_VETH_PREFIX) && link.kind.as_deref() == Some("veth"))
}

/// The smallest MTU IPv6 allows on a link (RFC 8200).
const IPV6_MIN_MTU: u32 = 1280;

impl BridgeDriver {
    pub fn new(host: Netlink) -> Self {
        Self { host }
    }

    /// Checks the options and names the bridge: the name asked for, or `br-` + 12 hex of the
    /// network's id; refused when another network has it.
    fn plan_network(&self, network: &mut NetworkRecord, others: &[&NetworkRecord]) -> Result<(), DriverError> {
        let options = BridgeOptions::parse(&network.options).map_err(DriverError::BadRequest)?;
        if let Some(mtu) = options.mtu.filter(|&mtu| network.enable_ipv6 && mtu < IPV6_MIN_MTU) {
            return Err(DriverError::BadRequest(format!(
                "MTU {mtu} is too small for IPv6, which needs at least {IPV6_MIN_MTU}"
            )));
        }
        let bridge = match network.options.get(OPTION_BRIDGE_NAME) {
            Some(name) => {
                validate_interface_name(name).map_err(DriverError::BadRequest)?;
                name.clone()
            }
            None => format!("br-{}", &network.id[..12]),
        };
        if let Some(other) = others.iter().find(|n| n.driver_state.bridge == bridge) {
            return Err(DriverError::Conflict(format!(
                "bridge name {bridge} is already used by network {}",
                other.name
            )));
        }
        network.driver_state.bridge = bridge;
        Ok(())
    }

    /// Makes the network's bridge exist, up, with its gateway addresses. A bridge berth made
    /// before (same name, berth's mark) is adopted, so this also repairs on reconcile; a link of
    /// that name that berth did not make is refused.
    async fn create_network(&self, network: &NetworkRecord) -> Result<(), DriverError> {
        let options = network.bridge_options();
        let (index, created) = match self.host.link_by_name(&network.driver_state.bridge).await? {
            Some(link) if is_berth_link(&link) && link.kind.as_deref() == Some("bridge") => (link.index, false),
            Some(_) => {
                return Err(DriverError::Conflict(format!(
                    "bridge name {} is already used by a link berth did not create",
                    network.driver_state.bridge
                )))
            }
            None => (self.host.create_bridge(&network.driver_state.bridge, LINK_ALIAS_MARK, options.mtu).await?, true),
        };
        let configured = async {
            // With inhibit_ipv4 the IPv4 gateway is some other host on the segment.
            for subnet in network.subnets.iter().filter(|s| !(options.inhibit_ipv4 && s.subnet.addr().is_ipv4())) {
                let gateway = IpNet::new(subnet.gateway, subnet.subnet.prefix_len())
                    .expect("a recorded subnet's prefix length is valid for its gateway");
                self.host.add_address(index, gateway).await?;
            }
            self.host.set_up(index).await
        }
        .await;
        if let Err(e) = configured {
            if created {
                let _ = self.host.delete_link(index).await;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Deletes the network's bridge (gone already is fine).
    async fn delete_network(&self, network: &NetworkRecord) -> Result<(), DriverError> {
        self.delete_own_link(&network.driver_state.bridge).await
    }

    async fn delete_own_link(&self, name: &str) -> Result<(), DriverError> {
        match self.host.link_by_name(name).await? {
            Some(link) if is_berth_link(&link) => Ok(self.host.delete_link(link.index).await?),
            _ => Ok(()),
        }
    }

    /// Connects the sandbox whose namespace is `netns` to `network` as `endpoint` describes:
    /// veth pair, addresses, MAC, and (when `default_route`) the default routes via the
    /// gateways. On failure the veth pair is removed again.
    async fn join(
        &self,
        network: &NetworkRecord,
        endpoint: &EndpointRecord,
        netns: &Path,
        default_route: bool,
    ) -> Result<String, DriverError> {
        let options = network.bridge_options();
        let bridge = self.host.link_by_name(&network.driver_state.bridge).await?.ok_or_else(|| {
            DriverError::Conflict(format!(
                "bridge {} of network {} is missing",
                network.driver_state.bridge, network.name
            ))
        })?;
        let netns_file =
            File::open(netns).map_err(|source| DriverError::OpenNetns { path: netns.display().to_string(), source })?;
        self.host
            .create_veth(
                &endpoint.driver_state.host_veth,
                LINK_ALIAS_MARK,
                bridge.index,
                VethPeer {
                    name: &endpoint.interface,
                    // The controller chose it; empty lets the kernel pick one.
                    mac: endpoint.mac.parse::<MacAddress>().ok().map(MacAddress::octets),
                    netns: &netns_file,
                },
                VethSettings { mtu: options.mtu, isolated: !options.enable_icc },
            )
            .await?;
        let configured = self.configure_inside(endpoint, netns, default_route).await;
        if configured.is_err() {
            let _ = self.delete_own_link(&endpoint.driver_state.host_veth).await;
        }
        configured
    }

    /// Sets the sandbox's end up; returns its MAC.
    async fn configure_inside(
        &self,
        endpoint: &EndpointRecord,
        netns: &Path,
        default_route: bool,
    ) -> Result<String, DriverError> {
        let interface = endpoint.interface.clone();
        let v6 = endpoint.ipv6.is_some();
        berth_sys::netns::run_in_netns(netns, move || {
            use berth_sys::sysctl::set_sysctl;
            set_sysctl(&format!("net/ipv6/conf/{interface}/accept_ra"), "0")?;
            set_sysctl(&format!("net/ipv6/conf/{interface}/disable_ipv6"), if v6 { "0" } else { "1" })
        })??;
        let inside = Netlink::connect_in_netns(netns)?;
        let link = inside.link_by_name(&endpoint.interface).await?.ok_or_else(|| {
            DriverError::Conflict(format!(
                "interface {} vanished from the sandbox right after creation",
                endpoint.interface
            ))
        })?;
        for addr in endpoint.ipv4.map(IpNet::V4).into_iter().chain(endpoint.ipv6.map(IpNet::V6)) {
            inside.add_address(link.index, addr).await?;
        }
        inside.set_up(link.index).await?;
        if default_route {
            for gateway in endpoint.gateway4.map(Into::into).into_iter().chain(endpoint.gateway6.map(Into::into)) {
                inside.add_default_route(gateway, link.index).await?;
            }
        }
        Ok(link.mac.unwrap_or_default())
    }

    /// Whether the endpoint's host veth is present.
    async fn endpoint_exists(&self, endpoint: &EndpointRecord) -> Result<bool, DriverError> {
        Ok(self.host.link_by_name(&endpoint.driver_state.host_veth).await?.is_some())
    }

    /// Removes the endpoint's veth pair; the peer inside the sandbox goes with it.
    async fn leave(&self, endpoint: &EndpointRecord) -> Result<(), DriverError> {
        self.delete_own_link(&endpoint.driver_state.host_veth).await
    }

    /// Links in the daemon's namespace that carry berth's mark.
    async fn own_links(&self) -> Result<Vec<Link>, DriverError> {
        Ok(self.host.links().await?.into_iter().filter(is_berth_link).collect())
    }

    /// Deletes the marked links that are neither the bridge of one of `networks` nor the host
    /// veth of one of `endpoints`.
    async fn remove_orphans(
        &self,
        networks: &[&NetworkRecord],
        endpoints: &[&EndpointRecord],
    ) -> Result<Vec<String>, DriverError> {
        let known: Vec<&str> = networks
            .iter()
            .map(|n| n.driver_state.bridge.as_str())
            .chain(endpoints.iter().map(|e| e.driver_state.host_veth.as_str()))
            .collect();
        let mut removed = Vec::new();
        for link in self.own_links().await?.into_iter().filter(|l| !known.contains(&l.name.as_str())) {
            match self.host.delete_link(link.index).await {
                Ok(()) => removed.push(link.name),
                Err(e) => tracing::error!(link = %link.name, "cannot remove orphaned link: {e}"),
            }
        }
        Ok(removed)
    }
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &'static str {
        BRIDGE_DRIVER
    }

    fn plan_network(&self, network: &mut NetworkRecord, others: &[&NetworkRecord]) -> Result<(), DriverError> {
        BridgeDriver::plan_network(self, network, others)
    }

    /// The host veth is `bth` + 8 hex of the endpoint's id (fits IFNAMSIZ).
    fn plan_endpoint(&self, endpoint: &mut EndpointRecord) {
        endpoint.driver_state.host_veth = format!("{HOST_VETH_PREFIX}{}", &endpoint.id[..8]);
    }

    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::create_network(self, network))
    }

    /// The bridge is the network's interface; subnets leave masqueraded unless the network's
    /// `enable_ip_masquerade` is off or its gateway mode for the family is `routed`.
    fn firewall_policy(&self, network: &NetworkRecord) -> NetworkPolicy {
        let options = network.bridge_options();
        let subnets: Vec<IpNet> = network.subnets.iter().map(|s| s.subnet).collect();
        NetworkPolicy {
            name: network.name.clone(),
            bridge: network.driver_state.bridge.clone(),
            unmasqueraded: subnets.iter().copied().filter(|s| !options.masquerades(s.addr().is_ipv6())).collect(),
            subnets,
            internal: network.internal,
        }
    }

    fn delete_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::delete_network(self, network))
    }

    fn join<'a>(
        &'a self,
        network: &'a NetworkRecord,
        endpoint: &'a EndpointRecord,
        netns: &'a Path,
        default_route: bool,
    ) -> DriverFuture<'a, String> {
        Box::pin(BridgeDriver::join(self, network, endpoint, netns, default_route))
    }

    fn endpoint_exists<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, bool> {
        Box::pin(BridgeDriver::endpoint_exists(self, endpoint))
    }

    fn leave<'a>(&'a self, endpoint: &'a EndpointRecord) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::leave(self, endpoint))
    }

    fn own_links(&self) -> DriverFuture<'_, Vec<Link>> {
        Box::pin(BridgeDriver::own_links(self))
    }

    fn remove_orphans<'a>(
        &'a self,
        networks: &'a [&'a NetworkRecord],
        endpoints: &'a [&'a EndpointRecord],
    ) -> DriverFuture<'a, Vec<String>> {
        Box::pin(BridgeDriver::remove_orphans(self, networks, endpoints))
    }
}
