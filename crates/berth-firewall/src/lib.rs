//! The host firewall berth needs for bridge networks: masquerade out, DNAT for published ports,
//! hairpin, isolation between networks, internal networks and a hook chain for the user's rules.
//!
//! This file holds the model ([`Ruleset`], [`NetworkPolicy`], [`Dnat`]), the [`Firewall`] trait
//! and [`select`], which picks an implementation: [`NftFirewall`] (one table, `inet berth`) or
//! [`NoFirewall`]. [`watch_changes`] tells the daemon when anything in nftables changed so it
//! can check [`Firewall::matches`] and re-apply. [`start_resolver_redirect`] is the one rule berth puts
//! inside a sandbox's own namespace (for the embedded DNS). Nothing here knows about the store, IPAM or
//! links, and nothing here ever touches a table other than berth's own.

mod events;
mod nft;
mod none;
mod own_writes;
mod resolver_redirect;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use berth_types::{PortProtocol, PortRange};
use ipnet::IpNet;

pub use events::watch_changes;
pub use nft::{NftFirewall, NftRun};
pub use none::NoFirewall;
pub use resolver_redirect::{start_resolver_redirect, RESOLVER_TABLE};

/// What the firewall must do for one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The network's name, for messages only.
    pub name: String,
    /// The Linux bridge the network's endpoints hang off.
    pub bridge: String,
    /// The network's subnets, v4 and v6.
    pub subnets: Vec<IpNet>,
    /// An internal network has no way out and none in: no masquerade, nothing forwarded to or
    /// from other interfaces.
    pub internal: bool,
    /// Subnets (of `subnets`) whose traffic leaves without masquerade: the network's
    /// `enable_ip_masquerade` is off, or its gateway mode for that family is `routed`.
    pub unmasqueraded: Vec<IpNet>,
}

/// A sandbox's published container port on a network in routed gateway mode: reachable from
/// outside at the sandbox's own address, not only through DNAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoutedPort {
    pub protocol: PortProtocol,
    pub address: IpAddr,
    pub port: u16,
}

/// One published port mapping: packets to `host_ip` (or any local address) on `host_ports`
/// go to `target` on `target_ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dnat {
    pub protocol: PortProtocol,
    /// None: every local address of the target's family (but never loopback).
    pub host_ip: Option<IpAddr>,
    pub host_ports: PortRange,
    pub target: IpAddr,
    /// Equal to `host_ports` (the port is kept), a single port every host port maps to, or a
    /// range of the same length as `host_ports` (port N of one maps to port N of the other).
    pub target_ports: PortRange,
}

impl fmt::Display for Dnat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            None => write!(f, "*")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        write!(f, ":{}/{} -> ", self.host_ports, self.protocol)?;
        match self.target {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.target_ports),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.target_ports),
        }
    }
}

/// Everything berth's table should hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub networks: Vec<NetworkPolicy>,
    pub dnats: Vec<Dnat>,
    /// DNAT host processes' connections to 127.0.0.0/8 too (berthd `--userland-proxy=false`):
    /// 127.0.0.1:PORT reaches the sandbox through the kernel, masqueraded to the bridge's
    /// address. berthd must then set `net.ipv4.conf.<bridge>.route_localnet=1` on its bridges.
    /// Off: 127.0.0.0/8 is never DNATed and the userland proxy serves loopback. `::1` is never
    /// DNATed either way (the kernel cannot route it out of a bridge).
    pub loopback_dnat: bool,
    /// Container ports open straight from outside (routed networks).
    pub routed_ports: Vec<RoutedPort>,
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot {action}: cannot run nft: {source}")]
    Spawn {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action}: nft failed: {message}")]
    Nft { action: String, message: String },
    #[error("cannot read the listing of table inet berth: {0}")]
    Listing(String),
    #[error("invalid port mapping {dnat}: {reason}")]
    InvalidDnat { dnat: String, reason: String },
    #[error("invalid network {name:?}: {reason}")]
    InvalidNetwork { name: String, reason: String },
    #[error("cannot watch nftables changes: {0}")]
    Watch(#[source] std::io::Error),
    #[error("unknown firewall {0:?}: use nftables or none")]
    UnknownKind(String),
}

/// A host firewall for berth's networks. Every method is a blocking call (it runs `nft`): call
/// it from a blocking thread, not from an async worker.
pub trait Firewall: Send + Sync + fmt::Debug {
    /// Makes berth's table hold exactly `ruleset`, in one atomic batch: applying twice leaves
    /// exactly one copy of every rule and element, other tables and the rules a user put in the
    /// hook chain are never touched.
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError>;
    /// Adds DNAT entries in one atomic batch whose cost does not depend on how many entries
    /// exist (map elements, no per-port rules). Fails, adding none, when one overlaps an entry
    /// that exists.
    fn add_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError>;
    /// Removes DNAT entries in one atomic batch. Fails, removing none, when one does not exist:
    /// callers remove only what they added.
    fn remove_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError>;
    /// Opens routed ports in one atomic batch (set elements, like DNAT entries).
    fn add_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError>;
    /// Closes routed ports in one atomic batch. Fails, closing none, when one is not open.
    fn remove_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError>;
    /// Whether the kernel still holds what `ruleset` describes: the table, every chain with the
    /// expected number of berth's rules, every set and map with exactly the expected elements.
    fn matches(&self, ruleset: &Ruleset) -> Result<bool, FirewallError>;
}

/// Which firewall berthd drives, as given to its `--firewall` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallKind {
    /// berth's own nftables table.
    Nftables,
    /// No firewall at all: the user takes care of NAT and filtering.
    None,
}

impl FromStr for FirewallKind {
    type Err = FirewallError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "nftables" => Ok(Self::Nftables),
            "none" => Ok(Self::None),
            other => Err(FirewallError::UnknownKind(other.to_owned())),
        }
    }
}

impl fmt::Display for FirewallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nftables => "nftables",
            Self::None => "none",
        })
    }
}

/// The firewall for `kind`.
pub fn select(kind: FirewallKind) -> Box<dyn Firewall> {
    match kind {
        FirewallKind::Nftables => Box::new(NftFirewall::new()),
        FirewallKind::None => Box::new(NoFirewall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for kind in [FirewallKind::Nftables, FirewallKind::None] {
            assert_eq!(kind.to_string().parse::<FirewallKind>().unwrap(), kind);
        }
        let err = "iptables".parse::<FirewallKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown firewall \"iptables\": use nftables or none");
    }

    #[test]
    fn dnats_print_like_port_specs() {
        let dnat = Dnat {
            protocol: PortProtocol::Udp,
            host_ip: Some("2001:db8::1".parse().unwrap()),
            host_ports: PortRange { start: 5000, end: 5010 },
            target: "fd00::2".parse().unwrap(),
            target_ports: PortRange::single(53),
        };
        assert_eq!(dnat.to_string(), "[2001:db8::1]:5000-5010/udp -> [fd00::2]:53");
        let dnat = Dnat { host_ip: None, target: "172.17.0.2".parse().unwrap(), ..dnat };
        assert_eq!(dnat.to_string(), "*:5000-5010/udp -> 172.17.0.2:53");
    }

    #[test]
    fn the_none_firewall_always_matches() {
        let firewall = select(FirewallKind::None);
        let ruleset = Ruleset::default();
        firewall.apply(&ruleset).unwrap();
        assert!(firewall.matches(&ruleset).unwrap());
    }
}
