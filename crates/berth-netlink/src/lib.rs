//! Links, addresses and routes over rtnetlink, for one network namespace per [`Netlink`] handle.
//!
//! A handle talks to the namespace its socket was opened in: [`Netlink::connect`] for the current
//! one, [`Netlink::connect_in_netns`] opens the socket on a short-lived thread inside another
//! namespace and then serves it from the caller's runtime, so async workers never change
//! namespace. This crate knows nothing about networks, IPAM or the store.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot {action}: {source}")]
    Request {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error(transparent)]
    Netns(#[from] berth_sys::netns::NetnsError),
}

impl NetlinkError {
    /// The errno the kernel answered with, if the request reached it.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Request { source: rtnetlink::Error::NetlinkError(msg), .. } => Some(-msg.raw_code()),
            _ => None,
        }
    }
}

type Result<T, E = NetlinkError> = std::result::Result<T, E>;

fn failed(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let action = action.into();
    move |source| NetlinkError::Request { action, source }
}

/// A link as berth needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// `bridge`, `veth`, ... (None for links without a kind, like lo or physical NICs).
    pub kind: Option<String>,
    pub up: bool,
    pub mac: Option<String>,
    /// Index of the bridge this link is a port of.
    pub controller: Option<u32>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            alias: None,
            kind: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            mac: None,
            controller: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::IfAlias(alias) => link.alias = Some(alias),
                LinkAttribute::Controller(index) => link.controller = Some(index),
                LinkAttribute::Address(bytes) if bytes.len() == 6 => link.mac = Some(format_mac(&bytes)),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Formats a MAC address as `02:42:ac:11:00:02`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The sandbox end of a veth pair, created directly inside the sandbox's namespace.
#[derive(Debug)]
pub struct VethPeer<'a> {
    pub name: &'a str,
    pub mac: Option<[u8; 6]>,
    pub netns: &'a File,
}

/// How a veth pair hangs off its bridge.
#[derive(Debug, Clone, Copy, Default)]
pub struct VethSettings {
    /// MTU of both ends; the kernel's default (1500) when None.
    pub mtu: Option<u32>,
    /// An isolated bridge port forwards only to ports that are not (and to the bridge itself):
    /// endpoints on the same network cannot reach each other.
    pub isolated: bool,
}

/// One rtnetlink connection, bound to the namespace it was opened in.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

impl Netlink {
    /// Opens a connection in the current thread's namespace. Must be called inside a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Opens a connection whose socket lives in the namespace at `netns`; the socket is created on
    /// a dedicated thread inside it and served by the caller's tokio runtime.
    pub fn connect_in_netns(netns: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let (connection, handle, _) = berth_sys::netns::run_in_netns(netns, move || {
            let _entered = runtime.enter();
            rtnetlink::new_connection()
        })?
        .map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        let messages: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(failed("list links"))?;
        Ok(messages.into_iter().map(Link::from_message).collect())
    }

