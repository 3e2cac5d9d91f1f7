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
    /// What the network's driver recorded about its kernel objects; only the driver reads it.
    #[serde(flatten)]
    pub driver_state: NetworkDriverState,
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
    /// A namespace berth creates, with endpoints on berth networks (Docker's bridge mode; stored
    /// as `bridge`).
    #[serde(rename = "bridge")]
    Networked,
    /// A namespace berth creates with only `lo` up.
    None,
    /// The daemon's own namespace.
    Host,
    /// The namespace of another sandbox, by its id.
    Container(String),
    /// A namespace another runtime made (`berth attach`); berth never deletes it.
    Attached,
}

/// A network driver's own part of a network's record, filled in when the network is planned.
/// Its fields sit at the top level of the stored record (as `bridge` always has).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDriverState {
    /// `bridge`: the network's Linux bridge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bridge: String,
}

/// A network driver's own part of an endpoint's record (top level in the stored record too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDriverState {
    /// `bridge`: the host end of the endpoint's veth pair, a port of the bridge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_veth: String,
}

/// A sandbox's attachment to one network: an interface in its namespace and whatever its
/// network's driver made for it on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// 64 hex characters.
    pub id: String,
    pub network_id: String,
    /// Name inside the sandbox (eth0, eth1, ...).
    pub interface: String,
    /// What the network's driver recorded about the endpoint; only the driver reads it.
    #[serde(flatten)]
    pub driver_state: EndpointDriverState,
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

impl EndpointRecord {
    /// The endpoint's addresses, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> {
        self.ipv4.map(|a| IpAddr::V4(a.addr())).into_iter().chain(self.ipv6.map(|a| IpAddr::V6(a.addr())))
    }
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
        matches!(self.mode, SandboxMode::Networked | SandboxMode::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_state_is_stored_where_records_always_kept_it() {
        // An endpoint and a network as berth wrote them before the driver's part was its own.
        let endpoint = r#"{"id":"e1","network_id":"n1","interface":"eth0","host_veth":"bthe1e1e1e1",
            "mac":"02:42:0a:01:00:02","ipv4":"10.1.0.2/24","ipv6":null,"gateway4":"10.1.0.1","gateway6":null}"#;
        let read: EndpointRecord = serde_json::from_str(endpoint).unwrap();
        assert_eq!(read.driver_state.host_veth, "bthe1e1e1e1");
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["host_veth"], "bthe1e1e1e1", "{written}");
        assert!(written.get("driver_state").is_none(), "{written}");

        let network = r#"{"id":"n1","name":"n","driver":"bridge","created":"2026-11-25T00:00:00Z","bridge":"br-n1",
            "internal":false,"enable_ipv6":false,"subnets":[],"options":{},"labels":{}}"#;
        let read: NetworkRecord = serde_json::from_str(network).unwrap();
        assert_eq!(read.driver_state.bridge, "br-n1");
        assert_eq!(serde_json::to_value(&read).unwrap()["bridge"], "br-n1");

        // A sandbox on networks is stored as Docker calls the mode.
        assert_eq!(serde_json::to_value(SandboxMode::Networked).unwrap(), serde_json::json!({"kind": "bridge"}));
        assert_eq!(serde_json::from_str::<SandboxMode>(r#"{"kind":"bridge"}"#).unwrap(), SandboxMode::Networked);
    }
}
