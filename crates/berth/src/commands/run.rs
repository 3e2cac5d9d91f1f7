//! `berth run` and `berth exec`: get a sandbox from berthd (a new one, or one that exists), start
//! the command inside its namespaces from this process, as `ip netns exec` would, and register
//! the process with berthd; `--network` is parsed here (`-p` and `--expose` in port.rs). In the
//! foreground berth waits for it, forwarding signals, and passes its exit status on; berthd never
//! carries the command's stdio. This module does not touch namespaces itself (berth-sys does) and
//! does not decide how the sandbox is networked (berthd does).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, ExitCode};

use anyhow::{bail, Context, Result};
use berth_sys::process::{ProcessError, SandboxCommand};
use berth_types::{MacAddress, NetworkMode, PortSpec, ProcessRegister, Sandbox, SandboxCreate, Version};
use clap::Args;

use crate::client::{decode, route, Client};
use crate::commands::port::{parse_expose_spec, parse_publish_spec};
use crate::foreground::{exit_code, SignalForwarder};
use crate::output::{print_json, Format};

/// The network mode berthd reports for a sandbox in the host's namespace.
const HOST_MODE: &str = "host";

/// `--ip`, `--ip6`, `-p` and `-P` are about the sandbox's own endpoint, which only a network
/// gives it (no `--network` means the default network); `flags` names them in the error.
fn check_has_endpoint(network: Option<&NetworkMode>, flags: &str) -> Result<()> {
    match network {
        Some(mode @ (NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_))) => {
            bail!("{flags} need a network: --network {mode} gives the sandbox no endpoint of its own")
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the sandbox (generated when not given)
    #[arg(long)]
    name: Option<String>,
    /// A network name or id, host, none or container:NAME (the default network when not given)
    #[arg(long, value_name = "NETWORK")]
    network: Option<NetworkMode>,
    /// IPv4 address on the network
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// IPv6 address on the network
    #[arg(long, value_name = "IP")]
    ip6: Option<Ipv6Addr>,
    /// MAC address on the network (unicast, unused there; default: 02:42 and the IPv4 address)
    #[arg(long, value_name = "MAC")]
    mac_address: Option<MacAddress>,
    /// Publish container ports on the host: [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/PROTO]
    #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = parse_publish_spec)]
    publish: Vec<PortSpec>,
    /// Publish every --expose port on a free host port
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Expose container ports for -P to publish: PORT[-END][/PROTO]
    #[arg(long, value_name = "PORT[/PROTO]", value_parser = parse_expose_spec)]
    expose: Vec<PortSpec>,
    /// Hostname of the sandbox (the first 12 characters of its id when not given)
    #[arg(long)]
    hostname: Option<String>,
    /// A further name of the sandbox on its (user-defined) network (repeatable)
    #[arg(long = "network-alias", value_name = "ALIAS")]
    network_alias: Vec<String>,
    /// Resolver for this sandbox: upstream of the embedded DNS on user-defined networks, its nameserver elsewhere (repeatable)
    #[arg(long, value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// Search domain for this sandbox's resolv.conf, instead of the host's (repeatable; "." for none)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Resolver option for this sandbox's resolv.conf, instead of the host's (repeatable), e.g. ndots:1
    #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPTION")]
    dns_option: Vec<String>,
    /// Add an /etc/hosts entry (repeatable); IP "host-gateway" is the default network's gateway, a host address
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// Run in the background and print the sandbox id
    #[arg(short, long)]
    detach: bool,
    /// Remove the sandbox when the command ends
    #[arg(long)]
    rm: bool,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Name or id of the sandbox
    sandbox: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Whether the process is the one the sandbox exists for (`run`) or a visitor (`exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Visitor,
}

pub async fn run(client: &Client, format: Format, args: RunArgs) -> Result<ExitCode> {
    let answer = client.post(&route(&["sandboxes"]), &sandbox_create(&args)?).await?;
    let sandbox: Sandbox = decode(answer.clone())?;

    if args.detach {
        if let Err(error) = start(client, &sandbox, &args.command, true, Role::Main).await {
            remove_after_run(client, &sandbox, args.rm).await;
            return Err(error);
        }
        match format {
            Format::Json => print_json(&answer),
            Format::Human => println!("{}", sandbox.id),
        }
        return Ok(ExitCode::SUCCESS);
    }

    let forwarder = SignalForwarder::install().context("cannot catch signals")?;
    let child = match start(client, &sandbox, &args.command, false, Role::Main).await {
        Ok(child) => child,
        Err(error) => {
            remove_after_run(client, &sandbox, args.rm).await;
            return Err(error);
        }
    };
    let status = forwarder.wait(child).await;
    remove_after_run(client, &sandbox, args.rm).await;
    let status = status.context("cannot wait for the command")?;
    Ok(ExitCode::from(exit_code(status)))
}

pub async fn exec(client: &Client, args: ExecArgs) -> Result<ExitCode> {
    let sandbox: Sandbox = decode(client.get(&route(&["sandboxes", &args.sandbox])).await?)?;
    let forwarder = SignalForwarder::install().context("cannot catch signals")?;
    let child = start(client, &sandbox, &args.command, false, Role::Visitor).await?;
    let status = forwarder.wait(child).await.context("cannot wait for the command")?;
    Ok(ExitCode::from(exit_code(status)))
}

/// The exit status of berth when the command could not be started, as docker reports it: 127
/// when it does not exist, 126 when it cannot be executed, 1 when the sandbox could not be
/// entered.
pub fn spawn_failure_exit_code(error: &ProcessError) -> u8 {
    match error {
        ProcessError::Exec { error, .. } if error.kind() == std::io::ErrorKind::NotFound => 127,
        ProcessError::Exec { .. } => 126,
        _ => 1,
    }
}

fn sandbox_create(args: &RunArgs) -> Result<SandboxCreate> {
    let network = args.network.as_ref();
    if args.ip.is_some() || args.ip6.is_some() {
        check_has_endpoint(network, "--ip and --ip6")?;
    }
    if args.mac_address.is_some() {
        check_has_endpoint(network, "--mac-address")?;
    }
    if !args.publish.is_empty() || args.publish_all {
        check_has_endpoint(network, "-p and -P")?;
    }
    if !args.network_alias.is_empty() {
        check_has_endpoint(network, "--network-alias")?;
    }
    if args.network == Some(NetworkMode::Host) && args.hostname.is_some() {
        bail!("--hostname cannot be used with --network host: the command keeps the host's name");
    }
    Ok(SandboxCreate {
        name: args.name.clone().unwrap_or_default(),
        network_mode: args.network.clone(),
        ipv4_address: args.ip.map(IpAddr::V4),
        ipv6_address: args.ip6.map(IpAddr::V6),
        mac_address: args.mac_address,
        hostname: args.hostname.clone().unwrap_or_default(),
        netns: None,
        auto_remove: args.rm,
        ports: args.publish.clone(),
        expose: args.expose.clone(),
        publish_all: args.publish_all,
        aliases: args.network_alias.clone(),
        dns: args.dns.iter().map(ToString::to_string).collect(),
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_option.clone(),
        extra_hosts: args.add_host.clone(),
    })
}

/// How the command enters the sandbox: its namespace file, its files over /etc, and its
/// hostname, except in host mode where the command keeps the host's.
fn sandbox_command(sandbox: &Sandbox, command: &[OsString], detach: bool) -> Result<SandboxCommand> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command to run");
    };
    let netns = &sandbox.network_settings.sandbox_key;
    if netns.is_empty() {
        bail!("berthd reported no network namespace for sandbox {}", sandbox.name);
    }
    let mut sandbox_command = SandboxCommand::new(netns, program);
    sandbox_command.args(args).detach(detach);
    let files = &sandbox.files;
    if !files.hosts_path.is_empty() {
        sandbox_command.hosts_file(&files.hosts_path);
    }
    if !files.resolv_conf_path.is_empty() {
        sandbox_command.resolv_conf_file(&files.resolv_conf_path);
    }
    if !files.hostname_path.is_empty() {
        sandbox_command.hostname_file(&files.hostname_path);
    }
    if sandbox.network_mode != HOST_MODE && !sandbox.hostname.is_empty() {
        sandbox_command.hostname(&sandbox.hostname);
    }
    Ok(sandbox_command)
}

/// Spawns the command in the sandbox and registers it with berthd. Registration happens before
/// anyone reaps the child, so even a command that ends at once is registered under a pid that
/// is still its own. A process berthd could not be told about is killed: nothing may run in a
/// sandbox that `berth stop` cannot reach.
async fn start(client: &Client, sandbox: &Sandbox, command: &[OsString], detach: bool, role: Role) -> Result<Child> {
    let mut sandbox_command = sandbox_command(sandbox, command, detach)?;
    // A rootless berthd's sandboxes are in its child's user and mount namespaces.
    let daemon: Version = decode(client.get(&route(&["version"])).await?)?;
    if daemon.rootless {
        sandbox_command.rootless_child(daemon.pid);
    }
    let mut child = sandbox_command.spawn()?;
    let registration = ProcessRegister { pid: child.id(), main: role == Role::Main };
    let registered = client.post(&route(&["sandboxes", &sandbox.id, "processes"]), &registration).await;
    if let Err(error) = registered {
        // Killing and reaping our own child cannot usefully fail.
        let _ = child.kill();
        let _ = child.wait();
        return Err(error)
            .with_context(|| format!("cannot register process {} with sandbox {}", registration.pid, sandbox.name));
    }
    Ok(child)
}

/// `--rm`: removes the sandbox once its command has ended or could not start. berthd may have
/// removed it first (it does so for `--rm` sandboxes whose main process died), which is fine.
async fn remove_after_run(client: &Client, sandbox: &Sandbox, rm: bool) {
    if !rm {
        return;
    }
    let path = format!("{}?force=true", route(&["sandboxes", &sandbox.id]));
    match client.delete(&path).await {
        Err(error) if !error.is_not_found() => {
            eprintln!("Warning: cannot remove sandbox {}: {error}", sandbox.name);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sandbox::tests::sandbox;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        run: RunArgs,
    }

    /// Parses `berth run` with `command_line`, split at spaces.
    fn parse(command_line: &str) -> Result<RunArgs, clap::Error> {
        let args = command_line.split_whitespace();
        TestCli::try_parse_from(std::iter::once("run").chain(args)).map(|cli| cli.run)
    }

    #[test]
    fn the_command_keeps_its_own_flags() {
        let args = parse("--name web -d -- ls -l --color").unwrap();
        assert_eq!(args.command, ["ls", "-l", "--color"]);
        assert!(args.detach);
        let args = parse("--rm ip -br addr --network n1").unwrap();
        assert_eq!(args.command, ["ip", "-br", "addr", "--network", "n1"]);
        assert!(args.network.is_none(), "flags after the command are the command's");
        assert!(parse("--rm").is_err(), "a command is required");
    }

    #[test]
    fn run_flags_become_the_sandbox_request() {
        let args = parse("--name web --network n1 --ip 10.10.0.9 --ip6 fd00::9 --hostname www --rm -- true").unwrap();
        let request = sandbox_create(&args).unwrap();
        assert_eq!(request.name, "web");
        assert_eq!(request.network_mode, Some(NetworkMode::Network("n1".into())));
        assert_eq!(request.ipv4_address, Some("10.10.0.9".parse().unwrap()));
        assert_eq!(request.ipv6_address, Some("fd00::9".parse().unwrap()));
        assert_eq!(request.hostname, "www");
        assert_eq!(request.netns, None);
        assert!(request.auto_remove);

        let request = sandbox_create(&parse("true").unwrap()).unwrap();
        assert_eq!(request.network_mode, None, "berthd picks the default network");
        assert_eq!(request.ipv4_address, None);
    }

    #[test]
    fn network_modes_reach_the_request_as_typed() {
        for mode in ["host", "none", "container:web"] {
            let args = parse(&format!("--network {mode} true")).unwrap();
            let request = sandbox_create(&args).unwrap();
            assert_eq!(request.network_mode.unwrap().to_string(), mode);
        }
        assert!(parse("--network container: true").is_err());
    }

    #[test]
    fn conflicting_flags_are_refused() {
        let args = parse("--network host --ip 10.0.0.2 true").unwrap();
        assert!(sandbox_create(&args).is_err());
        let args = parse("--network host --hostname www true").unwrap();
        assert!(sandbox_create(&args).is_err());
        let args = parse("--network none --hostname www true").unwrap();
        assert!(sandbox_create(&args).is_ok());
    }

    #[test]
    fn the_command_enters_the_sandbox_with_its_files_and_hostname() {
        let web = sandbox("web", &[("bridge", "172.17.0.2", "")], &[]);
        let command: Vec<OsString> = vec!["sh".into(), "-c".into(), "id".into()];
        let mut expected = SandboxCommand::new("/run/berth/netns/x", "sh");
        expected
            .args(["-c", "id"])
            .hosts_file("/run/berth/sandboxes/x/hosts")
            .resolv_conf_file("/run/berth/sandboxes/x/resolv.conf")
            .hostname_file("/run/berth/sandboxes/x/hostname")
            .hostname("web");
        assert_eq!(sandbox_command(&web, &command, false).unwrap(), expected);

        expected.detach(true);
        assert_eq!(sandbox_command(&web, &command, true).unwrap(), expected);
    }

    #[test]
    fn host_mode_keeps_the_hosts_name() {
        let mut host = sandbox("h", &[], &[]);
        host.network_mode = "host".into();
        host.files.hostname_path = String::new();
        let mut expected = SandboxCommand::new("/run/berth/netns/x", "true");
        expected.hosts_file("/run/berth/sandboxes/x/hosts").resolv_conf_file("/run/berth/sandboxes/x/resolv.conf");
        assert_eq!(sandbox_command(&host, &["true".into()], false).unwrap(), expected);
    }

    #[test]
    fn addresses_and_published_ports_need_a_network() {
        let request = |command_line: &str| sandbox_create(&parse(command_line).unwrap());
        assert!(request("--ip 10.0.0.5 true").is_ok());
        assert!(request("--network n1 --ip 10.0.0.5 -p 80 true").is_ok());
        assert!(request("--network host true").is_ok());
        assert!(request("--network host --expose 80 true").is_ok());
        assert_eq!(
            request("--network host --ip 10.0.0.5 true").unwrap_err().to_string(),
            "--ip and --ip6 need a network: --network host gives the sandbox no endpoint of its own"
        );
        assert_eq!(
            request("--network container:web -P true").unwrap_err().to_string(),
            "-p and -P need a network: --network container:web gives the sandbox no endpoint of \
             its own"
        );
        assert!(request("--network none -p 8080:80 true").is_err());
    }

    #[test]
    fn publish_flags_reach_the_request_as_typed() {
        let args = parse(
            "-p 8080:80 --publish [::1]:9090:90/udp -p 127.0.0.1::443 -P \
             --expose 7000-7002/udp --expose 22 -- server -p 1",
        )
        .unwrap();
        let request = sandbox_create(&args).unwrap();
        let texts = |specs: &[PortSpec]| specs.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(texts(&request.ports), ["8080:80/tcp", "[::1]:9090:90/udp", "127.0.0.1::443/tcp"]);
        assert_eq!(texts(&request.expose), ["7000-7002/udp", "22/tcp"]);
        assert!(request.publish_all);
        assert_eq!(args.command, ["server", "-p", "1"]);

        let request = sandbox_create(&parse("true").unwrap()).unwrap();
        assert!(request.ports.is_empty() && request.expose.is_empty() && !request.publish_all);
    }

    #[test]
    fn a_bad_port_spec_is_a_one_line_usage_error() {
        let error = parse("-p 8080:80/icmp true").unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(
            error.to_string().lines().next().unwrap(),
            "error: invalid value '8080:80/icmp' for '--publish <SPEC>': invalid protocol \
             \"icmp\" in \"8080:80/icmp\": use tcp, udp or sctp"
        );
        assert!(parse("-p 70000 true").is_err());
        assert!(parse("--expose 8080:80 true").is_err());
    }

    #[test]
    fn missing_programs_exit_like_docker() {
        let not_found =
            ProcessError::Exec { program: "foo".into(), error: std::io::Error::from_raw_os_error(nix::libc::ENOENT) };
        assert_eq!(spawn_failure_exit_code(&not_found), 127);
        assert_eq!(not_found.to_string(), "cannot run \"foo\": No such file or directory");
        let not_executable = ProcessError::Exec {
            program: "/etc/hosts".into(),
            error: std::io::Error::from_raw_os_error(nix::libc::EACCES),
        };
        assert_eq!(spawn_failure_exit_code(&not_executable), 126);
        assert_eq!(spawn_failure_exit_code(&ProcessError::NoProgram), 1);
    }
}
