//! The shapes of the Docker Engine API subset berthd serves (docs/docker-api.md): Docker's request
//! bodies and answers for the system routes, networks, containers (berth's sandboxes) and events,
//! and its `filters` query parameter. Field names and JSON types are Docker's, so the docker CLI
//! and SDKs decode them; berth's own views are reused (flattened) where Docker's shape is theirs
//! plus a few fields. Nothing here decides anything: the daemon fills these in.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{EndpointSettings, IpamConfig, Network, PortMap};

/// The newest Docker Engine API version berthd speaks (what `/_ping` and `/version` announce).
pub const DOCKER_API_VERSION: &str = "1.47";

/// The oldest Docker Engine API version berthd accepts in a `/v1.NN/` prefix.
pub const DOCKER_MIN_API_VERSION: &str = "1.41";

/// What a sandbox shows as its image: berth runs commands on the host's filesystem, not images.
pub const SANDBOX_IMAGE: &str = "berth-sandbox";

/// Go encodes nil maps and slices as `null`; this reads `null` as the empty value.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's `filters` query parameter, `{"name": {"n1": true}}` or the older
/// `{"name": ["n1"]}`: the values given for each key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, FilterValues>")]
pub struct DockerFilters(pub BTreeMap<String, Vec<String>>);

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FilterValues {
    Set(BTreeMap<String, bool>),
    List(Vec<String>),
}

impl From<BTreeMap<String, FilterValues>> for DockerFilters {
    fn from(map: BTreeMap<String, FilterValues>) -> Self {
        Self(
            map.into_iter()
                .map(|(key, values)| {
                    let values = match values {
                        FilterValues::Set(set) => set.into_iter().filter(|(_, on)| *on).map(|(v, _)| v).collect(),
                        FilterValues::List(list) => list,
                    };
                    (key, values)
                })
                .collect(),
        )
    }
}

impl DockerFilters {
    /// The values of `key`; empty when the filter is not given.
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }
}

/// Answer of `GET /version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemVersion {
    pub platform: Platform,
    pub components: Vec<ComponentVersion>,
    pub version: String,
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub git_commit: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub build_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComponentVersion {
    pub name: String,
    pub version: String,
    pub details: BTreeMap<String, String>,
}

/// Answer of `GET /info`: the fields the docker CLI prints, with berth's values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub containers: usize,
    pub containers_running: usize,
    pub containers_paused: usize,
    pub containers_stopped: usize,
    pub images: usize,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub plugins: PluginsInfo,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    pub system_time: String,
    pub logging_driver: String,
    pub cgroup_driver: String,
    #[serde(rename = "NEventsListener")]
    pub n_events_listener: usize,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub mem_total: u64,
    pub docker_root_dir: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub server_version: String,
    pub swarm: SwarmInfo,
    pub live_restore_enabled: bool,
    pub security_options: Vec<String>,
    pub warnings: Vec<String>,
    pub debug: bool,
    /// Open file descriptors of berthd.
    #[serde(rename = "NFd")]
    pub n_fd: usize,
    /// Threads of berthd (Docker counts its goroutines here).
    pub n_goroutines: usize,
    pub runtimes: BTreeMap<String, RuntimeInfo>,
    pub default_runtime: String,
    pub index_server_address: String,
    pub registry_config: RegistryConfig,
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
}

/// One entry of `Runtimes` in `GET /info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub path: String,
}

/// `RegistryConfig` of `GET /info`: berth pulls no images, so it is Docker's empty default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    pub index_configs: BTreeMap<String, serde_json::Value>,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginsInfo {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
}

/// A network as Docker shows it: berth's view plus the swarm-era fields berth leaves at their
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerNetwork {
    #[serde(flatten)]
    pub network: Network,
    pub ingress: bool,
    pub config_from: ConfigReference,
    pub config_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigReference {
    pub network: String,
}

/// Body of `POST /networks/create`; `CheckDuplicate` (always done) is accepted and ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DockerNetworkCreate {
    pub name: String,
    pub driver: String,
    pub scope: String,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<DockerIpam>,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    pub config_from: Option<ConfigReference>,
    #[serde(deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DockerIpam {
    pub driver: String,
    #[serde(deserialize_with = "null_as_default")]
    pub config: Vec<DockerIpamConfig>,
    #[serde(deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerIpamConfig {
    #[serde(flatten)]
    pub config: IpamConfig,
    #[serde(default, deserialize_with = "null_as_default")]
    pub auxiliary_addresses: BTreeMap<String, String>,
}

