//! `berth port`: the published ports of a sandbox as `docker port` shows them, and publishing or
//! unpublishing ports of a sandbox that exists (`port add`, `port rm`). It also checks the port
//! specs of `run -p` and `--expose`, and renders the compact PORTS column of `berth ps`. Specs are
//! checked here only for an early error and sent as typed; berthd picks host ports and programs
//! the firewall.

use std::fmt;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use berth_types::{PortBinding, PortMap, PortProtocol, PortRange, PortSpec, PortsChange, Sandbox};
use clap::{Args, Subcommand};

use crate::client::{decode, route, Client};
use crate::output::{print_json, Format};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PortArgs {
    #[command(subcommand)]
    command: Option<PortCommand>,
    /// Name or id of the sandbox whose published ports to list
    #[arg(required = true)]
    sandbox: Option<String>,
    /// Only this container port, such as 80 or 53/udp (tcp when no protocol is given)
    #[arg(value_name = "CPORT[/PROTO]", value_parser = parse_container_port)]
    container_port: Option<ContainerPort>,
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// Publish more ports of a sandbox
    Add(PortsChangeArgs),
    /// Unpublish ports of a sandbox
    ///
    /// A spec matches the mappings of its container ports and protocol, and of its host address
    /// and host ports when it gives them: `rm web 80` unpublishes every mapping of 80/tcp.
    #[command(alias = "remove")]
    Rm(PortsChangeArgs),
}

#[derive(Debug, Args)]
struct PortsChangeArgs {
    /// Name or id of the sandbox
    sandbox: String,
    /// [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/PROTO], as `run -p` takes it
    #[arg(required = true, value_name = "SPEC", value_parser = parse_publish_spec)]
    specs: Vec<PortSpec>,
}

/// One port inside the sandbox with its protocol; its text (`80/tcp`) is its key in
/// `NetworkSettings.Ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerPort {
    port: u16,
    protocol: PortProtocol,
}

impl fmt::Display for ContainerPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// A `-p` spec (and a `port add` or `port rm` spec), parsed with berth's parser.
pub fn parse_publish_spec(text: &str) -> Result<PortSpec, String> {
    PortSpec::parse(text)
}

/// An `--expose` value, `PORT[-END][/PROTO]`: container ports only.
pub fn parse_expose_spec(text: &str) -> Result<PortSpec, String> {
    let spec = PortSpec::parse(text)?;
    if text.contains(':') || spec.host_ports.is_some() || spec.host_ip.is_some() {
        return Err(format!("{text:?} names host ports: --expose takes PORT[-END][/PROTO]"));
    }
    Ok(spec)
}

/// The `CPORT[/PROTO]` of `berth port SANDBOX CPORT`.
fn parse_container_port(text: &str) -> Result<ContainerPort, String> {
    match PortSpec::parse(text) {
        Ok(spec) if !text.contains(':') && spec.container_ports.count() == 1 => {
            Ok(ContainerPort { port: spec.container_ports.start, protocol: spec.protocol })
        }
        Ok(_) => Err(format!("{text:?} is not one container port: expected PORT[/PROTO], such as 80/tcp")),
        Err(error) => Err(error),
    }
}

