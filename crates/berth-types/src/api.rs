//! The JSON shapes of berthd's HTTP API (see docs/api.md), with Docker's field names.

use std::collections::BTreeMap;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{optional_text, MacAddress, NetworkMode, PortSpec};

/// API version prefix of every route.
pub const API_PREFIX: &str = "/v1";

/// Error body of every failed request: `{"message": "..."}`, as Docker answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    pub config: Vec<IpamConfig>,
}

/// One sandbox as seen from a network (`Containers` of a network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    /// CIDR notation, empty when none.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    /// Any sandbox may be connected to it (Docker's swarm flag; every berth network is local,
    /// so it is only kept and shown).
    pub attachable: bool,
    /// Sandboxes on this network, by sandbox id.
    pub containers: BTreeMap<String, NetworkContainer>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Body of `POST /v1/networks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreate {
    pub name: String,
    /// `bridge` when empty.
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    pub internal: bool,
    pub attachable: bool,
    /// Up to one v4 and one v6 entry; an empty list lets IPAM choose a v4 subnet.
    #[serde(rename = "IPAM")]
    pub ipam_config: Vec<IpamConfig>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Answer of `POST /v1/networks/prune`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub networks_deleted: Vec<String>,
}

/// Body of `POST /v1/networks/{network}/connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkConnect {
    /// Sandbox name or id.
    pub container: String,
    #[serde(rename = "IPv4Address", with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<IpAddr>,
    #[serde(rename = "IPv6Address", with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<IpAddr>,
    /// Further names of the sandbox on this network (kept for DNS).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The endpoint's MAC address (`--mac-address`); derived from the IPv4 address when absent.
    #[serde(with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<MacAddress>,
}

/// Body of `POST /v1/networks/{network}/disconnect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkDisconnect {
    pub container: String,
}

/// Body of `POST /v1/sandboxes`: `berth run` (a new namespace) and `berth attach` (an existing one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SandboxCreate {
    /// Generated (adjective_noun style) when empty.
    pub name: String,
    /// A network name or id, or `host`, `none`, `container:NAME`; the default network when
    /// absent or empty.
    #[serde(with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    #[serde(rename = "IPv4Address", with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<IpAddr>,
    #[serde(rename = "IPv6Address", with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<IpAddr>,
    /// MAC address of the sandbox's endpoint on its network (`--mac-address`).
    #[serde(with = "optional_text", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<MacAddress>,
    /// Defaults to the first 12 characters of the id.
    pub hostname: String,
    /// Set by `berth attach`: the namespace another runtime made (`/proc/PID/ns/net`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub auto_remove: bool,
    /// `-p` specs, written as the user wrote them.
    pub ports: Vec<PortSpec>,
    /// Container ports (`--expose 80/tcp`) that `PublishAll` (`-P`) publishes on random ports.
    pub expose: Vec<PortSpec>,
    pub publish_all: bool,
    /// Further names of the sandbox on its network (`--network-alias`).
    pub aliases: Vec<String>,
    /// The sandbox's own upstream resolvers (`--dns`), IP addresses.
    pub dns: Vec<String>,
    /// The sandbox's own search domains (`--dns-search`); `.` alone means none.
    pub dns_search: Vec<String>,
    /// The sandbox's own resolver options (`--dns-option`, e.g. `ndots:1`).
    pub dns_options: Vec<String>,
    /// Further /etc/hosts entries (`--add-host NAME:IP`, IP may be `host-gateway`).
    pub extra_hosts: Vec<String>,
}

/// Body of `POST /v1/sandboxes/{sandbox}/ports` (publish) and
/// `POST /v1/sandboxes/{sandbox}/ports/remove` (unpublish; a spec matches the mappings of its
/// container ports and protocol, and its host address and ports when given).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortsChange {
    pub ports: Vec<PortSpec>,
}

/// Body of `POST /v1/sandboxes/{sandbox}/processes`: a process now runs in the sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessRegister {
    pub pid: u32,
    /// The sandbox's main process: when it ends and the sandbox has AutoRemove, berthd removes it.
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxState {
    pub running: bool,
    pub pids: Vec<u32>,
    /// The main process (`berth run`'s command), as registered, whether it still runs or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<u32>,
    /// Whether a process was ever registered: a sandbox that has none running has exited.
    #[serde(default)]
    pub started: bool,
}

/// One network of a sandbox (Docker's `NetworkSettings.Networks[name]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The interface name inside the sandbox (not in Docker's shape).
    pub interface: String,
    /// Further names of the sandbox on this network.
    pub aliases: Vec<String>,
    /// The addresses asked for with `--ip`/`--ip6`; null when IPAM chose them.
    #[serde(rename = "IPAMConfig", default)]
    pub ipam_config: Option<crate::EndpointIpamConfig>,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// Path of the network namespace file.
    pub sandbox_key: String,
    /// Published ports in Docker's shape.
    pub ports: crate::PortMap,
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// Files a process of the sandbox sees at /etc/hosts, /etc/resolv.conf, /etc/hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxFiles {
    pub hosts_path: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub created: String,
    pub hostname: String,
    /// `bridge`-style network name list, `host`, `none` or `container:NAME`.
    pub network_mode: String,
    pub state: SandboxState,
    pub auto_remove: bool,
    /// The sandbox's own upstream resolvers (`--dns`); the daemon's when empty.
    #[serde(default)]
    pub dns: Vec<String>,
    /// The sandbox's own search domains (`--dns-search`); the host's when empty.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// The sandbox's own resolver options (`--dns-option`); the host's when empty.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Its further /etc/hosts entries (`--add-host`), `NAME:IP` with `host-gateway` resolved.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    pub files: SandboxFiles,
    pub network_settings: NetworkSettings,
}

/// Answer of `GET /v1/version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
    pub api_version: String,
    /// Process id of berthd; `/proc/PID/ns/net` is the namespace of `--network host`.
    pub pid: u32,
    /// berthd runs rootless: `pid` is its child, whose user namespace a command entering a
    /// sandbox joins first, and the sandboxes' namespace files are paths in its mount namespace.
    #[serde(default)]
    pub rootless: bool,
}