/// Answer of `POST /networks/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    pub id: String,
    pub warning: String,
}

/// Body of `POST /networks/{id}/connect`. `Aliases` are kept; `Links` and the rest of
/// `EndpointConfig` are accepted and ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DockerNetworkConnect {
    pub container: String,
    pub endpoint_config: Option<EndpointConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(rename = "Aliases")]
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "MacAddress")]
    pub mac_address: Option<String>,
    /// Per-endpoint driver options: berth's bridge driver has none, so any is refused.
    #[serde(rename = "DriverOpts")]
    pub driver_opts: Option<BTreeMap<String, String>>,
}

/// Docker's `IPAMConfig` of an endpoint: the addresses asked for, in requests and views.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", with = "crate::optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<std::net::IpAddr>,
    #[serde(rename = "IPv6Address", with = "crate::optional_text", skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<std::net::IpAddr>,
}

/// `{}`: the value of each key of Docker's `ExposedPorts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// One published port in `GET /containers/json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSummary {
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    #[serde(rename = "PublicPort")]
    pub public_port: u16,
    #[serde(rename = "Type")]
    pub protocol: String,
}

/// One entry of `GET /containers/json`: a sandbox as a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    pub ports: Vec<PortSummary>,
    pub labels: BTreeMap<String, String>,
    /// `created`, `running` or `exited`.
    pub state: String,
    /// `Up 5 minutes`, `Exited` or `Created`.
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworkSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworkSettings {
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// Answer of `GET /containers/{id}/json`: a sandbox as a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    /// `/` + the sandbox's name.
    pub name: String,
    pub restart_count: u32,
    pub driver: String,
    pub platform: String,
    pub config: ContainerConfig,
    pub host_config: ContainerHostConfig,
    pub network_settings: ContainerNetworkSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: u32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerHostConfig {
    pub network_mode: String,
    pub port_bindings: PortMap,
    pub auto_remove: bool,
    /// `--dns`: the sandbox's own upstream resolvers.
    pub dns: Vec<String>,
    /// `--dns-search`: the sandbox's own search domains.
    pub dns_search: Vec<String>,
    /// `--dns-option`: the sandbox's own resolver options.
    pub dns_options: Vec<String>,
    /// `--add-host`: further /etc/hosts entries, `NAME:IP`.
    pub extra_hosts: Vec<String>,
}

/// Docker's `NetworkSettings`; the top-level address fields are those of the default network
/// `bridge` (empty when the sandbox is not on it), as in Docker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerNetworkSettings {
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    pub sandbox_key: String,
    pub ports: PortMap,
    pub hairpin_mode: bool,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    pub mac_address: String,
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// One event of `GET /events` (Docker's `events.Message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `network` or `container`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `connect`, `disconnect`, `destroy`, `start`, `die`, `stop`.
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_both_forms() {
        let set: DockerFilters =
            serde_json::from_str(r#"{"name":{"n1":true,"n2":false},"type":{"custom":true}}"#).unwrap();
        assert_eq!(set.get("name"), ["n1"]);
        assert_eq!(set.get("type"), ["custom"]);
        assert!(set.get("label").is_empty());
        let list: DockerFilters = serde_json::from_str(r#"{"label":["a=b","c"]}"#).unwrap();
        assert_eq!(list.get("label"), ["a=b", "c"]);
    }

    #[test]
    fn network_create_takes_go_nulls() {
        let body = r#"{"Name":"n1","Driver":"bridge","EnableIPv6":null,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.1.0.0/24","Gateway":"10.1.0.1","AuxiliaryAddresses":null}],"Options":null},"Options":null,"Labels":null,"CheckDuplicate":true}"#;
        let request: DockerNetworkCreate = serde_json::from_str(body).unwrap();
        let ipam = request.ipam.unwrap();
        assert_eq!(ipam.config[0].config.subnet.as_deref(), Some("10.1.0.0/24"));
        assert_eq!(ipam.config[0].config.gateway.as_deref(), Some("10.1.0.1"));
        assert!(request.enable_ipv6.is_none() && request.labels.is_empty());
    }

    #[test]
    fn connect_reads_the_endpoint_address() {
        let body = r#"{"Container":"web","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.1.0.5"},"Aliases":null,"Links":null}}"#;
        let request: DockerNetworkConnect = serde_json::from_str(body).unwrap();
        let ipam = request.endpoint_config.unwrap().ipam_config.unwrap();
        assert_eq!(ipam.ipv4_address, Some("10.1.0.5".parse().unwrap()));
    }
}
