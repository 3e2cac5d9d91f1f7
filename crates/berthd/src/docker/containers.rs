//! Docker's container routes over berth's sandboxes: a sandbox is shown as a container (its
//! name, state, command, networks and published ports). Stop and remove are berth's own
//! commands, called by the API directly; berth runs no images, so creating a container is
//! refused there.

use std::collections::BTreeMap;

use berth_core::controller::Controller;
use berth_core::error::{Error, Result};
use berth_core::ids;
use berth_types::{
    ContainerConfig, ContainerHostConfig, ContainerInspect, ContainerNetworkSettings, ContainerState, ContainerSummary,
    DockerFilters, EmptyObject, PortMap, PortSummary, Sandbox, SummaryHostConfig, SummaryNetworkSettings,
    DEFAULT_NETWORK, SANDBOX_IMAGE,
};

use super::filters::{any_matches, check_keys, labels_match, NameFilter};

/// Docker's container states; a sandbox is only ever `created`, `running` or `exited`.
const STATUSES: &[&str] = &["created", "restarting", "running", "removing", "paused", "exited", "dead"];

/// Go's zero time, Docker's "never".
const NEVER: &str = "0001-01-01T00:00:00Z";

/// `GET /containers/json`: running sandboxes (all with `all`, a `limit` or a `status`
/// filter), newest first, filtered by `id` (prefix), `name` (substring), `network` (name or
/// id), `label` (sandboxes have none) and `status`.
pub async fn list(
    c: &Controller,
    all: bool,
    limit: Option<usize>,
    filters: &DockerFilters,
) -> Result<Vec<ContainerSummary>> {
    check_keys(filters, &["id", "label", "name", "network", "status"])?;
    if let Some(status) = filters.get("status").iter().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(Error::BadRequest(format!("invalid filter 'status={status}'")));
    }
    let all = all || limit.is_some() || !filters.get("status").is_empty();
    let names = NameFilter::new(filters.get("name"));
    let mut listed: Vec<Container> = c
        .list_sandboxes()
        .await
        .into_iter()
        .map(Container::new)
        .filter(|c| (all || c.status == "running") && c.matches(filters, &names))
        .collect();
    listed.sort_by(|a, b| b.view.created.cmp(&a.view.created));
    listed.truncate(limit.unwrap_or(usize::MAX));
    Ok(listed.into_iter().map(Container::summary).collect())
}

/// `GET /containers/{id}/json`.
pub async fn inspect(c: &Controller, key: &str) -> Result<ContainerInspect> {
    Ok(Container::new(c.inspect_sandbox(key).await?).inspect())
}

/// A sandbox seen as a container: berth's view and what Docker shows besides.
struct Container {
    view: Sandbox,
    /// `created` (no process ever registered), `running` or `exited`.
    status: &'static str,
    /// The main process while it runs, else any running one; 0 when none runs.
    pid: u32,
    /// The command line of `pid`.
    command: Vec<String>,
}

impl Container {
    fn new(view: Sandbox) -> Self {
        let status = if view.state.running {
            "running"
        } else if view.state.started {
            "exited"
        } else {
            "created"
        };
        let pid = view
            .state
            .main_pid
            .filter(|p| view.state.pids.contains(p))
            .or_else(|| view.state.pids.first().copied())
            .unwrap_or(0);
        let command = if pid == 0 { Vec::new() } else { command_line(pid) };
        Self { view, status, pid, command }
    }

    fn matches(&self, filters: &DockerFilters, names: &NameFilter) -> bool {
        let networks = &self.view.network_settings.networks;
        any_matches(filters.get("id"), |v| self.view.id.starts_with(v))
            && names.matches(&[&self.view.name, &format!("/{}", self.view.name)])
            && any_matches(filters.get("network"), |v| networks.iter().any(|(name, e)| v == name || v == e.network_id))
            && any_matches(filters.get("status"), |v| v == self.status)
            && labels_match(filters.get("label"), &BTreeMap::new())
    }

    /// Unix seconds of the sandbox's creation.
    fn created(&self) -> i64 {
        ids::parse_datetime(&self.view.created).unwrap_or(0).div_euclid(1_000_000_000)
    }

    /// Docker's `Status`: `Up 5 minutes` (since the sandbox was created), `Exited` or `Created`.
    fn status_text(&self) -> String {
        match self.status {
            "running" => format!("Up {}", human_duration(ids::unix_nanos_now() / 1_000_000_000 - self.created())),
            "exited" => "Exited".into(),
            _ => "Created".into(),
        }
    }

