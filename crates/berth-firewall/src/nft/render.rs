//! Turns a [`Ruleset`] into nft script text and into the content berth's table must hold.
//!
//! Pure functions, no I/O: what [`super::NftFirewall`] feeds to `nft -f -` and what
//! [`super::listing`] compares the kernel's listing with both come from [`Content`], so the two
//! can never disagree. Nothing here names a table other than `inet berth`, and no script here
//! flushes or deletes the user's hook chain.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use berth_types::PortRange;

use crate::{Dnat, FirewallError, NetworkPolicy, RoutedPort, Ruleset};

/// berth's table; nothing else is ever named in a script.
pub(crate) const TABLE: &str = "inet berth";

/// The chain berth jumps to before its own verdicts and never flushes nor deletes.
pub(crate) const USER_HOOK: &str = "user-hook";

/// berth's own chains with their declarations (empty for regular chains), emptied and refilled
/// by every apply. A declaration must never change: `add chain` of an existing base chain with
/// another type or hook fails.
pub(crate) const CHAINS: [(&str, &str); 7] = [
    ("prerouting", "{ type nat hook prerouting priority dstnat; policy accept; }"),
    // nft 1.0.6 accepts the `dstnat` keyword only on the prerouting hook; -100 is its value.
    ("output", "{ type nat hook output priority -100; policy accept; }"),
    ("postrouting", "{ type nat hook postrouting priority srcnat; policy accept; }"),
    ("forward", "{ type filter hook forward priority filter; policy accept; }"),
    // Before conntrack and NAT: drops packets from the wire to 127.0.0.0/8 (CVE-2020-8558).
    ("localnet-guard", "{ type filter hook prerouting priority raw; policy accept; }"),
    ("published", ""),
    ("into-network", ""),
];

/// berth's sets and maps: keyword, name, declaration; emptied and refilled by every apply.
pub(crate) const SETS: [(&str, &str, &str); 9] = [
    ("set", "bridges", "{ type ifname; }"),
    ("set", "internal_bridges", "{ type ifname; }"),
    ("set", "bridge_pairs", "{ type ifname . ifname; }"),
    ("map", DNAT_PORT4, "{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; }"),
    ("map", DNAT_ADDR4, "{ type ipv4_addr . inet_proto . inet_service : ipv4_addr; flags interval; }"),
    ("map", DNAT_PORT6, "{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; flags interval; }"),
    ("map", DNAT_ADDR6, "{ type ipv6_addr . inet_proto . inet_service : ipv6_addr; flags interval; }"),
    // One element per port (no intervals): two mappings may open the same container port.
    ("set", ROUTED4, "{ type ipv4_addr . inet_proto . inet_service; }"),
    ("set", ROUTED6, "{ type ipv6_addr . inet_proto . inet_service; }"),
];

const ROUTED4: &str = "routed_ports4";
const ROUTED6: &str = "routed_ports6";

const DNAT_PORT4: &str = "dnat_port4";
const DNAT_ADDR4: &str = "dnat_addr4";
const DNAT_PORT6: &str = "dnat_port6";
const DNAT_ADDR6: &str = "dnat_addr6";

/// Rules that do not depend on the ruleset: (chain, rule). The output chain's rules depend on
/// [`Ruleset::loopback_dnat`] and are added by [`Content::of`].
const FIXED_RULES: [(&str, &str); 18] = [
    // Never from the wire to a loopback address (CVE-2020-8558): with route_localnet on an
    // interface (berthd sets it on its bridges when loopback DNAT is on) the kernel would route
    // such a packet to the host's 127.0.0.1 services. Rendered whatever the setting: such a
    // packet is a martian anyway, and a bridge may keep route_localnet from an earlier run.
    ("localnet-guard", "ip daddr 127.0.0.0/8 iifname != \"lo\" drop"),
    // Published ports: packets from outside to a local address, never a loopback one (a LAN
    // packet to 127.0.0.1 must not reach a port published on 127.0.0.1 only; CVE-2020-8558).
    ("prerouting", "ip daddr 127.0.0.0/8 return"),
    ("prerouting", "fib daddr type local jump published"),
    // The kernel never routes ::1 out of a non-loopback interface: ::1 is the proxy's job.
    ("published", "ip6 daddr ::1 return"),
    ("published", "meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport map @dnat_port4"),
    ("published", "meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport map @dnat_addr4"),
    ("published", "meta l4proto { tcp, udp, sctp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat_port6"),
    ("published", "meta l4proto { tcp, udp, sctp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat_addr6"),
    ("forward", "ct state established,related accept"),
    ("forward", "ct state invalid iifname @bridges drop"),
    ("forward", "ct state invalid oifname @bridges drop"),
    ("forward", "jump user-hook"),
    ("forward", "oifname @bridges jump into-network"),
    ("forward", "iifname @internal_bridges drop"),
    // New connections into a network: from its own bridge, or to a published port unless
    // the network is internal; nothing else (isolation, no direct routing to sandboxes).
    ("into-network", "iifname . oifname @bridge_pairs accept"),
    ("into-network", "oifname @internal_bridges drop"),
    // Routed networks: their published container ports, straight to the sandbox.
    ("into-network", "ip daddr . meta l4proto . th dport @routed_ports4 accept"),
    ("into-network", "ip6 daddr . meta l4proto . th dport @routed_ports6 accept"),
];

