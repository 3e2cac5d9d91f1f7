//! Records: what berthd persists about networks and sandboxes. They are the daemon's truth; the
//! kernel is made to match them on start (reconcile). Allocated addresses are not stored apart:
//! they are derived from the endpoints and gateways recorded here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// One subnet of a network with its gateway; a network has at most one per address family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    pub subnet: IpNet,
    /// Addresses for endpoints come from this range when set (`--ip-range`).
    pub ip_range: Option<IpNet>,
    pub gateway: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    /// `bridge` for now; `host` and `none` are sandbox modes, not networks berth creates.
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    /// The Linux bridge of this network.
    pub bridge: String,
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub subnets: Vec<SubnetRecord>,
    /// Driver options as given (`-o KEY=VALUE`), checked at creation; see [`Self::bridge_options`].
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl NetworkRecord {
    pub fn subnet_v4(&self) -> Option<&SubnetRecord> {
        self.subnets.iter().find(|s| matches!(s.subnet, IpNet::V4(_)))
    }

    pub fn subnet_v6(&self) -> Option<&SubnetRecord> {
        self.subnets.iter().find(|s| matches!(s.subnet, IpNet::V6(_)))
    }

    /// The options, parsed. They were checked when the network was created; a record written
    /// by an older berth that stored keys it did not implement keeps the keys berth knows.
    pub fn bridge_options(&self) -> crate::BridgeOptions {
        let known = self.options.iter().filter(|(key, _)| crate::BRIDGE_OPTION_KEYS.contains(&key.as_str()));
        crate::BridgeOptions::parse(&known.map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }
}

/// How a sandbox gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "of", rename_all = "lowercase")]
pub enum SandboxMode {
    /// A namespace berth creates, with endpoints on berth networks.
    Bridge,
    /// A namespace berth creates with only `lo` up.
    None,
    /// The daemon's own namespace.
    Host,
    /// The namespace of another sandbox, by its id.
    Container(String),
    /// A namespace another runtime made (`berth attach`); berth never deletes it.
    Attached,
}

/// A sandbox's attachment to one network: a veth pair, one end on the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// 64 hex characters.
    pub id: String,
    pub network_id: String,
    /// Name inside the sandbox (eth0, eth1, ...).
    pub interface: String,
    /// Name of the host end, on the bridge (`bth` + 8 hex of the endpoint id).
    pub host_veth: String,
    /// 02:42 followed by the IPv4 address, like Docker.
    pub mac: String,
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// Further names of the sandbox on this network (`--alias`, Docker's Aliases).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The addresses the user asked for (`--ip`, `--ip6`; Docker's `IPAMConfig`), shown back.
    #[serde(default)]
    pub requested: RequestedAddresses,
}

/// Addresses asked for an endpoint, rather than picked by IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub created: String,
    pub mode: SandboxMode,
    /// The namespace file processes of this sandbox join.
    pub netns_path: String,
    /// Directory holding this sandbox's hosts and resolv.conf.
    pub config_dir: String,
    pub endpoints: Vec<EndpointRecord>,
    /// Processes registered by `berth run` / `berth exec`; dead ones are left out of views.
    /// (Records written before start times were kept had a `pids` list, which is ignored: a
    /// bare pid cannot be told from a later process that got the same number.)
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    /// The process `berth run` started; with `auto_remove`, its end removes the sandbox.
    #[serde(default)]
    pub main_pid: Option<u32>,
    /// Remove the sandbox when its main process ends (`--rm`).
    pub auto_remove: bool,
    /// Published ports, with concrete host ports.
    #[serde(default)]
    pub ports: Vec<crate::PortMapping>,
    /// The ports of the embedded resolver's listener inside the sandbox's namespace, once the
    /// sandbox has joined a user-defined network.
    #[serde(default)]
    pub resolver: Option<ResolverPorts>,
    /// Upstream resolvers of this sandbox only (`--dns`); the daemon's when empty.
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
    /// Search domains of this sandbox only (`--dns-search`, validated; `.` alone means none);
    /// the host's when empty.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Resolver options of this sandbox only (`--dns-option`); the host's when empty.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Further /etc/hosts entries (`--add-host`), in the order given.
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
}

/// A process registered with a sandbox. The pid with the process's start time (clock ticks
/// since boot, from /proc/PID/stat) names that process and no later one given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub start_time: u64,
}

/// One `--add-host` entry: a name and the address /etc/hosts gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub address: IpAddr,
}

/// Where, on the resolver address inside a sandbox, berthd's listener for it is bound; the
/// sandbox's port 53 is DNATed to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverPorts {
    pub udp: u16,
    pub tcp: u16,
}

impl SandboxRecord {
    /// Whether berth created this sandbox's namespace and must delete it with the sandbox.
    pub fn owns_netns(&self) -> bool {
        matches!(self.mode, SandboxMode::Bridge | SandboxMode::None)
    }
}
