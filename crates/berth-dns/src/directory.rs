//! What the resolver knows: for each network with embedded DNS, the names of the sandboxes on
//! it (name, aliases, hostname, short id) with their addresses on that network and the reverse
//! map; for each sandbox that asks, the networks it sees (in the order it joined them), whether
//! it may reach upstream resolvers, and its own upstreams (`--dns`). Names are stored lowercase
//! (ASCII: DNS compares names ignoring ASCII case only, RFC 4343) without a trailing dot. berthd
//! builds a new directory after each change and swaps it in.
//!
//! Besides the names it is given, each endpoint answers to `<sandbox name>.<network name>`, as
//! Docker's containers do. The directory is plain data; the lookups the query path needs are
//! the crate-private methods of [`Directory`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The names of one network.
#[derive(Debug, Clone, Default)]
pub struct NetworkNames {
    /// The network's name, lowercase: the suffix of the `<sandbox name>.<network name>` names.
    pub name: String,
    pub subnets: Vec<IpNet>,
    /// Lowercase name → addresses (several sandboxes may share an alias).
    pub names: HashMap<String, Vec<IpAddr>>,
    /// Address → the sandbox's name, for PTR.
    pub reverse: HashMap<IpAddr, String>,
}

/// One sandbox that may ask questions.
#[derive(Debug, Clone, Default)]
pub struct Querier {
    /// Network ids with embedded DNS, in the order the sandbox joined them.
    pub networks: Vec<String>,
    /// Whether names that are not berth's may be forwarded upstream: false when every network
    /// of the sandbox is internal (CVE-2024-29018).
    pub forward: bool,
    /// The sandbox's own upstreams (`berth run --dns`); empty means the daemon's.
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub networks: HashMap<String, NetworkNames>,
    pub queriers: HashMap<String, Querier>,
}

/// What the directory says of an address asked about in a reverse (PTR) lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReverseLookup<'d> {
    /// An endpoint on one of the querier's networks has it: the sandbox's name.
    Sandbox(&'d str),
    /// It lies in a subnet of one of the querier's networks, but no endpoint there has it.
    Unassigned,
    /// None of the querier's networks knows it.
    Unknown,
}

impl Directory {
    /// The addresses `name` (lowercase, without the trailing dot) has on the first of
    /// `querier`'s networks that knows it; None when none does. Network ids of the querier
    /// that the directory does not have are skipped.
    pub(crate) fn addresses(&self, querier: &Querier, name: &str) -> Option<&[IpAddr]> {
        self.networks_seen_by(querier).find_map(|network| network.names.get(name)).map(Vec::as_slice)
    }

    /// Looks `address` up on `querier`'s networks: the sandbox of the first network that has
    /// an endpoint with it, else whether it lies within one of their subnets.
    pub(crate) fn reverse(&self, querier: &Querier, address: IpAddr) -> ReverseLookup<'_> {
        if let Some(sandbox) = self.networks_seen_by(querier).find_map(|network| network.reverse.get(&address)) {
            return ReverseLookup::Sandbox(sandbox);
        }
        let in_a_subnet = self
            .networks_seen_by(querier)
            .any(|network| network.subnets.iter().any(|subnet| subnet.contains(&address)));
        if in_a_subnet {
            ReverseLookup::Unassigned
        } else {
            ReverseLookup::Unknown
        }
    }

    /// The networks of `querier` that the directory has, in the querier's order.
    fn networks_seen_by<'d, 'q>(
        &'d self,
        querier: &'q Querier,
    ) -> impl Iterator<Item = &'d NetworkNames> + use<'d, 'q> {
        querier.networks.iter().filter_map(|id| self.networks.get(id))
    }
}

/// Builds a [`Directory`]; see the module docs.
#[derive(Debug, Default)]
pub struct DirectoryBuilder {
    directory: Directory,
}

