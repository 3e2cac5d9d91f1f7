//! The embedded DNS, berthd's side. A sandbox on networks gets a resolver listener once it
//! joins a user-defined network (the default `bridge` has no names, as in Docker): UDP and TCP
//! sockets on 127.0.0.11 opened inside the sandbox's namespace, with the sandbox's port 53
//! redirected to them, served by berth-dns from berthd. The listener's ports are recorded so a
//! restarted berthd binds the same ones. After every change the directory of names is rebuilt
//! from the records and swapped into the resolver.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use berth_dns::directory::Querier;
use berth_dns::{Directory, DirectoryBuilder, SandboxListener};
use berth_types::{ExtraHost, ResolverPorts, SandboxMode, SandboxRecord, DEFAULT_NETWORK};

use super::{Controller, State};
use crate::error::{Error, Result};
use crate::host::ResolverSockets;
use crate::sandbox_files::{write_sandbox_files, Nameservers};

/// Port of the resolvers sandboxes name with `--dns`, and of the host's.
const DNS_PORT: u16 = 53;

impl State {
    /// Whether `sandbox` should have a resolver listener: berth made its namespace and it has an
    /// endpoint on a network with names.
    pub(super) fn wants_resolver(&self, sandbox: &SandboxRecord) -> bool {
        sandbox.mode == SandboxMode::Networked
            && sandbox.endpoints.iter().any(|e| self.networks.get(&e.network_id).is_some_and(has_names))
    }

    /// Whether the processes of `sandbox` ask the embedded resolver: its own, or that of the
    /// sandbox whose namespace it shares.
    pub(super) fn uses_embedded_dns(&self, sandbox: &SandboxRecord) -> bool {
        match &sandbox.mode {
            SandboxMode::Container(target) => self.sandboxes.get(target).is_some_and(|t| t.resolver.is_some()),
            _ => sandbox.resolver.is_some(),
        }
    }

    /// The names every network with names holds and who may ask for them, from the records.
    pub(super) fn dns_directory(&self) -> Directory {
        let mut builder = DirectoryBuilder::default();
        for network in self.networks.values().filter(|n| has_names(n)) {
            builder.network(&network.id, &network.name, network.subnets.iter().map(|s| s.subnet).collect());
        }
        for sandbox in self.sandboxes.values() {
            let short_id = &sandbox.id[..12];
            for endpoint in &sandbox.endpoints {
                let mut names = vec![sandbox.name.as_str(), sandbox.hostname.as_str(), short_id];
                names.extend(endpoint.aliases.iter().map(String::as_str));
                let addresses: Vec<IpAddr> = endpoint.addresses().collect();
                builder.endpoint(&endpoint.network_id, &names, &addresses);
            }
            if sandbox.resolver.is_some() {
                let networks = &self.networks;
                builder.querier(
                    &sandbox.id,
                    Querier {
                        networks: sandbox
                            .endpoints
                            .iter()
                            .filter(|e| networks.get(&e.network_id).is_some_and(has_names))
                            .map(|e| e.network_id.clone())
                            .collect(),
                        forward: sandbox
                            .endpoints
                            .iter()
                            .any(|e| networks.get(&e.network_id).is_some_and(|n| !n.internal)),
                        upstreams: sandbox.dns_servers.iter().map(|ip| SocketAddr::new(*ip, DNS_PORT)).collect(),
                    },
                );
            }
        }
        builder.build()
    }
}

/// User-defined networks have names; the default network does not (Docker's rule).
pub(super) fn has_names(network: &berth_types::NetworkRecord) -> bool {
    network.name != DEFAULT_NETWORK
}

/// Longest name a search domain may have (RFC 1035's 255 octets on the wire, as text).
const MAX_DOMAIN_LENGTH: usize = 253;

/// Whether `name` is a domain name: labels of 1-63 letters, digits and hyphens (not at either
/// end), at most 253 characters, a trailing dot allowed.
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= MAX_DOMAIN_LENGTH && name.split('.').all(label_ok)
}

/// Checks `--dns-search` domains: domain names, or `.` alone for no search domains, as Docker
/// takes them.
pub(super) fn check_dns_search(domains: &[String]) -> Result<()> {
    if domains.len() > 1 && domains.iter().any(|d| d == ".") {
        return Err(Error::BadRequest("--dns-search . means no search domains and cannot be given with others".into()));
    }
    match domains.iter().find(|d| *d != "." && !is_domain_name(d)) {
        Some(bad) => Err(Error::BadRequest(format!("invalid --dns-search domain {bad:?}: a domain name is expected"))),
        None => Ok(()),
    }
}

