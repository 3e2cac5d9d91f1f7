//! Docker's system routes: the version berthd announces, with the API versions it accepts, and
//! `GET /info`, with the counts and host facts Docker shows (kernel, CPUs, memory, OS). Reads
//! only.

use std::collections::BTreeMap;

use berth_types::{
    ComponentVersion, Platform, PluginsInfo, RegistryConfig, RuntimeInfo, SwarmInfo, SystemInfo, SystemVersion,
    DOCKER_API_VERSION, DOCKER_MIN_API_VERSION,
};

use berth_core::controller::Controller;
use berth_core::ids;

/// `GET /version`: berthd's version and the Docker API versions it speaks.
pub fn version() -> SystemVersion {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let kernel_version = kernel_version();
    let details = BTreeMap::from([
        ("ApiVersion", DOCKER_API_VERSION),
        ("Arch", go_arch()),
        ("BuildTime", ""),
        ("Experimental", "false"),
        ("GitCommit", ""),
        ("GoVersion", ""),
        ("KernelVersion", kernel_version.as_str()),
        ("MinAPIVersion", DOCKER_MIN_API_VERSION),
        ("Os", "linux"),
    ]);
    SystemVersion {
        platform: Platform { name: "berth".into() },
        components: vec![ComponentVersion {
            name: "Engine".into(),
            version: version.clone(),
            details: details.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        }],
        version,
        api_version: DOCKER_API_VERSION.into(),
        min_api_version: DOCKER_MIN_API_VERSION.into(),
        git_commit: String::new(),
        go_version: String::new(),
        os: "linux".into(),
        arch: go_arch().into(),
        kernel_version,
        build_time: String::new(),
    }
}

/// `GET /info`: sandboxes counted as containers, and the host's facts.
pub async fn info(c: &Controller) -> SystemInfo {
    let sandboxes = c.list_sandboxes().await;
    let (containers, running) = (sandboxes.len(), sandboxes.iter().filter(|s| s.state.running).count());
    let name = read_trimmed("/proc/sys/kernel/hostname");
    let data_root = c.data_root().display().to_string();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let ipv4_forwarding = read_trimmed("/proc/sys/net/ipv4/ip_forward") == "1";
    SystemInfo {
        id: c.engine_id(),
        name,
        containers,
        containers_running: running,
        containers_paused: 0,
        containers_stopped: containers - running,
        images: 0,
        driver: "berth".into(),
        driver_status: Vec::new(),
        plugins: PluginsInfo { volume: Vec::new(), network: vec!["bridge".into()], log: Vec::new() },
        ipv4_forwarding,
        system_time: ids::now_rfc3339(),
        logging_driver: String::new(),
        cgroup_driver: String::new(),
        n_events_listener: c.event_subscribers(),
        kernel_version: kernel_version(),
        operating_system: os_release_field(&os_release, "PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
        os_version: os_release_field(&os_release, "VERSION_ID").unwrap_or_default(),
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism().map_or(1, usize::from),
        mem_total: mem_total(),
        docker_root_dir: data_root,
        labels: Vec::new(),
        experimental_build: false,
        server_version: env!("CARGO_PKG_VERSION").into(),
        swarm: SwarmInfo {
            node_id: String::new(),
            node_addr: String::new(),
            local_node_state: "inactive".into(),
            control_available: false,
            error: String::new(),
        },
        // Networks and sandboxes stay in place while berthd restarts.
        live_restore_enabled: true,
        security_options: Vec::new(),
        warnings: if ipv4_forwarding { Vec::new() } else { vec!["WARNING: IPv4 forwarding is disabled".into()] },
        debug: tracing::enabled!(tracing::Level::DEBUG),
        n_fd: std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
        n_goroutines: std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count),
        // Sandboxes' processes are started by the berth CLI, not by a container runtime.
        runtimes: BTreeMap::from([("berth".to_owned(), RuntimeInfo { path: "berth".into() })]),
        default_runtime: "berth".into(),
        index_server_address: "https://index.docker.io/v1/".into(),
        registry_config: RegistryConfig::default(),
        http_proxy: proxy_setting("HTTP_PROXY"),
        https_proxy: proxy_setting("HTTPS_PROXY"),
        no_proxy: proxy_setting("NO_PROXY"),
    }
}

/// A proxy variable of berthd's environment (upper or lower case), with the password of a
/// `user:password@` part masked as Docker masks it.
fn proxy_setting(name: &str) -> String {
    let value = std::env::var(name).or_else(|_| std::env::var(name.to_ascii_lowercase())).unwrap_or_default();
    mask_password(&value)
}

fn mask_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let Some((userinfo, host)) = rest.split_once('@').filter(|(u, _)| !u.contains('/')) else {
        return url.to_owned();
    };
    let Some((user, _)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    let separator = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{separator}{user}:xxxxx@{host}")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// The machine's architecture in Go's words, as Docker reports it in `/version`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Total memory in bytes, from /proc/meminfo.
fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A field of /etc/os-release, unquoted.
fn os_release_field(os_release: &str, key: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        Some(value.trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_are_masked() {
        assert_eq!(mask_password("http://user:secret@proxy.example:3128"), "http://user:xxxxx@proxy.example:3128");
        assert_eq!(mask_password("http://proxy.example:3128"), "http://proxy.example:3128");
        assert_eq!(mask_password("user:secret@proxy.example"), "user:xxxxx@proxy.example");
        assert_eq!(mask_password(""), "");
    }

    #[test]
    fn os_release_fields_are_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_release_field(text, "PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release_field(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_field(text, "ID"), None);
    }
}
