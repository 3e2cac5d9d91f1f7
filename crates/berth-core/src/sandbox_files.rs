//! The files a sandbox's processes see as /etc/hosts, /etc/resolv.conf and /etc/hostname,
//! written under the sandbox's config directory and bind-mounted by whoever starts a process.
//! resolv.conf names the embedded resolver (127.0.0.11) when the sandbox has one; otherwise
//! (the default network, as in Docker) the sandbox's own `--dns` servers, else the daemon's,
//! else the host's without loopback nameservers the sandbox cannot reach, falling back to public
//! resolvers when none is left. Search domains and options are the host's unless the sandbox
//! has its own (`--dns-search`, `--dns-option`); every other line of the host's file is kept.
//! hosts lists the sandbox's own addresses (the host's file in host mode), then its
//! `--add-host` entries.

use std::fmt::Write as _;
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

/// The resolvers a sandbox's resolv.conf names.
#[derive(Debug, Clone)]
pub enum Nameservers {
    /// berth's embedded resolver.
    Embedded,
    /// These (the sandbox's `--dns`, or the daemon's).
    Listed(Vec<IpAddr>),
    /// The host's; loopback ones only where the sandbox shares the host's namespace.
    Host { loopback_reachable: bool },
}

/// Writes (or rewrites) all three files of `sandbox`, its resolv.conf naming `nameservers`.
pub fn write_sandbox_files(sandbox: &SandboxRecord, nameservers: &Nameservers) -> std::io::Result<()> {
    fs::create_dir_all(&sandbox.config_dir)?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut hosts = match sandbox.mode {
        SandboxMode::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        _ => sandbox_hosts(sandbox),
    };
    if !hosts.is_empty() && !hosts.ends_with('\n') {
        hosts.push('\n');
    }
    for entry in &sandbox.extra_hosts {
        let _ = writeln!(hosts, "{}\t{}", entry.address, entry.name);
    }
    fs::write(hosts_path(sandbox), hosts)?;
    fs::write(
        resolv_conf_path(sandbox),
        resolv_conf(&host_resolv, nameservers, &sandbox.dns_search, &sandbox.dns_options),
    )?;
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
    [hosts_path(sandbox), resolv_conf_path(sandbox), hostname_path(sandbox)].iter().all(|p| Path::new(p).exists())
}

fn sandbox_hosts(sandbox: &SandboxRecord) -> String {
    let mut hosts = HOSTS_HEADER.to_owned();
    let addresses = sandbox
        .endpoints
        .iter()
        .flat_map(|e| e.ipv4.map(|a| IpAddr::V4(a.addr())).into_iter().chain(e.ipv6.map(|a| IpAddr::V6(a.addr()))));
    for addr in addresses {
        hosts.push_str(&format!("{addr}\t{}\n", sandbox.hostname));
    }
    hosts
}

/// A sandbox's resolv.conf from the host's: `nameservers` first, then the host's lines in order
/// (its nameservers only for [`Nameservers::Host`], its search/domain and options lines unless
/// the sandbox has its own `search` or `options`), then the sandbox's own search domains (none
/// for `.`) and options.
fn resolv_conf(host: &str, nameservers: &Nameservers, search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    match nameservers {
        Nameservers::Embedded => {
            let _ = writeln!(out, "nameserver {}", berth_dns::RESOLVER_ADDRESS);
        }
        Nameservers::Listed(servers) => {
            for server in servers {
                let _ = writeln!(out, "nameserver {server}");
            }
        }
        Nameservers::Host { .. } => {}
    }
    let mut kept_host_nameserver = false;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        let keep = match words.next() {
            Some("nameserver") => match nameservers {
                Nameservers::Host { loopback_reachable } => {
                    let reachable = words
                        .next()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .is_some_and(|a| *loopback_reachable || !a.is_loopback());
                    kept_host_nameserver |= reachable;
                    reachable
                }
                _ => false,
            },
            Some("search" | "domain") => search.is_empty(),
            Some("options") => options.is_empty(),
            _ => true,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    if matches!(nameservers, Nameservers::Host { loopback_reachable: false }) && !kept_host_nameserver {
        out.push_str(FALLBACK_NAMESERVERS);
    }
    if !search.is_empty() && search != ["."] {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nsearch corp.example\noptions ndots:2 edns0\n";

    fn resolv(nameservers: Nameservers, search: &[&str], options: &[&str]) -> String {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        resolv_conf(HOST, &nameservers, &own(search), &own(options))
    }

    #[test]
    fn embedded_resolver_keeps_search_and_options() {
        let out = resolv(Nameservers::Embedded, &[], &[]);
        assert_eq!(out, "nameserver 127.0.0.11\n# generated\nsearch corp.example\noptions ndots:2 edns0\n");
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let out = resolv_conf(
            "search example.org\nnameserver 127.0.0.53\noptions ndots:2\n",
            &Nameservers::Host { loopback_reachable: false },
            &[],
            &[],
        );
        assert_eq!(out, format!("search example.org\noptions ndots:2\n{FALLBACK_NAMESERVERS}"));
        let out = resolv_conf("nameserver 192.0.2.53\n", &Nameservers::Host { loopback_reachable: false }, &[], &[]);
        assert_eq!(out, "nameserver 192.0.2.53\n");
    }

    #[test]
    fn host_mode_keeps_the_hosts_file_as_it_is() {
        assert_eq!(resolv(Nameservers::Host { loopback_reachable: true }, &[], &[]), HOST);
    }

    #[test]
    fn own_servers_search_domains_and_options_replace_the_hosts() {
        let servers = Nameservers::Listed(vec!["192.0.2.53".parse().unwrap(), "2001:db8::53".parse().unwrap()]);
        let out = resolv(servers, &["a.test", "b.test"], &["ndots:1", "timeout:2"]);
        assert_eq!(out, "nameserver 192.0.2.53\nnameserver 2001:db8::53\n# generated\nsearch a.test b.test\noptions ndots:1 timeout:2\n");
        // "." alone: no search domains at all, not even the host's.
        let out = resolv(Nameservers::Embedded, &["."], &[]);
        assert_eq!(out, "nameserver 127.0.0.11\n# generated\noptions ndots:2 edns0\n");
    }
}