impl DirectoryBuilder {
    /// Declares a network with embedded DNS. Declaring a network id again replaces it, dropping
    /// the endpoints declared on it so far: declare each network before its endpoints.
    pub fn network(&mut self, id: &str, name: &str, subnets: Vec<IpNet>) -> &mut Self {
        let network = NetworkNames { name: normalized(name), subnets, ..NetworkNames::default() };
        self.directory.networks.insert(id.to_owned(), network);
        self
    }

    /// Declares a sandbox's endpoint on network `network_id`: it answers to every name in
    /// `names` (the first is the sandbox's name, used for PTR) with `addresses`. Endpoints on
    /// networks not declared are ignored.
    ///
    /// Names are stored lowercase without their trailing dot, and the sandbox's name also as
    /// `<name>.<network name>`. A name several endpoints share (an alias) answers with all
    /// their addresses, each once. Empty names (after the trailing dot is removed) are
    /// skipped, and an endpoint without names is ignored. An address that an earlier endpoint
    /// on the same network already has keeps that endpoint's sandbox name for PTR.
    pub fn endpoint(&mut self, network_id: &str, names: &[&str], addresses: &[IpAddr]) -> &mut Self {
        let Some(network) = self.directory.networks.get_mut(network_id) else {
            return self;
        };
        let Some(sandbox_name) = names.first().map(|name| normalized(name)) else {
            return self;
        };
        if sandbox_name.is_empty() {
            return self;
        }
        let full_name = (!network.name.is_empty()).then(|| format!("{sandbox_name}.{}", network.name));
        for name in names.iter().map(|name| normalized(name)).chain(full_name) {
            if name.is_empty() {
                continue;
            }
            let known = network.names.entry(name).or_default();
            for address in addresses {
                if !known.contains(address) {
                    known.push(*address);
                }
            }
        }
        for address in addresses {
            network.reverse.entry(*address).or_insert_with(|| sandbox_name.clone());
        }
        self
    }

    /// Declares a sandbox that asks questions through its own listener; declaring the same
    /// sandbox again replaces it. Its networks may be declared before or after it, and the ones
    /// never declared are ignored by lookups.
    pub fn querier(&mut self, sandbox_id: &str, querier: Querier) -> &mut Self {
        self.directory.queriers.insert(sandbox_id.to_owned(), querier);
        self
    }

    pub fn build(self) -> Directory {
        self.directory
    }
}