    fn summary(self) -> ContainerSummary {
        ContainerSummary {
            names: vec![format!("/{}", self.view.name)],
            image: SANDBOX_IMAGE.into(),
            image_id: String::new(),
            command: self.command.join(" "),
            created: self.created(),
            ports: port_summaries(&self.view.network_settings.ports),
            labels: BTreeMap::new(),
            state: self.status.into(),
            status: self.status_text(),
            host_config: SummaryHostConfig { network_mode: self.view.network_mode.clone() },
            network_settings: SummaryNetworkSettings { networks: self.view.network_settings.networks },
            id: self.view.id,
        }
    }

    fn inspect(self) -> ContainerInspect {
        let view = self.view;
        let settings = view.network_settings;
        let default = settings.networks.get(DEFAULT_NETWORK).cloned().unwrap_or_default();
        let mut args = self.command.clone();
        let path = if args.is_empty() { String::new() } else { args.remove(0) };
        ContainerInspect {
            created: view.created.clone(),
            path,
            args,
            state: ContainerState {
                status: self.status.into(),
                running: self.status == "running",
                paused: false,
                restarting: false,
                oom_killed: false,
                dead: false,
                pid: self.pid,
                exit_code: 0,
                error: String::new(),
                started_at: if self.status == "created" { NEVER.into() } else { view.created },
                finished_at: NEVER.into(),
            },
            image: SANDBOX_IMAGE.into(),
            resolv_conf_path: view.files.resolv_conf_path,
            hostname_path: view.files.hostname_path,
            hosts_path: view.files.hosts_path,
            name: format!("/{}", view.name),
            restart_count: 0,
            driver: "berth".into(),
            platform: "linux".into(),
            config: ContainerConfig {
                hostname: view.hostname,
                domainname: String::new(),
                user: String::new(),
                exposed_ports: settings.ports.keys().map(|port| (port.clone(), EmptyObject {})).collect(),
                env: Vec::new(),
                cmd: self.command,
                image: SANDBOX_IMAGE.into(),
                labels: BTreeMap::new(),
            },
            host_config: ContainerHostConfig {
                network_mode: view.network_mode,
                port_bindings: settings.ports.clone(),
                auto_remove: view.auto_remove,
                dns: view.dns.clone(),
                dns_search: view.dns_search.clone(),
                dns_options: view.dns_options.clone(),
                extra_hosts: view.extra_hosts.clone(),
            },
            network_settings: ContainerNetworkSettings {
                bridge: String::new(),
                sandbox_id: view.id.clone(),
                sandbox_key: settings.sandbox_key,
                ports: settings.ports,
                hairpin_mode: false,
                endpoint_id: default.endpoint_id,
                gateway: default.gateway,
                global_ipv6_address: default.global_ipv6_address,
                global_ipv6_prefix_len: default.global_ipv6_prefix_len,
                ip_address: default.ip_address,
                ip_prefix_len: default.ip_prefix_len,
                ipv6_gateway: default.ipv6_gateway,
                mac_address: default.mac_address,
                networks: settings.networks,
            },
            id: view.id,
        }
    }
}

/// The arguments of a running process.
fn command_line(pid: u32) -> Vec<String> {
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect()
}

/// `NetworkSettings.Ports` as the list `GET /containers/json` has.
fn port_summaries(ports: &PortMap) -> Vec<PortSummary> {
    ports
        .iter()
        .flat_map(|(key, bindings)| {
            let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            let private_port = port.parse().unwrap_or(0);
            bindings.iter().map(move |b| PortSummary {
                ip: b.host_ip.clone(),
                private_port,
                public_port: b.host_port.parse().unwrap_or(0),
                protocol: protocol.to_owned(),
            })
        })
        .collect()
}

/// A duration as Docker words it in `Up ...` (go-units' HumanDuration).
fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = (seconds + 1800) / 3600;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::PortBinding;

    #[test]
    fn durations_read_like_dockers() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(45 * 60), "45 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
    }

    #[test]
    fn ports_become_a_list() {
        let map = PortMap::from([(
            "80/tcp".to_owned(),
            vec![
                PortBinding { host_ip: "0.0.0.0".into(), host_port: "8080".into() },
                PortBinding { host_ip: "::".into(), host_port: "8080".into() },
            ],
        )]);
        let list = port_summaries(&map);
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[1],
            PortSummary { ip: "::".into(), private_port: 80, public_port: 8080, protocol: "tcp".into() }
        );
    }

    #[test]
    fn command_lines_are_read() {
        let own = command_line(std::process::id());
        assert!(!own.is_empty());
        assert!(command_line(0).is_empty());
    }
}
