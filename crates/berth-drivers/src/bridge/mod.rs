//! The bridge driver: a Linux bridge per network holding the gateway addresses, and per endpoint
//! a veth pair whose host end is a bridge port and whose peer is created inside the sandbox's
//! namespace as eth0, eth1, ... with Docker's MAC, its addresses and the default route. Every
//! link it creates carries the alias [`LINK_ALIAS_MARK`] so reconcile can find berth's own.
//! Each operation undoes its own kernel work when it fails half way.

use std::fs::File;
use std::path::Path;

use berth_netlink::{parse_mac, Link, Netlink, VethPeer, VethSettings};
use berth_types::{EndpointRecord, NetworkRecord, BRIDGE_DRIVER, HOST_VETH_PREFIX, LINK_ALIAS_MARK};
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

impl BridgeDriver {
    pub fn new(host: Netlink) -> Self {
        Self { host }
    }

    /// Makes the network's bridge exist, up, with its gateway addresses. A bridge berth made
    /// before (same name, berth's mark) is adopted, so this also repairs on reconcile; a link of
    /// that name that berth did not make is refused.
    async fn create_network(&self, network: &NetworkRecord) -> Result<(), DriverError> {
        let options = network.bridge_options();
        let (index, created) = match self.host.link_by_name(&network.bridge).await? {
            Some(link) if is_berth_link(&link) && link.kind.as_deref() == Some("bridge") => (link.index, false),
            Some(_) => {
                return Err(DriverError::Conflict(format!(
                    "bridge name {} is already used by a link berth did not create",
                    network.bridge
                )))
            }
            None => (self.host.create_bridge(&network.bridge, LINK_ALIAS_MARK, options.mtu).await?, true),
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
        self.delete_own_link(&network.bridge).await
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
    ) -> Result<(), DriverError> {
        let options = network.bridge_options();
        let bridge = self.host.link_by_name(&network.bridge).await?.ok_or_else(|| {
            DriverError::Conflict(format!("bridge {} of network {} is missing", network.bridge, network.name))
        })?;
        let netns_file =
            File::open(netns).map_err(|source| DriverError::OpenNetns { path: netns.display().to_string(), source })?;
        self.host
            .create_veth(
                &endpoint.host_veth,
                LINK_ALIAS_MARK,
                bridge.index,
                VethPeer {
                    name: &endpoint.interface,
                    // The controller chose it; empty lets the kernel pick one.
                    mac: parse_mac(&endpoint.mac),
                    netns: &netns_file,
                },
                VethSettings { mtu: options.mtu, isolated: !options.enable_icc },
            )
            .await?;
        let configured = self.configure_inside(endpoint, netns, default_route).await;
        if configured.is_err() {
            let _ = self.delete_own_link(&endpoint.host_veth).await;
        }
        configured
    }

    async fn configure_inside(
        &self,
        endpoint: &EndpointRecord,
        netns: &Path,
        default_route: bool,
    ) -> Result<(), DriverError> {
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
        Ok(())
    }

    /// The MAC the kernel gave the endpoint's interface (for endpoints without IPv4).
    async fn peer_mac(&self, endpoint: &EndpointRecord, netns: &Path) -> Result<String, DriverError> {
        let inside = Netlink::connect_in_netns(netns)?;
        Ok(inside.link_by_name(&endpoint.interface).await?.and_then(|l| l.mac).unwrap_or_default())
    }

    /// Whether the endpoint's host veth is present.
    async fn endpoint_exists(&self, endpoint: &EndpointRecord) -> Result<bool, DriverError> {
        Ok(self.host.link_by_name(&endpoint.host_veth).await?.is_some())
    }

    /// Removes the endpoint's veth pair; the peer inside the sandbox goes with it.
    async fn leave(&self, endpoint: &EndpointRecord) -> Result<(), DriverError> {
        self.delete_own_link(&endpoint.host_veth).await
    }

    /// Links in the daemon's namespace that carry berth's mark.
    async fn own_links(&self) -> Result<Vec<Link>, DriverError> {
        Ok(self.host.links().await?.into_iter().filter(is_berth_link).collect())
    }

    /// Deletes a link found by [`Self::own_links`].
    async fn delete_link(&self, link: &Link) -> Result<(), DriverError> {
        Ok(self.host.delete_link(link.index).await?)
    }
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &'static str {
        BRIDGE_DRIVER
    }

    fn create_network<'a>(&'a self, network: &'a NetworkRecord) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::create_network(self, network))
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
    ) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::join(self, network, endpoint, netns, default_route))
    }

    fn peer_mac<'a>(&'a self, endpoint: &'a EndpointRecord, netns: &'a Path) -> DriverFuture<'a, String> {
        Box::pin(BridgeDriver::peer_mac(self, endpoint, netns))
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

    fn delete_link<'a>(&'a self, link: &'a Link) -> DriverFuture<'a, ()> {
        Box::pin(BridgeDriver::delete_link(self, link))
    }
}