/// The address `--add-host NAME:host-gateway` stands for.
const HOST_GATEWAY: &str = "host-gateway";

/// Parses `--add-host` entries, `NAME:IP` or `NAME=IP` (an IPv6 address bare or in brackets);
/// `host-gateway` is `host_gateway`, an address of the host that sandboxes reach (the default
/// network's gateway, as Docker's docker0 address).
pub(super) fn parse_extra_hosts(specs: &[String], host_gateway: Option<IpAddr>) -> Result<Vec<ExtraHost>> {
    specs
        .iter()
        .map(|spec| {
            let invalid = |why: &str| Error::BadRequest(format!("invalid --add-host {spec:?}: {why}"));
            let (name, address) = spec.split_once([':', '=']).ok_or_else(|| invalid("NAME:IP is expected"))?;
            if !is_domain_name(name) {
                return Err(invalid("the name is not a host name"));
            }
            let address = if address == HOST_GATEWAY {
                host_gateway.ok_or_else(|| invalid("host-gateway needs the default network, whose gateway it is"))?
            } else {
                let bare = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
                bare.parse().map_err(|_| invalid("the address is not an IP address or host-gateway"))?
            };
            Ok(ExtraHost { name: name.to_owned(), address })
        })
        .collect()
}

/// Checks `--dns-option` values: each is one word of printable ASCII (`ndots:1`, `edns0`), as
/// they are written on one `options` line.
pub(super) fn check_dns_options(options: &[String]) -> Result<()> {
    match options.iter().find(|o| o.is_empty() || !o.bytes().all(|b| b.is_ascii_graphic())) {
        Some(bad) => Err(Error::BadRequest(format!(
            "invalid --dns-option {bad:?}: one word of printable characters is expected, e.g. ndots:1"
        ))),
        None => Ok(()),
    }
}

/// The daemon's upstreams from a list of resolver addresses (`--dns`, resolv.conf).
pub fn upstreams_of(addresses: &[IpAddr]) -> Vec<SocketAddr> {
    addresses.iter().map(|ip| SocketAddr::new(*ip, DNS_PORT)).collect()
}

impl Controller {
    /// Gives `sandbox` its resolver listener if it should have one and has none yet: the
    /// sockets, the redirect, and the ports in its record. The caller keeps the listener once
    /// the record is committed (dropping it closes the sockets; the redirect then leads nowhere
    /// and is harmless, and goes with the namespace).
    pub(super) async fn ensure_resolver(
        &self,
        state: &State,
        sandbox: &mut SandboxRecord,
    ) -> Result<Option<SandboxListener>> {
        if sandbox.resolver.is_some() || !state.wants_resolver(sandbox) {
            return Ok(None);
        }
        let (listener, ports) = self.open_resolver(sandbox, None, false)?;
        sandbox.resolver = Some(ports);
        Ok(Some(listener))
    }

    /// Opens the listener of `sandbox` inside its namespace, on `preferred` ports when they are
    /// free, and points the redirect at the ports it got when they are not the preferred ones or
    /// `rewrite_redirect` says the redirect may be missing (a namespace made anew).
    pub(super) fn open_resolver(
        &self,
        sandbox: &SandboxRecord,
        preferred: Option<ResolverPorts>,
        rewrite_redirect: bool,
    ) -> Result<(SandboxListener, ResolverPorts)> {
        let setup = self.start_resolver(sandbox, preferred, rewrite_redirect)?;
        self.finish_resolver(sandbox, setup)
    }

    /// The first half of [`Self::open_resolver`]: binds the sockets and starts the redirect's
    /// `nft`, which runs on while the caller does other work (a new sandbox's endpoint).
    pub(super) fn start_resolver(
        &self,
        sandbox: &SandboxRecord,
        preferred: Option<ResolverPorts>,
        rewrite_redirect: bool,
    ) -> Result<ResolverSockets> {
        let netns = Path::new(&sandbox.netns_path);
        tokio::task::block_in_place(|| self.host.open_resolver(netns, preferred, rewrite_redirect))
            .map_err(|e| Error::Internal(format!("cannot open the resolver of sandbox {}: {e}", sandbox.name)))
    }