pub async fn execute(client: &Client, format: Format, args: PortArgs) -> Result<ExitCode> {
    let (sandbox, ports) = match args.command {
        Some(command) => {
            let (path, change) = change_request(&command);
            let sandbox: Sandbox = decode(client.post(&path, &change).await?)?;
            (sandbox.name, sandbox.network_settings.ports)
        }
        None => {
            let name = args.sandbox.expect("clap requires a sandbox when no subcommand is given");
            let sandbox: Sandbox = decode(client.get(&route(&["sandboxes", &name])).await?)?;
            let ports = sandbox.network_settings.ports;
            if let Some(container_port) = args.container_port {
                return print_one_port(format, &name, container_port, ports);
            }
            (name, ports)
        }
    };
    match format {
        Format::Json => print_json(&serde_json::to_value(&ports)?),
        Format::Human => print!("{}", mapping_lines(&sandbox, &ports)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The route and body of `port add` and `port rm`.
fn change_request(command: &PortCommand) -> (String, PortsChange) {
    let (args, path) = match command {
        PortCommand::Add(args) => (args, route(&["sandboxes", &args.sandbox, "ports"])),
        PortCommand::Rm(args) => (args, route(&["sandboxes", &args.sandbox, "ports", "remove"])),
    };
    let change = PortsChange { ports: args.specs.clone() };
    (path, change)
}

/// `berth port SANDBOX CPORT`: the host addresses of one container port, as docker prints them,
/// or docker's error when it is not published.
fn print_one_port(
    format: Format,
    sandbox: &str,
    container_port: ContainerPort,
    mut ports: PortMap,
) -> Result<ExitCode> {
    let key = container_port.to_string();
    let Some(bindings) = ports.remove(&key).filter(|bindings| !bindings.is_empty()) else {
        bail!("no public port '{key}' published for {sandbox}");
    };
    match format {
        Format::Json => print_json(&serde_json::to_value(PortMap::from([(key, bindings)]))?),
        Format::Human => {
            for binding in &bindings {
                println!("{}", host_address(binding));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The container ports of berthd's `NetworkSettings.Ports` in order of port, then protocol.
fn sorted_ports<'a>(sandbox: &str, ports: &'a PortMap) -> Result<Vec<(ContainerPort, &'a [PortBinding])>> {
    let mut sorted = ports
        .iter()
        .map(|(key, bindings)| {
            let port = parse_container_port(key)
                .map_err(|_| anyhow!("berthd reported an invalid port {key:?} for sandbox {sandbox}"))?;
            Ok((port, bindings.as_slice()))
        })
        .collect::<Result<Vec<_>>>()?;
    sorted.sort_by_key(|(port, _)| *port);
    Ok(sorted)
}

/// `HOSTIP:HOSTPORT`, with an IPv6 address in brackets (`[::]:8080`).
fn host_address(binding: &PortBinding) -> String {
    if binding.host_ip.contains(':') {
        format!("[{}]:{}", binding.host_ip, binding.host_port)
    } else {
        format!("{}:{}", binding.host_ip, binding.host_port)
    }
}

/// `berth port SANDBOX`: one `80/tcp -> 0.0.0.0:8080` line per host binding.
fn mapping_lines(sandbox: &str, ports: &PortMap) -> Result<String> {
    let mut text = String::new();
    for (container_port, bindings) in sorted_ports(sandbox, ports)? {
        for binding in bindings {
            text.push_str(&format!("{container_port} -> {}\n", host_address(binding)));
        }
    }
    Ok(text)
}

/// Consecutive ports published alike, shown as one entry of the PORTS column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortRun {
    protocol: PortProtocol,
    /// None for a port that is exposed but not published.
    host_ip: Option<String>,
    host_ports: Option<PortRange>,
    container_ports: PortRange,
}

impl PortRun {
    /// Takes `next` (one port, sorted right after this run) into the run when it continues it:
    /// the next container port on the next host port, or the same single container port on the
    /// next host port.
    fn absorb(&mut self, next: &PortRun) -> bool {
        if self.protocol != next.protocol || self.host_ip != next.host_ip {
            return false;
        }
        let container_follows = self.container_ports.end.checked_add(1) == Some(next.container_ports.start);
        let continues = match (self.host_ports, next.host_ports) {
            (None, None) => container_follows,
            (Some(host), Some(next_host)) => {
                let host_follows = host.end.checked_add(1) == Some(next_host.start);
                let one_to_one = container_follows && self.container_ports.count() == host.count();
                let many_to_one = self.container_ports.count() == 1 && next.container_ports == self.container_ports;
                host_follows && (one_to_one || many_to_one)
            }
            _ => false,
        };
        if continues {
            self.container_ports.end = next.container_ports.end;
            if let (Some(host), Some(next_host)) = (&mut self.host_ports, next.host_ports) {
                host.end = next_host.end;
            }
        }
        continues
    }
}

impl fmt::Display for PortRun {
    /// Docker's PORTS notation: `0.0.0.0:8080-8081->80-81/tcp`, `:::8080->80/tcp`, `80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(ip), Some(host_ports)) = (&self.host_ip, self.host_ports) {
            write!(f, "{ip}:{host_ports}->")?;
        }
        write!(f, "{}/{}", self.container_ports, self.protocol)
    }
}

/// The PORTS column of `berth ps`: like docker's, with runs of consecutive ports compacted,
/// ordered by container port, protocol, then IPv4 before IPv6.
pub fn compact_ports(sandbox: &str, ports: &PortMap) -> Result<String> {
    let mut singles = Vec::new();
    for (container_port, bindings) in sorted_ports(sandbox, ports)? {
        let single = |host_ip, host_ports| PortRun {
            protocol: container_port.protocol,
            host_ip,
            host_ports,
            container_ports: PortRange::single(container_port.port),
        };
        if bindings.is_empty() {
            singles.push(single(None, None));
        }
        for binding in bindings {
            let host_port = binding.host_port.parse().map_err(|_| {
                anyhow!("berthd reported an invalid host port {:?} for sandbox {sandbox}", binding.host_port)
            })?;
            singles.push(single(Some(binding.host_ip.clone()), Some(PortRange::single(host_port))));
        }
    }
    // Runs form within one address and protocol, in order of container then host port.
    singles.sort_by(|a, b| {
        (a.protocol, &a.host_ip, a.container_ports, a.host_ports).cmp(&(
            b.protocol,
            &b.host_ip,
            b.container_ports,
            b.host_ports,
        ))
    });
    let mut runs: Vec<PortRun> = Vec::new();
    for single in singles {
        let absorbed = runs.last_mut().is_some_and(|run| run.absorb(&single));
        if !absorbed {
            runs.push(single);
        }
    }
    runs.sort_by_key(|run| {
        let is_ipv6 = run.host_ip.as_ref().is_some_and(|ip| ip.contains(':'));
        (run.container_ports.start, run.protocol, run.host_ip.is_some(), is_ipv6, run.host_ip.clone())
    });
    Ok(runs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::{port_map, PortMapping};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        port: PortArgs,
    }

    /// Parses `berth port` with `command_line`, split at spaces.
    fn parse(command_line: &str) -> Result<PortArgs, clap::Error> {
        let args = command_line.split_whitespace();
        TestCli::try_parse_from(std::iter::once("port").chain(args)).map(|cli| cli.port)
    }

    fn mapping(
        protocol: PortProtocol,
        host_ip: Option<&str>,
        host_ports: (u16, u16),
        container_ports: (u16, u16),
    ) -> PortMapping {
        PortMapping {
            protocol,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_ports: PortRange { start: host_ports.0, end: host_ports.1 },
            container_ports: PortRange { start: container_ports.0, end: container_ports.1 },
        }
    }

    #[test]
    fn a_sandbox_alone_lists_its_ports() {
        let args = parse("web").unwrap();
        assert!(args.command.is_none());
        assert_eq!(args.sandbox.as_deref(), Some("web"));
        assert_eq!(args.container_port, None);

        let args = parse("web 80/tcp").unwrap();
        assert_eq!(args.container_port, Some(ContainerPort { port: 80, protocol: PortProtocol::Tcp }));
        let args = parse("web 53/udp").unwrap();
        assert_eq!(args.container_port.unwrap().to_string(), "53/udp");
        assert_eq!(
            parse("web 80").unwrap().container_port.unwrap().to_string(),
            "80/tcp",
            "tcp when no protocol is given"
        );
        assert!(parse("").is_err(), "a sandbox is required");
        for bad in ["8080:80", "80-81", "80/icmp", "0"] {
            assert!(parse(&format!("web {bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn add_and_rm_become_the_ports_routes() {
        let args = parse("add web 8080:80 9090:90/udp").unwrap();
        assert_eq!(args.sandbox, None);
        let (path, change) = change_request(&args.command.unwrap());
        assert_eq!(path, "/v1/sandboxes/web/ports");
        assert_eq!(change.ports, [PortSpec::parse("8080:80").unwrap(), PortSpec::parse("9090:90/udp").unwrap()]);

        let args = parse("rm web 8080:80").unwrap();
        let (path, change) = change_request(&args.command.unwrap());
        assert_eq!(path, "/v1/sandboxes/web/ports/remove");
        assert_eq!(change.ports, [PortSpec::parse("8080:80").unwrap()]);

        assert!(parse("add web").is_err(), "a spec is required");
        let error = parse("add web 8080:x").unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse("web 80 add").is_err());
    }

    #[test]
    fn expose_takes_container_ports_only() {
        assert_eq!(parse_expose_spec("80").unwrap().to_string(), "80/tcp");
        assert_eq!(parse_expose_spec("7000-7002/udp").unwrap().to_string(), "7000-7002/udp");
        assert!(parse_expose_spec("8080:80").is_err());
        assert!(parse_expose_spec(":80").is_err());
        assert!(parse_expose_spec("80/icmp").is_err());
    }

    #[test]
    fn mappings_print_like_docker_port() {
        let ports = port_map(&[
            mapping(PortProtocol::Udp, Some("127.0.0.1"), (5353, 5353), (53, 53)),
            mapping(PortProtocol::Tcp, None, (8080, 8080), (80, 80)),
            mapping(PortProtocol::Tcp, Some("::1"), (9443, 9443), (443, 443)),
            mapping(PortProtocol::Tcp, Some("10.0.0.1"), (1000, 1000), (1000, 1000)),
        ]);
        assert_eq!(
            mapping_lines("web", &ports).unwrap(),
            "53/udp -> 127.0.0.1:5353\n\
             80/tcp -> 0.0.0.0:8080\n\
             80/tcp -> [::]:8080\n\
             443/tcp -> [::1]:9443\n\
             1000/tcp -> 10.0.0.1:1000\n"
        );
        assert_eq!(mapping_lines("web", &PortMap::new()).unwrap(), "");

        let broken = PortMap::from([("http".to_owned(), Vec::new())]);
        assert_eq!(
            mapping_lines("web", &broken).unwrap_err().to_string(),
            "berthd reported an invalid port \"http\" for sandbox web"
        );
    }

    #[test]
    fn an_unpublished_port_is_dockers_error() {
        let ports = port_map(&[mapping(PortProtocol::Tcp, None, (8080, 8080), (80, 80))]);
        let missing = ContainerPort { port: 81, protocol: PortProtocol::Tcp };
        let error = print_one_port(Format::Human, "web", missing, ports).unwrap_err();
        assert_eq!(error.to_string(), "no public port '81/tcp' published for web");

        let exposed_only = PortMap::from([("81/tcp".to_owned(), Vec::new())]);
        assert!(print_one_port(Format::Human, "web", missing, exposed_only).is_err());
    }

    #[test]
    fn the_ports_column_compacts_runs() {
        let ports = port_map(&[mapping(PortProtocol::Tcp, None, (8080, 8080), (80, 80))]);
        assert_eq!(compact_ports("web", &ports).unwrap(), "0.0.0.0:8080->80/tcp, :::8080->80/tcp");

        let ports = port_map(&[
            mapping(PortProtocol::Udp, Some("127.0.0.1"), (7000, 7002), (7000, 7002)),
            mapping(PortProtocol::Tcp, Some("127.0.0.1"), (8000, 8009), (80, 80)),
            mapping(PortProtocol::Tcp, Some("::1"), (9000, 9001), (90, 91)),
            mapping(PortProtocol::Tcp, Some("::1"), (9003, 9003), (92, 92)),
        ]);
        assert_eq!(
            compact_ports("web", &ports).unwrap(),
            "127.0.0.1:8000-8009->80/tcp, ::1:9000-9001->90-91/tcp, ::1:9003->92/tcp, \
             127.0.0.1:7000-7002->7000-7002/udp"
        );

        let mut exposed = PortMap::new();
        for key in ["100/tcp", "101/tcp", "102/tcp", "104/tcp", "100/udp"] {
            exposed.insert(key.to_owned(), Vec::new());
        }
        assert_eq!(compact_ports("web", &exposed).unwrap(), "100-102/tcp, 100/udp, 104/tcp");
        assert_eq!(compact_ports("web", &PortMap::new()).unwrap(), "");
    }

    #[test]
    fn runs_stop_where_ports_skip() {
        let single = |container: u16, host: u16| PortRun {
            protocol: PortProtocol::Tcp,
            host_ip: Some("0.0.0.0".into()),
            host_ports: Some(PortRange::single(host)),
            container_ports: PortRange::single(container),
        };
        let mut run = single(80, 8080);
        assert!(run.absorb(&single(81, 8081)));
        assert!(!run.absorb(&single(81, 8082)), "a many-to-one run needs one container port");
        assert!(!run.absorb(&single(83, 8082)));
        assert!(!run.absorb(&single(82, 8083)));
        assert_eq!(run.to_string(), "0.0.0.0:8080-8081->80-81/tcp");

        let mut run = single(65535, 65534);
        assert!(!run.absorb(&single(0, 65535)), "no wrap past the last port");
    }
}
