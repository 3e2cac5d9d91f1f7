//! `berth ps`, `inspect`, `stop`, `rm` and `attach`: sandboxes as berthd keeps them. Nothing
//! here starts a process (that is run.rs) or changes published ports (that is port.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_types::{NetworkMode, Sandbox, SandboxCreate};
use clap::Args;

use crate::client::{decode, route, Client};
use crate::commands::port::compact_ports;
use crate::commands::{for_each_name, inspect_each};
use crate::output::{print_json, short_id, Format, Table};

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Name of the new sandbox
    #[arg(long)]
    name: String,
    /// Network namespace another runtime made, such as /proc/PID/ns/net
    #[arg(long, value_name = "PATH")]
    netns: PathBuf,
    /// Network to connect the namespace to (the default network when not given)
    #[arg(long)]
    network: Option<String>,
    /// IPv4 address on the network
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// IPv6 address on the network
    #[arg(long, value_name = "IP")]
    ip6: Option<Ipv6Addr>,
}

pub async fn attach(client: &Client, format: Format, args: AttachArgs) -> Result<ExitCode> {
    let sandbox = client.post(&route(&["sandboxes"]), &attach_request(args)?).await?;
    match format {
        Format::Json => print_json(&sandbox),
        Format::Human => println!("{}", decode::<Sandbox>(sandbox)?.id),
    }
    Ok(ExitCode::SUCCESS)
}

fn attach_request(args: AttachArgs) -> Result<SandboxCreate> {
    // berthd opens the path from its own working directory.
    let netns =
        std::path::absolute(&args.netns).with_context(|| format!("cannot resolve --netns {}", args.netns.display()))?;
    Ok(SandboxCreate {
        name: args.name,
        network_mode: args.network.map(NetworkMode::Network),
        ipv4_address: args.ip.map(IpAddr::V4),
        ipv6_address: args.ip6.map(IpAddr::V6),
        netns: Some(netns.to_string_lossy().into_owned()),
        ..SandboxCreate::default()
    })
}