    /// The second half of [`Self::open_resolver`]: waits for the redirect and serves the sockets.
    pub(super) fn finish_resolver(
        &self,
        sandbox: &SandboxRecord,
        setup: ResolverSockets,
    ) -> Result<(SandboxListener, ResolverPorts)> {
        let failed = |e: String| Error::Internal(format!("cannot open the resolver of sandbox {}: {e}", sandbox.name));
        if let Some(redirect) = setup.redirect {
            tokio::task::block_in_place(|| redirect.wait()).map_err(|e| failed(e.to_string()))?;
        }
        let listener = self.resolver.listen(&sandbox.id, setup.udp, setup.tcp).map_err(|e| failed(e.to_string()))?;
        Ok((listener, setup.ports))
    }

    /// The resolvers the processes of `sandbox` ask: the embedded one when it has it (or the
    /// sandbox whose namespace it shares has it), else its own `--dns`, else the daemon's, else
    /// the host's.
    fn nameservers_for(&self, state: &State, sandbox: &SandboxRecord) -> Nameservers {
        if state.uses_embedded_dns(sandbox) {
            Nameservers::Embedded
        } else if !sandbox.dns_servers.is_empty() {
            Nameservers::Listed(sandbox.dns_servers.clone())
        } else if !self.dns_servers.is_empty() {
            Nameservers::Listed(self.dns_servers.clone())
        } else {
            Nameservers::Host { loopback_reachable: sandbox.mode == SandboxMode::Host }
        }
    }

    /// Writes (or rewrites) the hosts, hostname and resolv.conf files of `sandbox`.
    pub(super) fn write_files(&self, state: &State, sandbox: &SandboxRecord) -> std::io::Result<()> {
        write_sandbox_files(sandbox, &self.nameservers_for(state, sandbox))
    }

    /// Swaps the directory rebuilt from `state` into the resolver.
    pub(super) fn refresh_dns(&self, state: &State) {
        self.resolver.set_directory(state.dns_directory());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(specs: &[&str], host_gateway: Option<&str>) -> Result<Vec<(String, String)>> {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        let entries = parse_extra_hosts(&specs, host_gateway.map(|g| g.parse().unwrap()))?;
        Ok(entries.into_iter().map(|e| (e.name, e.address.to_string())).collect())
    }

    #[test]
    fn extra_hosts_take_docker_spellings() {
        let entries = parsed(
            &["db:192.0.2.7", "v6:2001:db8::7", "bracketed=[2001:db8::8]", "host.docker.internal:host-gateway"],
            Some("172.17.0.1"),
        )
        .unwrap();
        let expected = [
            ("db", "192.0.2.7"),
            ("v6", "2001:db8::7"),
            ("bracketed", "2001:db8::8"),
            ("host.docker.internal", "172.17.0.1"),
        ];
        assert_eq!(entries, expected.map(|(n, a)| (n.to_owned(), a.to_owned())));
    }

    #[test]
    fn bad_extra_hosts_are_refused_in_one_line() {
        for (spec, says) in [
            ("nocolon", "NAME:IP is expected"),
            ("bad name:192.0.2.7", "not a host name"),
            (":192.0.2.7", "not a host name"),
            ("db:300.1.1.1", "not an IP address"),
            ("db:192.0.2.7\n10.0.0.1 evil", "not an IP address"),
        ] {
            let message = parsed(&[spec], Some("172.17.0.1")).unwrap_err().to_string();
            assert!(message.contains(says) && !message.contains('\n'), "{spec:?}: {message}");
        }
        let message = parsed(&["gw:host-gateway"], None).unwrap_err().to_string();
        assert!(message.contains("host-gateway needs the default network"), "{message}");
    }

    #[test]
    fn search_domains_and_options_are_checked() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_dns_search(&list(&["example.test", "corp.example.", "a-b.c"])).is_ok());
        assert!(check_dns_search(&list(&["."])).is_ok());
        for bad in [&["."][..], &["-a.test"], &["a..test"], &["under_score.test"], &["a b"]] {
            let mut with_other = list(bad);
            if bad == ["."] {
                with_other.push("a.test".into());
            }
            assert!(check_dns_search(&with_other).is_err(), "{with_other:?}");
        }
        assert!(check_dns_options(&list(&["ndots:1", "edns0", "timeout:2"])).is_ok());
        for bad in ["", "ndots:1 rotate", "a\nnameserver 1.2.3.4", "tab\there"] {
            assert!(check_dns_options(&list(&[bad])).is_err(), "{bad:?}");
        }
    }
}