/// `name` as the directory stores it: ASCII lowercase, without one trailing dot.
fn normalized(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn querier_on(networks: &[&str]) -> Querier {
        Querier { networks: networks.iter().map(|id| id.to_string()).collect(), ..Querier::default() }
    }

    #[test]
    fn names_are_stored_lowercase_without_trailing_dot_with_the_network_qualified_name() {
        let mut builder = DirectoryBuilder::default();
        builder.network("n1", "FrontEnd.", vec![net("10.0.0.0/24")]).endpoint(
            "n1",
            &["Web.", "WWW", "abcdef123456"],
            &[ip("10.0.0.2"), ip("fd00::2")],
        );
        let directory = builder.build();
        let network = &directory.networks["n1"];
        assert_eq!(network.name, "frontend");
        let mut names: Vec<_> = network.names.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["abcdef123456", "web", "web.frontend", "www"]);
        assert_eq!(network.names["web.frontend"], [ip("10.0.0.2"), ip("fd00::2")]);
        assert_eq!(network.reverse[&ip("fd00::2")], "web");
    }

    #[test]
    fn a_shared_alias_accumulates_addresses_once_each() {
        let mut builder = DirectoryBuilder::default();
        builder
            .network("n1", "net", vec![])
            .endpoint("n1", &["a", "db"], &[ip("10.0.0.2")])
            .endpoint("n1", &["b", "DB"], &[ip("10.0.0.3"), ip("10.0.0.2")])
            .endpoint("n1", &["c", "db", "db"], &[ip("10.0.0.3")]);
        let directory = builder.build();
        let network = &directory.networks["n1"];
        assert_eq!(network.names["db"], [ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(network.reverse[&ip("10.0.0.2")], "a", "the first endpoint keeps the address");
        assert_eq!(network.reverse[&ip("10.0.0.3")], "b");
    }

    #[test]
    fn endpoints_on_undeclared_networks_and_without_names_are_ignored() {
        let mut builder = DirectoryBuilder::default();
        builder
            .network("n1", "net", vec![])
            .endpoint("n2", &["a"], &[ip("10.0.0.2")])
            .endpoint("n1", &[], &[ip("10.0.0.3")])
            .endpoint("n1", &["."], &[ip("10.0.0.4")])
            .endpoint("n1", &["d", ""], &[ip("10.0.0.5")]);
        let directory = builder.build();
        assert_eq!(directory.networks.len(), 1);
        let network = &directory.networks["n1"];
        let mut names: Vec<_> = network.names.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["d", "d.net"]);
        assert_eq!(network.reverse.len(), 1);
    }

    #[test]
    fn an_unnamed_network_adds_no_qualified_name() {
        let mut builder = DirectoryBuilder::default();
        builder.network("n1", "", vec![]).endpoint("n1", &["a"], &[ip("10.0.0.2")]);
        let directory = builder.build();
        assert_eq!(directory.networks["n1"].names.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn redeclaring_a_network_drops_its_endpoints() {
        let mut builder = DirectoryBuilder::default();
        builder.network("n1", "old", vec![]).endpoint("n1", &["a"], &[ip("10.0.0.2")]).network(
            "n1",
            "new",
            vec![net("10.1.0.0/16")],
        );
        let directory = builder.build();
        let network = &directory.networks["n1"];
        assert_eq!(network.name, "new");
        assert!(network.names.is_empty() && network.reverse.is_empty());
    }

    #[test]
    fn lookups_follow_the_querier_networks_in_order() {
        let mut builder = DirectoryBuilder::default();
        builder
            .network("front", "front", vec![net("10.0.1.0/24")])
            .network("back", "back", vec![net("10.0.2.0/24")])
            .endpoint("front", &["app"], &[ip("10.0.1.5")])
            .endpoint("back", &["app"], &[ip("10.0.2.5")])
            .endpoint("back", &["db"], &[ip("10.0.2.6")])
            .querier("front-first", querier_on(&["missing", "front", "back"]))
            .querier("back-first", querier_on(&["back", "front"]))
            .querier("outsider", querier_on(&["missing"]));
        let directory = builder.build();
        let front_first = &directory.queriers["front-first"];
        let back_first = &directory.queriers["back-first"];
        let outsider = &directory.queriers["outsider"];

        assert_eq!(directory.addresses(front_first, "app"), Some(&[ip("10.0.1.5")][..]));
        assert_eq!(directory.addresses(back_first, "app"), Some(&[ip("10.0.2.5")][..]));
        assert_eq!(directory.addresses(front_first, "db"), Some(&[ip("10.0.2.6")][..]));
        assert_eq!(directory.addresses(front_first, "app.back"), Some(&[ip("10.0.2.5")][..]));
        assert_eq!(directory.addresses(outsider, "app"), None);
        assert_eq!(directory.addresses(front_first, "APP"), None, "callers lowercase the name");

        assert_eq!(directory.reverse(front_first, ip("10.0.2.6")), ReverseLookup::Sandbox("db"));
        assert_eq!(directory.reverse(front_first, ip("10.0.2.7")), ReverseLookup::Unassigned);
        assert_eq!(directory.reverse(front_first, ip("10.0.3.1")), ReverseLookup::Unknown);
        assert_eq!(directory.reverse(outsider, ip("10.0.2.6")), ReverseLookup::Unknown);
    }

    #[test]
    fn redeclaring_a_querier_replaces_it() {
        let mut builder = DirectoryBuilder::default();
        builder.querier("s", Querier { forward: true, ..querier_on(&["a"]) }).querier("s", querier_on(&["b"]));
        let directory = builder.build();
        let querier = &directory.queriers["s"];
        assert_eq!(querier.networks, ["b"]);
        assert!(!querier.forward);
    }
}
