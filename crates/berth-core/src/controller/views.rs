//! Records to API views: a network with the sandboxes on it, a sandbox with its endpoints and
//! live processes, in Docker's shapes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_types::{
    port_map, EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, Network, NetworkContainer, NetworkRecord,
    NetworkSettings, RequestedAddresses, Sandbox, SandboxFiles, SandboxMode, SandboxRecord, SandboxState,
    DEFAULT_NETWORK,
};

use super::sandboxes::live_pids;
use super::State;
use crate::sandbox_files::{hostname_path, hosts_path, resolv_conf_path};

impl State {
    pub(super) fn network_view(&self, network: &NetworkRecord) -> Network {
        let containers = self
            .endpoints_on(&network.id)
            .map(|(sandbox, endpoint)| {
                (
                    sandbox.id.clone(),
                    NetworkContainer {
                        name: sandbox.name.clone(),
                        endpoint_id: endpoint.id.clone(),
                        mac_address: endpoint.mac.clone(),
                        ipv4_address: endpoint.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                        ipv6_address: endpoint.ipv6.map(|a| a.to_string()).unwrap_or_default(),
                    },
                )
            })
            .collect();
        Network {
            name: network.name.clone(),
            id: network.id.clone(),
            created: network.created.clone(),
            scope: "local".into(),
            driver: network.driver.clone(),
            enable_ipv6: network.enable_ipv6,
            ipam: Ipam {
                driver: "default".into(),
                config: network
                    .subnets
                    .iter()
                    .map(|s| IpamConfig {
                        subnet: Some(s.subnet.to_string()),
                        ip_range: s.ip_range.map(|r| r.to_string()),
                        gateway: Some(s.gateway.to_string()),
                    })
                    .collect(),
            },
            internal: network.internal,
            attachable: network.attachable,
            containers,
            options: network.options.clone(),
            labels: network.labels.clone(),
        }
    }

    /// The first network's name (the default network's when none), `host`, `none`,
    /// `container:NAME` or, for attached namespaces, `attached`.
    pub(super) fn mode_text(&self, sandbox: &SandboxRecord) -> String {
        match &sandbox.mode {
            SandboxMode::Networked => sandbox
                .endpoints
                .first()
                .and_then(|e| self.networks.get(&e.network_id))
                .map_or_else(|| DEFAULT_NETWORK.to_owned(), |n| n.name.clone()),
            SandboxMode::None => "none".into(),
            SandboxMode::Host => "host".into(),
            SandboxMode::Container(id) => {
                format!("container:{}", self.sandboxes.get(id).map_or(id.as_str(), |s| s.name.as_str()))
            }
            SandboxMode::Attached => "attached".into(),
        }
    }

    pub(super) fn sandbox_view(&self, sandbox: &SandboxRecord) -> Sandbox {
        let pids = live_pids(sandbox);
        let networks: BTreeMap<String, EndpointSettings> = sandbox
            .endpoints
            .iter()
            .map(|endpoint| {
                let name = self
                    .networks
                    .get(&endpoint.network_id)
                    .map_or_else(|| endpoint.network_id.clone(), |n| n.name.clone());
                let settings = EndpointSettings {
                    network_id: endpoint.network_id.clone(),
                    endpoint_id: endpoint.id.clone(),
                    interface: endpoint.interface.clone(),
                    aliases: endpoint.aliases.clone(),
                    ipam_config: (endpoint.requested != RequestedAddresses::default()).then(|| EndpointIpamConfig {
                        ipv4_address: endpoint.requested.ipv4.map(IpAddr::V4),
                        ipv6_address: endpoint.requested.ipv6.map(IpAddr::V6),
                    }),
                    gateway: endpoint.gateway4.map(|g| g.to_string()).unwrap_or_default(),
                    ip_address: endpoint.ipv4.map(|a| a.addr().to_string()).unwrap_or_default(),
                    ip_prefix_len: endpoint.ipv4.map_or(0, |a| a.prefix_len()),
                    ipv6_gateway: endpoint.gateway6.map(|g| g.to_string()).unwrap_or_default(),
                    global_ipv6_address: endpoint.ipv6.map(|a| a.addr().to_string()).unwrap_or_default(),
                    global_ipv6_prefix_len: endpoint.ipv6.map_or(0, |a| a.prefix_len()),
                    mac_address: endpoint.mac.clone(),
                };
                (name, settings)
            })
            .collect();
        Sandbox {
            id: sandbox.id.clone(),
            name: sandbox.name.clone(),
            created: sandbox.created.clone(),
            hostname: sandbox.hostname.clone(),
            network_mode: self.mode_text(sandbox),
            state: SandboxState {
                running: !pids.is_empty(),
                pids,
                main_pid: sandbox.main_pid,
                started: sandbox.main_pid.is_some() || !sandbox.processes.is_empty(),
            },
            auto_remove: sandbox.auto_remove,
            dns: sandbox.dns_servers.iter().map(ToString::to_string).collect(),
            dns_search: sandbox.dns_search.clone(),
            dns_options: sandbox.dns_options.clone(),
            extra_hosts: sandbox.extra_hosts.iter().map(|entry| format!("{}:{}", entry.name, entry.address)).collect(),
            files: SandboxFiles {
                hosts_path: hosts_path(sandbox),
                resolv_conf_path: resolv_conf_path(sandbox),
                hostname_path: hostname_path(sandbox),
            },
            network_settings: NetworkSettings {
                sandbox_key: sandbox.netns_path.clone(),
                ports: port_map(&sandbox.ports),
                networks,
            },
        }
    }
}