    /// The link called `name`, or None when there is none.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let mut request = self.handle.link().get().match_name(name.to_owned()).execute();
        match request.try_next().await {
            Ok(found) => Ok(found.map(Link::from_message)),
            Err(rtnetlink::Error::NetlinkError(msg)) if -msg.raw_code() == libc::ENODEV => Ok(None),
            Err(e) => Err(failed(format!("look up link {name}"))(e)),
        }
    }

    /// Creates a bridge marked with `alias` (with `mtu`, else the kernel's default), and
    /// returns its index. The bridge is left down.
    pub async fn create_bridge(&self, name: &str, alias: &str, mtu: Option<u32>) -> Result<u32> {
        let bridge = LinkBridge::new(name);
        let bridge = match mtu {
            Some(mtu) => bridge.mtu(mtu),
            None => bridge,
        };
        self.handle.link().add(bridge.build()).execute().await.map_err(failed(format!("create bridge {name}")))?;
        let index = self.index_of(name).await?;
        self.set_alias(index, alias).await?;
        Ok(index)
    }

    /// Sets a link's alias (the kernel ignores an alias given when a link is created).
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).alias(alias).build())
            .execute()
            .await
            .map_err(failed(format!("set the alias of link {index}")))
    }

    /// Creates a veth pair in one request: the host end `host_name` (up, a port of `bridge`), the
    /// peer created straight inside the peer's namespace with its name and MAC, both with the
    /// settings' MTU; then marks the host end with `alias` and puts its bridge port in hairpin
    /// mode (and isolates it when asked). Returns the host end's index.
    pub async fn create_veth(
        &self,
        host_name: &str,
        alias: &str,
        bridge: u32,
        peer: VethPeer<'_>,
        settings: VethSettings,
    ) -> Result<u32> {
        let mut peer_message = LinkUnspec::new_with_name(peer.name).setns_by_fd(peer.netns.as_raw_fd());
        if let Some(mac) = peer.mac {
            peer_message = peer_message.address(mac.to_vec());
        }
        let mut host_message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name.to_owned())
            .controller(bridge)
            .up();
        if let Some(mtu) = settings.mtu {
            peer_message = peer_message.mtu(mtu);
            host_message = host_message.mtu(mtu);
        }
        let message = host_message.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message.build()))).build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(failed(format!("create veth pair {host_name}/{}", peer.name)))?;
        let index = self.index_of(host_name).await?;
        // Hairpin: a sandbox reaching its own published port through a host address gets the
        // DNATed packets back out of the port they came in on.
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).hairpin(true).isolated(settings.isolated).alias(alias).build())
            .execute()
            .await
            .map_err(failed(format!("mark bridge port {host_name} and set it to hairpin mode")))?;
        Ok(index)
    }

    async fn index_of(&self, name: &str) -> Result<u32> {
        match self.link_by_name(name).await? {
            Some(link) => Ok(link.index),
            None => Err(NetlinkError::Request {
                action: format!("find link {name} right after creating it"),
                source: rtnetlink::Error::RequestFailed,
            }),
        }
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(failed(format!("set link {index} up")))
    }

    pub async fn delete_link(&self, index: u32) -> Result<()> {
        self.handle.link().del(index).execute().await.map_err(failed(format!("delete link {index}")))
    }

    /// Adds `addr` (with its prefix) to link `index`; IPv6 addresses skip duplicate address
    /// detection, as Docker's do, so they are usable at once.
    pub async fn add_address(&self, index: u32, addr: IpNet) -> Result<()> {
        let mut request = self.handle.address().add(index, addr.addr(), addr.prefix_len()).replace();
        if addr.addr().is_ipv6() {
            request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(failed(format!("add address {addr} to link {index}")))
    }

    /// Every address in the namespace, with the index of its link.
    pub async fn addresses(&self) -> Result<Vec<(u32, IpNet)>> {
        let messages: Vec<AddressMessage> =
            self.handle.address().get().execute().try_collect().await.map_err(failed("list addresses"))?;
        Ok(messages
            .into_iter()
            .filter_map(|msg| {
                let prefix = msg.header.prefix_len;
                msg.attributes.into_iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => IpNet::new(ip, prefix).ok().map(|net| (msg.header.index, net)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Destinations of the main table's routes of both families, default routes excluded.
    pub async fn route_destinations(&self) -> Result<Vec<IpNet>> {
        let mut destinations = Vec::new();
        for query in [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()] {
            let routes: Vec<RouteMessage> =
                self.handle.route().get(query).execute().try_collect().await.map_err(failed("list routes"))?;
            destinations.extend(routes.into_iter().filter_map(|route| {
                let len = route.header.destination_prefix_length;
                route.attributes.into_iter().find_map(|attr| match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => IpNet::new(ip.into(), len).ok(),
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => IpNet::new(ip.into(), len).ok(),
                    _ => None,
                })
            }));
        }
        Ok(destinations)
    }

    /// Adds the default route via `gateway` out of link `index`.
    pub async fn add_default_route(&self, gateway: IpAddr, index: u32) -> Result<()> {
        let message = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(index).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).output_interface(index).build(),
        };
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("add default route via {gateway}")))
    }

    /// Deletes the default route of `gateway`'s family.
    pub async fn delete_default_route(&self, gateway: IpAddr) -> Result<()> {
        let message = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build(),
        };
        self.handle.route().del(message).execute().await.map_err(failed(format!("delete default route via {gateway}")))
    }
}
