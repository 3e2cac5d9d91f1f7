//! The files a sandbox's processes see as /etc/hosts, /etc/resolv.conf and /etc/hostname,
//! written under the sandbox's config directory and bind-mounted by whoever starts a process.
//! resolv.conf names the embedded resolver (127.0.0.11) with the host's search domains and
//! options when the sandbox has one; otherwise (the default network only, as in Docker) it
//! copies the host's, without loopback nameservers the sandbox cannot reach, falling back to
//! public resolvers when none is left.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use berth_types::{SandboxMode, SandboxRecord};

const HOSTS_HEADER: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

const FALLBACK_NAMESERVERS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

pub fn hosts_path(sandbox: &SandboxRecord) -> String {
    format!("{}/hosts", sandbox.config_dir)
}

pub fn resolv_conf_path(sandbox: &SandboxRecord) -> String {
    format!("{}/resolv.conf", sandbox.config_dir)
}

pub fn hostname_path(sandbox: &SandboxRecord) -> String {
    format!("{}/hostname", sandbox.config_dir)
}

/// Writes (or rewrites) all three files of `sandbox`; `embedded_dns` says whether its processes
/// ask berth's resolver.
pub fn write_sandbox_files(sandbox: &SandboxRecord, embedded_dns: bool) -> std::io::Result<()> {
    fs::create_dir_all(&sandbox.config_dir)?;
    let host_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (hosts, resolv) = match sandbox.mode {
        SandboxMode::Host => (host_hosts, host_resolv),
        _ if embedded_dns => (sandbox_hosts(sandbox), embedded_resolv_conf(&host_resolv)),
        _ => (sandbox_hosts(sandbox), sandbox_resolv_conf(&host_resolv)),
    };
    fs::write(hosts_path(sandbox), hosts)?;
    fs::write(resolv_conf_path(sandbox), resolv)?;
    fs::write(hostname_path(sandbox), format!("{}\n", sandbox.hostname))
}

/// Removes the sandbox's config directory.
pub fn remove_sandbox_files(sandbox: &SandboxRecord) -> std::io::Result<()> {
    match fs::remove_dir_all(&sandbox.config_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether all three files are present.
pub fn sandbox_files_exist(sandbox: &SandboxRecord) -> bool {
    [hosts_path(sandbox), resolv_conf_path(sandbox), hostname_path(sandbox)]
        .iter()
        .all(|p| Path::new(p).exists())
}

fn sandbox_hosts(sandbox: &SandboxRecord) -> String {
    let mut hosts = HOSTS_HEADER.to_owned();
    let addresses = sandbox.endpoints.iter().flat_map(|e| {
        e.ipv4.map(|a| IpAddr::V4(a.addr())).into_iter().chain(e.ipv6.map(|a| IpAddr::V6(a.addr())))
    });
    for addr in addresses {
        hosts.push_str(&format!("{addr}\t{}\n", sandbox.hostname));
    }
    hosts
}

/// The embedded resolver, with the host's search domains and options (ndots among them).
fn embedded_resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {}\n", berth_dns::RESOLVER_ADDRESS);
    for line in host.lines() {
        if matches!(line.split_whitespace().next(), Some("search" | "domain" | "options")) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn sandbox_resolv_conf(host: &str) -> String {
    let mut kept_nameserver = false;
    let mut out = String::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let reachable = words
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| !a.is_loopback());
            if !reachable {
                continue;
            }
            kept_nameserver = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !kept_nameserver {
        out.push_str(FALLBACK_NAMESERVERS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_resolver_keeps_search_and_options() {
        let out = embedded_resolv_conf("# generated\nnameserver 127.0.0.53\nsearch corp.example\noptions ndots:2 edns0\n");
        assert_eq!(out, "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:2 edns0\n");
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let out = sandbox_resolv_conf("search example.org\nnameserver 127.0.0.53\noptions ndots:2\n");
        assert_eq!(out, format!("search example.org\noptions ndots:2\n{FALLBACK_NAMESERVERS}"));
        let out = sandbox_resolv_conf("nameserver 192.0.2.53\n");
        assert_eq!(out, "nameserver 192.0.2.53\n");
    }
}
