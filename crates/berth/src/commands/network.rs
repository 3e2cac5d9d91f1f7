//! `berth network ...`: create, list, inspect, remove, prune, connect and disconnect networks. It
//! maps flags to API bodies (each `--ip-range` and `--gateway` goes with the `--subnet` that
//! contains it) and renders the answers; every other check is berthd's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use anyhow::{bail, Result};
use berth_types::{IpamConfig, MacAddress, Network, NetworkConnect, NetworkCreate, NetworkDisconnect, PruneReport};
use clap::{Args, Subcommand};
use ipnet::IpNet;

use crate::client::{decode, route, Client};
use crate::commands::{for_each_name, inspect_each};
use crate::output::{print_json, short_id, Format, Table};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network and print its id
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls,
    /// Show networks as JSON
    Inspect {
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Remove networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Remove every user network that has no sandbox on it
    Prune {
        /// Accepted for docker compatibility; berth never asks for confirmation
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a sandbox to a network
    Connect(ConnectArgs),
    /// Disconnect a sandbox from a network
    Disconnect { network: String, sandbox: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Network driver
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet of the network; give it twice for one IPv4 and one IPv6 subnet
    #[arg(long = "subnet", value_name = "CIDR")]
    subnets: Vec<IpNet>,
    /// Allocate sandbox addresses from this range of the subnet that contains it
    #[arg(long = "ip-range", value_name = "CIDR")]
    ip_ranges: Vec<IpNet>,
    /// Gateway of the subnet that contains it
    #[arg(long = "gateway", value_name = "IP")]
    gateways: Vec<IpAddr>,
    /// Enable IPv6 (with an IPv6 --subnet, or a /64 from the daemon's IPv6 address pool)
    #[arg(long)]
    ipv6: bool,
    /// No outbound traffic: sandboxes reach only each other
    #[arg(long)]
    internal: bool,
    /// Mark the network attachable (Docker's flag; kept and shown)
    #[arg(long)]
    attachable: bool,
    /// Driver option, such as com.docker.network.bridge.name=br0
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    options: Vec<(String, String)>,
    /// Label of the network
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Name of the new network
    name: String,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// IPv4 address of the sandbox on this network
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// IPv6 address of the sandbox on this network
    #[arg(long, value_name = "IP")]
    ip6: Option<Ipv6Addr>,
    /// MAC address of the sandbox on this network (unicast, unused there)
    #[arg(long, value_name = "MAC")]
    mac_address: Option<MacAddress>,
    /// A further name of the sandbox on this network, for the embedded DNS (repeatable;
    /// `--network-alias` as with `berth run`)
    #[arg(long = "alias", visible_alias = "network-alias", value_name = "NAME")]
    aliases: Vec<String>,
    /// Name or id of the network
    network: String,
    /// Name or id of the sandbox
    sandbox: String,
}

pub async fn execute(client: &Client, format: Format, command: NetworkCommand) -> Result<ExitCode> {
    match command {
        NetworkCommand::Create(args) => {
            let network = client.post(&route(&["networks"]), &network_create(args)?).await?;
            match format {
                Format::Json => print_json(&network),
                Format::Human => println!("{}", decode::<Network>(network)?.id),
            }
        }
        NetworkCommand::Ls => {
            let networks = client.get(&route(&["networks"])).await?;
            match format {
                Format::Json => print_json(&networks),
                Format::Human => print!("{}", network_table(&decode::<Vec<Network>>(networks)?).render()),
            }
        }
        NetworkCommand::Inspect { networks } => return Ok(inspect_each(client, "networks", &networks).await),
        NetworkCommand::Rm { networks } => {
            let exit = for_each_name(&networks, |network| async move {
                client.delete(&route(&["networks", &network])).await?;
                println!("{network}");
                Ok(())
            });
            return Ok(exit.await);
        }
        NetworkCommand::Prune { force: _ } => {
            let report = client.post_empty(&route(&["networks", "prune"])).await?;
            match format {
                Format::Json => print_json(&report),
                Format::Human => print!("{}", prune_summary(&decode(report)?)),
            }
        }
        NetworkCommand::Connect(args) => {
            let request = NetworkConnect {
                container: args.sandbox,
                ipv4_address: args.ip.map(IpAddr::V4),
                ipv6_address: args.ip6.map(IpAddr::V6),
                aliases: args.aliases,
                mac_address: args.mac_address,
            };
            let sandbox = client.post(&route(&["networks", &args.network, "connect"]), &request).await?;
            if format == Format::Json {
                print_json(&sandbox);
            }
        }
        NetworkCommand::Disconnect { network, sandbox } => {
            let request = NetworkDisconnect { container: sandbox };
            let sandbox = client.post(&route(&["networks", &network, "disconnect"]), &request).await?;
            if format == Format::Json {
                print_json(&sandbox);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn network_create(args: CreateArgs) -> Result<NetworkCreate> {
    Ok(NetworkCreate {
        ipam_config: ipam_config(&args.subnets, &args.ip_ranges, &args.gateways)?,
        name: args.name,
        driver: args.driver,
        enable_ipv6: args.ipv6,
        internal: args.internal,
        attachable: args.attachable,
        options: args.options.into_iter().collect(),
        labels: args.labels.into_iter().collect(),
    })
}

/// One IPAM entry per `--subnet`, in the order given; each `--ip-range` and `--gateway` joins
/// the first subnet that contains it, whatever its position on the command line.
fn ipam_config(subnets: &[IpNet], ip_ranges: &[IpNet], gateways: &[IpAddr]) -> Result<Vec<IpamConfig>> {
    let mut configs: Vec<IpamConfig> =
        subnets.iter().map(|subnet| IpamConfig { subnet: Some(subnet.to_string()), ..IpamConfig::default() }).collect();
    for ip_range in ip_ranges {
        let Some(index) = subnets.iter().position(|subnet| subnet.contains(ip_range)) else {
            bail!("--ip-range {ip_range} is not inside any --subnet");
        };
        let config = &mut configs[index];
        if let Some(earlier) = &config.ip_range {
            bail!("subnet {} has two ip ranges: {earlier} and {ip_range}", subnets[index]);
        }
        config.ip_range = Some(ip_range.to_string());
    }
    for gateway in gateways {
        let Some(index) = subnets.iter().position(|subnet| subnet.contains(gateway)) else {
            bail!("--gateway {gateway} is not inside any --subnet");
        };
        let config = &mut configs[index];
        if let Some(earlier) = &config.gateway {
            bail!("subnet {} has two gateways: {earlier} and {gateway}", subnets[index]);
        }
        config.gateway = Some(gateway.to_string());
    }
    Ok(configs)
}

/// `KEY=VALUE`, or `KEY` alone for an empty value, as docker takes labels and options.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(format!("{text:?} has no key: expected KEY=VALUE"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

fn network_table(networks: &[Network]) -> Table {
    let mut table = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"]);
    for network in networks {
        let subnets: Vec<&str> = network.ipam.config.iter().filter_map(|config| config.subnet.as_deref()).collect();
        table.row(vec![
            short_id(&network.id).to_owned(),
            network.name.clone(),
            network.driver.clone(),
            network.scope.clone(),
            subnets.join(","),
        ]);
    }
    table
}

fn prune_summary(report: &PruneReport) -> String {
    if report.networks_deleted.is_empty() {
        return String::new();
    }
    let mut text = String::from("Deleted Networks:\n");
    for name in &report.networks_deleted {
        text.push_str(name);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::Ipam;
    use clap::Parser;
    use std::collections::BTreeMap;

    fn key_values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: NetworkCommand,
    }

    /// Parses `berth network create` with `command_line`, split at spaces, and builds the request.
    fn create(command_line: &str) -> Result<NetworkCreate> {
        let args = command_line.split_whitespace();
        let cli = TestCli::try_parse_from(["network", "create"].into_iter().chain(args))?;
        let NetworkCommand::Create(args) = cli.command else {
            unreachable!("parsed a create command");
        };
        network_create(args)
    }

    fn entry(subnet: &str, ip_range: Option<&str>, gateway: Option<&str>) -> IpamConfig {
        IpamConfig { subnet: Some(subnet.into()), ip_range: ip_range.map(Into::into), gateway: gateway.map(Into::into) }
    }

    #[test]
    fn a_bare_create_lets_ipam_choose() {
        let request = create("n1").unwrap();
        assert_eq!(request.name, "n1");
        assert_eq!(request.driver, "bridge");
        assert!(request.ipam_config.is_empty());
        assert!(!request.enable_ipv6);
    }

    #[test]
    fn ranges_and_gateways_pair_with_their_subnet_by_family() {
        let request = create(
            "--ipv6 --subnet 10.10.0.0/16 --subnet fd00:10::/64 \
             --gateway fd00:10::1 --gateway 10.10.0.254 \
             --ip-range fd00:10::/80 --ip-range 10.10.5.0/24 n1",
        )
        .unwrap();
        assert_eq!(
            request.ipam_config,
            vec![
                entry("10.10.0.0/16", Some("10.10.5.0/24"), Some("10.10.0.254")),
                entry("fd00:10::/64", Some("fd00:10::/80"), Some("fd00:10::1")),
            ]
        );
        assert!(request.enable_ipv6);
    }

    #[test]
    fn a_gateway_outside_every_subnet_is_refused() {
        let error = create("--subnet 10.10.0.0/16 --gateway 10.11.0.1 n1");
        assert_eq!(error.unwrap_err().to_string(), "--gateway 10.11.0.1 is not inside any --subnet");
        let error = create("--gateway fd00::1 n1");
        assert_eq!(error.unwrap_err().to_string(), "--gateway fd00::1 is not inside any --subnet");
    }

    #[test]
    fn two_gateways_for_one_subnet_are_refused() {
        let error = create("--subnet 10.10.0.0/16 --gateway 10.10.0.1 --gateway 10.10.0.2 n1");
        assert_eq!(error.unwrap_err().to_string(), "subnet 10.10.0.0/16 has two gateways: 10.10.0.1 and 10.10.0.2");
    }

    #[test]
    fn options_and_labels_become_maps() {
        let request = create(
            "-o com.docker.network.bridge.name=br-test \
             --label team=net --label flag --label team=infra --internal n1",
        )
        .unwrap();
        assert_eq!(request.options, key_values(&[("com.docker.network.bridge.name", "br-test")]));
        assert_eq!(request.labels, key_values(&[("flag", ""), ("team", "infra")]));
        assert!(request.internal);
    }

    #[test]
    fn a_malformed_subnet_is_a_usage_error() {
        let error = create("--subnet 10.10.0.0 n1").unwrap_err();
        let error = error.downcast::<clap::Error>().unwrap();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn the_list_shows_short_ids_and_subnets() {
        let network = Network {
            name: "n1".into(),
            id: "0123456789abcdef".repeat(4),
            created: "2026-11-02T10:00:00Z".into(),
            scope: "local".into(),
            driver: "bridge".into(),
            enable_ipv6: true,
            ipam: Ipam {
                driver: "default".into(),
                config: vec![entry("10.10.0.0/16", None, None), entry("fd00::/64", None, None)],
            },
            internal: false,
            attachable: false,
            containers: BTreeMap::new(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
        assert_eq!(
            network_table(&[network]).render(),
            "NETWORK ID     NAME   DRIVER   SCOPE   SUBNET\n\
             0123456789ab   n1     bridge   local   10.10.0.0/16,fd00::/64\n"
        );
    }

    #[test]
    fn prune_lists_what_it_deleted() {
        let report = PruneReport { networks_deleted: vec!["a".into(), "b".into()] };
        assert_eq!(prune_summary(&report), "Deleted Networks:\na\nb\n");
        assert_eq!(prune_summary(&PruneReport::default()), "");
    }
}