/// Host processes to a loopback address: not DNATed unless [`Ruleset::loopback_dnat`] (the
/// userland proxy serves them).
const OUTPUT_LOOPBACK_RETURN: &str = "ip daddr 127.0.0.0/8 return";

/// With [`Ruleset::loopback_dnat`]: a host process's packet from 127.0.0.1, DNATed to a
/// sandbox, leaves with the bridge's address, or the sandbox would answer its own loopback.
const LOOPBACK_MASQUERADE: &str = "oifname @bridges ip saddr 127.0.0.0/8 masquerade";

/// The last rules of `into-network`, after the fixed ones.
const INTO_NETWORK_TAIL: [&str; 2] = ["ct status dnat accept", "drop"];

/// One set or map element, in nft script syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Element {
    pub set: &'static str,
    pub key: String,
    pub value: Option<String>,
}

impl Element {
    /// `key : value`, as `add element` and the normalised listing write it.
    pub fn text(&self) -> String {
        match &self.value {
            Some(value) => format!("{} : {value}", self.key),
            None => self.key.clone(),
        }
    }
}

/// Everything berth's table holds for one ruleset.
#[derive(Debug)]
pub(crate) struct Content {
    /// For every chain of [`CHAINS`], in order, its rules.
    pub rules: Vec<(&'static str, Vec<String>)>,
    /// For every set of [`SETS`], in order, its elements.
    pub elements: Vec<(&'static str, BTreeSet<Element>)>,
}

impl Content {
    pub fn of(ruleset: &Ruleset) -> Result<Self, FirewallError> {
        let mut rules: Vec<(&'static str, Vec<String>)> = CHAINS.iter().map(|(name, _)| (*name, Vec::new())).collect();
        let mut push_rule = |chain: &str, rule: String| {
            let (_, list) = rules.iter_mut().find(|(name, _)| *name == chain).expect("rules go to berth's own chains");
            list.push(rule);
        };
        for (chain, rule) in FIXED_RULES {
            push_rule(chain, rule.to_owned());
        }
        for rule in INTO_NETWORK_TAIL {
            push_rule("into-network", rule.to_owned());
        }
        if ruleset.loopback_dnat {
            push_rule("postrouting", LOOPBACK_MASQUERADE.to_owned());
        } else {
            push_rule("output", OUTPUT_LOOPBACK_RETURN.to_owned());
        }
        push_rule("output", "fib daddr type local jump published".to_owned());
        let mut elements = BTreeSet::new();
        for network in &ruleset.networks {
            check_bridge(network)?;
            let bridge = format!("\"{}\"", network.bridge);
            for set in ["bridges", "bridge_pairs"].into_iter().chain(network.internal.then_some("internal_bridges")) {
                let key = if set == "bridge_pairs" { format!("{bridge} . {bridge}") } else { bridge.clone() };
                elements.insert(Element { set, key, value: None });
            }
            if network.internal {
                continue;
            }
            for subnet in &network.subnets {
                let (ip, subnet) = match subnet.trunc() {
                    subnet @ ipnet::IpNet::V4(_) => ("ip", subnet),
                    subnet @ ipnet::IpNet::V6(_) => ("ip6", subnet),
                };
                if !network.unmasqueraded.iter().any(|u| u.trunc() == subnet) {
                    push_rule("postrouting", format!("{ip} saddr {subnet} oifname != {bridge} masquerade"));
                }
                // Hairpin: a sandbox reaching a published port of its own network through a
                // host address must see the answer come from that address.
                push_rule("postrouting", format!("ct status dnat oifname {bridge} {ip} saddr {subnet} masquerade"));
            }
        }
        elements.extend(ruleset.routed_ports.iter().map(routed_port_element));
        for dnat in &ruleset.dnats {
            elements.extend(dnat_elements(dnat)?);
        }
        let elements = SETS
            .iter()
            .map(|(_, name, _)| (*name, elements.iter().filter(|e| e.set == *name).cloned().collect()))
            .collect();
        Ok(Self { rules, elements })
    }

    /// The script that makes the table hold exactly this content, in one batch.
    pub fn script(&self) -> String {
        let mut script = format!("add table {TABLE}\n");
        for (name, declaration) in CHAINS {
            let _ = writeln!(script, "{}", format!("add chain {TABLE} {name} {declaration}").trim_end());
            let _ = writeln!(script, "flush chain {TABLE} {name}");
        }
        let _ = writeln!(script, "add chain {TABLE} {USER_HOOK}");
        for (keyword, name, declaration) in SETS {
            let _ = writeln!(script, "add {keyword} {TABLE} {name} {declaration}");
            let _ = writeln!(script, "flush {keyword} {TABLE} {name}");
        }
        for (chain, rules) in &self.rules {
            for rule in rules {
                let _ = writeln!(script, "add rule {TABLE} {chain} {rule}");
            }
        }
        script.push_str(&element_lines("add", self.elements.iter().flat_map(|(_, e)| e), Element::text));
        script
    }
}

/// `add element` lines for `dnats`, one per map.
pub(crate) fn add_dnats_script(dnats: &[Dnat]) -> Result<String, FirewallError> {
    let elements = dnats_elements(dnats)?;
    Ok(element_lines("add", &elements, Element::text))
}

/// `delete element` lines for `dnats`, one per map.
pub(crate) fn remove_dnats_script(dnats: &[Dnat]) -> Result<String, FirewallError> {
    let elements = dnats_elements(dnats)?;
    Ok(element_lines("delete", &elements, |e| e.key.clone()))
}

/// `add element` lines for routed ports, one per set.
pub(crate) fn add_routed_ports_script(ports: &[RoutedPort]) -> String {
    let elements: BTreeSet<Element> = ports.iter().map(routed_port_element).collect();
    element_lines("add", &elements, Element::text)
}

/// `delete element` lines for routed ports, one per set.
pub(crate) fn remove_routed_ports_script(ports: &[RoutedPort]) -> String {
    let elements: BTreeSet<Element> = ports.iter().map(routed_port_element).collect();
    element_lines("delete", &elements, |e| e.key.clone())
}

fn routed_port_element(routed: &RoutedPort) -> Element {
    let set = if routed.address.is_ipv6() { ROUTED6 } else { ROUTED4 };
    Element { set, key: format!("{} . {} . {}", routed.address, routed.protocol, routed.port), value: None }
}

fn dnats_elements(dnats: &[Dnat]) -> Result<BTreeSet<Element>, FirewallError> {
    let mut elements = BTreeSet::new();
    for dnat in dnats {
        elements.extend(dnat_elements(dnat)?);
    }
    Ok(elements)
}

/// One `VERB element` line per set, elements in the order given (grouped by set).
fn element_lines<'a>(
    verb: &str,
    elements: impl IntoIterator<Item = &'a Element>,
    text: impl Fn(&Element) -> String,
) -> String {
    let mut script = String::new();
    let mut current: Option<&str> = None;
    for element in elements {
        if current != Some(element.set) {
            if current.is_some() {
                script.push_str(" }\n");
            }
            let _ = write!(script, "{verb} element {TABLE} {} {{ ", element.set);
            current = Some(element.set);
        } else {
            script.push_str(", ");
        }
        script.push_str(&text(element));
    }
    if current.is_some() {
        script.push_str(" }\n");
    }
    script
}

/// Linux interface names: 1 to 15 bytes, no slash, colon, whitespace or quote (which would
/// also break out of the script's string).
fn check_bridge(network: &NetworkPolicy) -> Result<(), FirewallError> {
    let name = &network.bridge;
    let bad = |c: char| c == '/' || c == ':' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control();
    let reason = if name.is_empty() || name.len() > 15 {
        "a bridge name has 1 to 15 bytes"
    } else if name.chars().any(bad) {
        "a bridge name has no slash, colon, quote, backslash or whitespace"
    } else {
        return Ok(());
    };
    Err(FirewallError::InvalidNetwork { name: network.name.clone(), reason: format!("bridge {name:?}: {reason}") })
}

/// The map elements of one mapping: one element when the port is kept or every host port maps
/// to one target port, one per port when a range maps to another range of the same length.
fn dnat_elements(dnat: &Dnat) -> Result<Vec<Element>, FirewallError> {
    let invalid = |reason: &str| FirewallError::InvalidDnat { dnat: dnat.to_string(), reason: reason.to_owned() };
    let v6 = dnat.target.is_ipv6();
    if dnat.host_ip.is_some_and(|ip| ip.is_ipv6() != v6) {
        return Err(invalid("the host address and the target are of different families"));
    }
    if dnat.host_ports.start > dnat.host_ports.end || dnat.target_ports.start > dnat.target_ports.end {
        return Err(invalid("a port range starts after its end"));
    }
    let host = match dnat.host_ip {
        Some(ip) => ip.to_string(),
        None if v6 => "::/0".to_owned(),
        None => "0.0.0.0/0".to_owned(),
    };
    let (port_map, addr_map) = if v6 { (DNAT_PORT6, DNAT_ADDR6) } else { (DNAT_PORT4, DNAT_ADDR4) };
    let key = |ports: PortRange| format!("{host} . {} . {ports}", dnat.protocol);
    let target = dnat.target;
    if dnat.target_ports == dnat.host_ports {
        return Ok(vec![Element { set: addr_map, key: key(dnat.host_ports), value: Some(target.to_string()) }]);
    }
    if dnat.target_ports.count() == 1 {
        let value = format!("{target} . {}", dnat.target_ports.start);
        return Ok(vec![Element { set: port_map, key: key(dnat.host_ports), value: Some(value) }]);
    }
    if dnat.target_ports.count() != dnat.host_ports.count() {
        return Err(invalid("the target ports are neither one port nor as many as the host ports"));
    }
    Ok((dnat.host_ports.start..=dnat.host_ports.end)
        .zip(dnat.target_ports.start..=dnat.target_ports.end)
        .map(|(host_port, target_port)| Element {
            set: port_map,
            key: key(PortRange::single(host_port)),
            value: Some(format!("{target} . {target_port}")),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use berth_types::PortProtocol;

    use super::*;

    /// The ruleset shared with tests/nftables.rs.
    mod example_ruleset {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/example_ruleset.rs"));
    }
    use example_ruleset::{dnat, example};

    fn lines(script: &str) -> Vec<&str> {
        script.lines().collect()
    }

    #[test]
    fn the_script_declares_everything_and_flushes_all_but_the_user_hook() {
        let script = Content::of(&example()).unwrap().script();
        let lines = lines(&script);
        assert_eq!(lines[0], "add table inet berth");
        for expected in [
            "add chain inet berth prerouting { type nat hook prerouting priority dstnat; policy accept; }",
            "flush chain inet berth prerouting",
            "add chain inet berth forward { type filter hook forward priority filter; policy accept; }",
            "flush chain inet berth forward",
            "add chain inet berth user-hook",
            "add chain inet berth published",
            "add map inet berth dnat_addr4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr; flags interval; }",
            "flush map inet berth dnat_addr4",
            "add set inet berth bridges { type ifname; }",
            "flush set inet berth bridges",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{script}");
        }
        assert!(!script.contains("flush chain inet berth user-hook"));
        assert!(!script.contains("delete"));
        assert!(script.lines().all(|line| line.contains(" inet berth")), "{script}");
    }

    #[test]
    fn networks_get_masquerade_isolation_and_internal_rules() {
        let script = Content::of(&example()).unwrap().script();
        let lines = lines(&script);
        for expected in [
            r#"add rule inet berth postrouting ip saddr 172.18.0.0/16 oifname != "br-web" masquerade"#,
            r#"add rule inet berth postrouting ct status dnat oifname "br-web" ip saddr 172.18.0.0/16 masquerade"#,
            r#"add rule inet berth postrouting ip6 saddr fd00:18::/64 oifname != "br-web" masquerade"#,
            r#"add rule inet berth postrouting ct status dnat oifname "br-web" ip6 saddr fd00:18::/64 masquerade"#,
            "add rule inet berth forward jump user-hook",
            "add rule inet berth into-network iifname . oifname @bridge_pairs accept",
            "add rule inet berth into-network oifname @internal_bridges drop",
            "add rule inet berth into-network ct status dnat accept",
            "add rule inet berth into-network drop",
            r#"add element inet berth bridges { "br-db", "br-web" }"#,
            r#"add element inet berth internal_bridges { "br-db" }"#,
            r#"add element inet berth bridge_pairs { "br-db" . "br-db", "br-web" . "br-web" }"#,
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{script}");
        }
        assert!(!script.contains("172.19.0.0/16"), "an internal network is never masqueraded:\n{script}");
        // The user hook comes before every verdict on traffic into a network.
        let position = |needle: &str| lines.iter().position(|l| l.ends_with(needle)).unwrap();
        assert!(position("forward jump user-hook") < position("forward oifname @bridges jump into-network"));
    }

    #[test]
    fn dnats_become_one_element_each_in_the_right_map() {
        let script = Content::of(&example()).unwrap().script();
        let lines = lines(&script);
        for expected in [
            "add element inet berth dnat_port4 { 0.0.0.0/0 . tcp . 8080 : 172.18.0.2 . 80 }",
            "add element inet berth dnat_addr4 { 192.0.2.1 . udp . 20000-20999 : 172.18.0.3 }",
            "add element inet berth dnat_port6 { 2001:db8::1 . sctp . 7000-7010 : fd00:18::3 . 70 }",
            "add element inet berth dnat_addr6 { ::/0 . tcp . 9000 : fd00:18::2 }",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{script}");
        }
    }

    #[test]
    fn rendering_twice_gives_the_same_script() {
        let mut shuffled = example();
        shuffled.dnats.reverse();
        shuffled.dnats.push(shuffled.dnats[0]);
        let once = Content::of(&example()).unwrap().script();
        assert_eq!(once, Content::of(&example()).unwrap().script());
        assert_eq!(once, Content::of(&shuffled).unwrap().script(), "order and duplicates do not matter");
    }

    #[test]
    fn an_empty_ruleset_still_declares_the_table() {
        let content = Content::of(&Ruleset::default()).unwrap();
        let script = content.script();
        assert!(!script.contains("element"), "{script}");
        assert!(!script.contains("masquerade"), "{script}");
        // The fixed rules, the tail of into-network and the output chain's two rules.
        assert_eq!(content.rules.iter().map(|(_, r)| r.len()).sum::<usize>(), FIXED_RULES.len() + 4);
    }

    /// The rules of `chain` in the content of `ruleset`.
    fn chain_rules(ruleset: &Ruleset, chain: &str) -> Vec<String> {
        let content = Content::of(ruleset).unwrap();
        content.rules.into_iter().find(|(name, _)| *name == chain).unwrap().1
    }

    #[test]
    fn without_loopback_dnat_loopback_is_never_dnated() {
        let ruleset = example();
        assert!(!ruleset.loopback_dnat && !Ruleset::default().loopback_dnat, "off by default");
        let loopback = "ip daddr 127.0.0.0/8 return";
        let jump = "fib daddr type local jump published";
        assert_eq!(chain_rules(&ruleset, "prerouting"), [loopback, jump]);
        assert_eq!(chain_rules(&ruleset, "output"), [loopback, jump]);
        assert_eq!(chain_rules(&ruleset, "published")[0], "ip6 daddr ::1 return");
        assert!(!chain_rules(&ruleset, "postrouting").iter().any(|r| r.contains("127.0.0.0/8")));
        // The guard is there whatever the setting.
        assert_eq!(chain_rules(&ruleset, "localnet-guard"), [r#"ip daddr 127.0.0.0/8 iifname != "lo" drop"#]);
    }

    #[test]
    fn with_loopback_dnat_host_processes_reach_published_ports_on_loopback() {
        let ruleset = Ruleset { loopback_dnat: true, ..example() };
        let script = Content::of(&ruleset).unwrap().script();
        let lines = lines(&script);
        for expected in [
            // The output path DNATs 127.0.0.0/8; the prerouting path never does.
            "add rule inet berth prerouting ip daddr 127.0.0.0/8 return",
            "add rule inet berth output fib daddr type local jump published",
            // ::1 is never DNATed: the kernel does not route it out of a bridge.
            "add rule inet berth published ip6 daddr ::1 return",
            "add rule inet berth postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade",
            "add chain inet berth localnet-guard { type filter hook prerouting priority raw; policy accept; }",
            "flush chain inet berth localnet-guard",
            r#"add rule inet berth localnet-guard ip daddr 127.0.0.0/8 iifname != "lo" drop"#,
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{script}");
        }
        assert_eq!(chain_rules(&ruleset, "output"), ["fib daddr type local jump published"]);
        assert_eq!(chain_rules(&ruleset, "prerouting"), chain_rules(&example(), "prerouting"));
        assert_eq!(chain_rules(&ruleset, "published"), chain_rules(&example(), "published"));
        // The loopback masquerade comes first, then the networks' rules, unchanged.
        let postrouting = chain_rules(&ruleset, "postrouting");
        assert_eq!(postrouting[0], LOOPBACK_MASQUERADE);
        assert_eq!(postrouting[1..], chain_rules(&example(), "postrouting"));
        // The same chains and sets are declared either way, so switching is a plain apply.
        let declarations = |script: &str| -> Vec<String> {
            script
                .lines()
                .filter(|l| !l.starts_with("add rule") && !l.starts_with("add element"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(declarations(&script), declarations(&Content::of(&example()).unwrap().script()));
        // With no network at all the masquerade still matches nothing but berth's bridges.
        let empty = Ruleset { loopback_dnat: true, ..Ruleset::default() };
        assert_eq!(chain_rules(&empty, "postrouting"), [LOOPBACK_MASQUERADE]);
    }

    #[test]
    fn a_range_mapped_to_a_range_of_the_same_length_is_one_element_per_port() {
        let dnats = [dnat(PortProtocol::Tcp, None, (8000, 8002), "172.18.0.2", (9000, 9002))];
        assert_eq!(
            add_dnats_script(&dnats).unwrap(),
            "add element inet berth dnat_port4 { 0.0.0.0/0 . tcp . 8000 : 172.18.0.2 . 9000, \
             0.0.0.0/0 . tcp . 8001 : 172.18.0.2 . 9001, 0.0.0.0/0 . tcp . 8002 : 172.18.0.2 . 9002 }\n"
        );
    }

    #[test]
    fn removing_names_keys_only() {
        let dnats = [
            dnat(PortProtocol::Udp, Some("fe80::1"), (53, 53), "fd00::5", (53, 53)),
            dnat(PortProtocol::Tcp, Some("192.0.2.1"), (80, 80), "172.18.0.2", (8080, 8080)),
        ];
        assert_eq!(
            remove_dnats_script(&dnats).unwrap(),
            "delete element inet berth dnat_addr6 { fe80::1 . udp . 53 }\n\
             delete element inet berth dnat_port4 { 192.0.2.1 . tcp . 80 }\n"
        );
        assert_eq!(remove_dnats_script(&[]).unwrap(), "");
    }

    #[test]
    fn invalid_mappings_and_bridges_are_refused() {
        let mixed = dnat(PortProtocol::Tcp, Some("::1"), (80, 80), "172.18.0.2", (80, 80));
        assert_eq!(
            add_dnats_script(&[mixed]).unwrap_err().to_string(),
            "invalid port mapping [::1]:80/tcp -> 172.18.0.2:80: the host address and the target are of different families"
        );
        let uneven = dnat(PortProtocol::Tcp, None, (80, 82), "172.18.0.2", (90, 91));
        assert!(add_dnats_script(&[uneven]).unwrap_err().to_string().contains("neither one port nor as many"));
        let mut ruleset = example();
        ruleset.networks[0].bridge = "br\" accept".into();
        assert!(Content::of(&ruleset).unwrap_err().to_string().starts_with("invalid network \"web\": bridge"));
        ruleset.networks[0].bridge = "a-very-long-bridge".into();
        assert!(Content::of(&ruleset).unwrap_err().to_string().contains("1 to 15 bytes"));
    }
}