pub async fn ps(client: &Client, format: Format) -> Result<ExitCode> {
    let sandboxes = client.get(&route(&["sandboxes"])).await?;
    match format {
        Format::Json => print_json(&sandboxes),
        Format::Human => print!("{}", sandbox_table(&decode::<Vec<Sandbox>>(sandboxes)?)?.render()),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn inspect(client: &Client, sandboxes: &[String]) -> ExitCode {
    inspect_each(client, "sandboxes", sandboxes).await
}

pub async fn stop(client: &Client, sandboxes: &[String]) -> ExitCode {
    for_each_name(sandboxes, |sandbox| async move {
        client.post_empty(&route(&["sandboxes", &sandbox, "stop"])).await?;
        println!("{sandbox}");
        Ok(())
    })
    .await
}

pub async fn remove(client: &Client, force: bool, sandboxes: &[String]) -> ExitCode {
    for_each_name(sandboxes, |sandbox| async move {
        let path = format!("{}?force={force}", route(&["sandboxes", &sandbox]));
        client.delete(&path).await?;
        println!("{sandbox}");
        Ok(())
    })
    .await
}

fn sandbox_table(sandboxes: &[Sandbox]) -> Result<Table> {
    let mut table = Table::new(&["SANDBOX ID", "NAME", "NETWORKS", "IP ADDRESSES", "PIDS", "STATUS", "PORTS"]);
    for sandbox in sandboxes {
        let endpoints = &sandbox.network_settings.networks;
        let networks = if endpoints.is_empty() {
            sandbox.network_mode.clone()
        } else {
            endpoints.keys().cloned().collect::<Vec<_>>().join(",")
        };
        let addresses: Vec<&str> = endpoints
            .values()
            .flat_map(|endpoint| [&endpoint.ip_address, &endpoint.global_ipv6_address])
            .filter(|address| !address.is_empty())
            .map(String::as_str)
            .collect();
        let pids: Vec<String> = sandbox.state.pids.iter().map(u32::to_string).collect();
        let status = if sandbox.state.running { "Up" } else { "Exited" };
        table.row(vec![
            short_id(&sandbox.id).to_owned(),
            sandbox.name.clone(),
            networks,
            addresses.join(","),
            pids.join(","),
            status.to_owned(),
            compact_ports(&sandbox.name, &sandbox.network_settings.ports)?,
        ]);
    }
    Ok(table)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use berth_types::{
        port_map, EndpointSettings, NetworkSettings, PortMap, PortMapping, PortProtocol, PortRange, SandboxFiles,
        SandboxState,
    };
    use std::collections::BTreeMap;

    #[test]
    fn attach_sends_the_namespace_path() {
        let args = AttachArgs {
            name: "other".into(),
            netns: PathBuf::from("/proc/4242/ns/net"),
            network: Some("n1".into()),
            ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
            ip6: None,
        };
        let request = attach_request(args).unwrap();
        assert_eq!(request.name, "other");
        assert_eq!(request.network_mode, Some(NetworkMode::Network("n1".into())));
        assert_eq!(request.netns.as_deref(), Some("/proc/4242/ns/net"));
        assert_eq!(request.ipv4_address, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))));
        assert!(!request.auto_remove);
    }

    pub(crate) fn sandbox(name: &str, networks: &[(&str, &str, &str)], pids: &[u32]) -> Sandbox {
        let networks: BTreeMap<String, EndpointSettings> = networks
            .iter()
            .map(|(network, ipv4, ipv6)| {
                let endpoint = EndpointSettings {
                    network_id: "n".repeat(64),
                    endpoint_id: "e".repeat(64),
                    interface: "eth0".into(),
                    gateway: String::new(),
                    ip_address: ipv4.to_string(),
                    ip_prefix_len: 16,
                    ipv6_gateway: String::new(),
                    global_ipv6_address: ipv6.to_string(),
                    global_ipv6_prefix_len: 64,
                    mac_address: "02:42:0a:00:00:02".into(),
                    ..Default::default()
                };
                (network.to_string(), endpoint)
            })
            .collect();
        Sandbox {
            id: format!("{name}0123456789abcdef").repeat(4),
            name: name.into(),
            created: "2026-11-02T10:00:00Z".into(),
            hostname: "web".into(),
            network_mode: if networks.is_empty() { "none".into() } else { "bridge".into() },
            state: SandboxState {
                running: !pids.is_empty(),
                pids: pids.to_vec(),
                main_pid: None,
                started: !pids.is_empty(),
            },
            auto_remove: false,
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            extra_hosts: Vec::new(),
            files: SandboxFiles {
                hosts_path: "/run/berth/sandboxes/x/hosts".into(),
                resolv_conf_path: "/run/berth/sandboxes/x/resolv.conf".into(),
                hostname_path: "/run/berth/sandboxes/x/hostname".into(),
            },
            network_settings: NetworkSettings {
                sandbox_key: "/run/berth/netns/x".into(),
                ports: PortMap::new(),
                networks,
            },
        }
    }

    #[test]
    fn the_list_shows_networks_addresses_state_and_ports() {
        let mut web = sandbox("web", &[("bridge", "172.17.0.2", ""), ("n1", "10.10.0.2", "fd00::2")], &[4242, 4250]);
        web.network_settings.ports = port_map(&[PortMapping {
            protocol: PortProtocol::Tcp,
            host_ip: None,
            host_ports: PortRange::single(8080),
            container_ports: PortRange::single(80),
        }]);
        let sandboxes = [web, sandbox("idle", &[], &[])];
        assert_eq!(
            sandbox_table(&sandboxes).unwrap().render(),
            "SANDBOX ID     NAME   NETWORKS    IP ADDRESSES                   PIDS        STATUS   PORTS\n\
             web012345678   web    bridge,n1   172.17.0.2,10.10.0.2,fd00::2   4242,4250   Up       0.0.0.0:8080->80/tcp, :::8080->80/tcp\n\
             idle01234567   idle   none                                                   Exited\n"
        );
    }
}
