//! Reads the JSON of `nft -j list table inet berth` into what berth compares with the
//! [`Content`] a ruleset renders to: the chains with their rule counts, the sets and maps with
//! their elements normalised to nft script syntax (handles and counters dropped).
//!
//! Pure, no I/O. It never interprets rules beyond counting them, and never looks at the user's
//! hook chain beyond checking that it exists.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;

use super::render::{Content, CHAINS, SETS, USER_HOOK};
use crate::FirewallError;

/// What the kernel holds in berth's table.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// Chain name → number of rules.
    chains: HashMap<String, usize>,
    /// Set or map name → elements, as `key` or `key : value` in script syntax.
    sets: HashMap<String, BTreeSet<String>>,
}

impl Observed {
    pub fn parse(listing: &str) -> Result<Self, FirewallError> {
        let json: Value = serde_json::from_str(listing).map_err(|e| FirewallError::Listing(e.to_string()))?;
        let objects = json
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| FirewallError::Listing("no \"nftables\" array".into()))?;
        let mut observed = Self::default();
        for object in objects {
            if let Some(chain) = object.get("chain") {
                observed.chains.entry(name_of(chain, "name")?).or_default();
            } else if let Some(rule) = object.get("rule") {
                *observed.chains.entry(name_of(rule, "chain")?).or_default() += 1;
            } else if let Some(set) = object.get("set").or_else(|| object.get("map")) {
                let key_types = types(set.get("type"));
                let value_types = types(set.get("map"));
                let elements = set
                    .get("elem")
                    .and_then(Value::as_array)
                    .map(|elements| elements.iter().map(|e| element(e, &key_types, &value_types)).collect())
                    .unwrap_or_default();
                observed.sets.insert(name_of(set, "name")?, elements);
            }
        }
        Ok(observed)
    }

    /// The first way the kernel's table differs from `content`, or None when it holds it.
    pub fn difference(&self, content: &Content) -> Option<String> {
        for (name, _) in CHAINS.iter().chain(&[(USER_HOOK, "")]) {
            if !self.chains.contains_key(*name) {
                return Some(format!("chain {name} is missing"));
            }
        }
        for (chain, rules) in &content.rules {
            let found = self.chains[*chain];
            if found != rules.len() {
                return Some(format!("chain {chain} has {found} rules instead of {}", rules.len()));
            }
        }
        for ((_, name, _), (_, elements)) in SETS.iter().zip(&content.elements) {
            let Some(found) = self.sets.get(*name) else {
                return Some(format!("set {name} is missing"));
            };
            let expected: BTreeSet<String> = elements.iter().map(|e| e.text()).collect();
            if let Some(extra) = found.difference(&expected).next() {
                return Some(format!("set {name} holds {extra} which berth did not put there"));
            }
            if let Some(missing) = expected.difference(found).next() {
                return Some(format!("set {name} lacks {missing}"));
            }
        }
        None
    }
}

fn name_of(object: &Value, field: &str) -> Result<String, FirewallError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| FirewallError::Listing(format!("an object without {field:?}: {object}")))
}

/// A set's key or value type: `"ifname"`, `["ipv4_addr", "inet_proto", ...]` or
/// `"ipv4_addr . inet_service"`.
fn types(declared: Option<&Value>) -> Vec<String> {
    match declared {
        Some(Value::String(text)) => text.split(" . ").map(str::to_owned).collect(),
        Some(Value::Array(list)) => list.iter().map(|t| t.as_str().unwrap_or_default().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// One listed element in script syntax: a map element is listed as `[key, value]`.
fn element(listed: &Value, key_types: &[String], value_types: &[String]) -> String {
    match listed {
        Value::Array(pair) if pair.len() == 2 => {
            format!("{} : {}", expression(&pair[0], key_types), expression(&pair[1], value_types))
        }
        other => expression(other, key_types),
    }
}

fn expression(listed: &Value, types: &[String]) -> String {
    if let Some(inner) = listed.get("elem").and_then(|e| e.get("val")) {
        return expression(inner, types);
    }
    if let Some(parts) = listed.get("concat").and_then(Value::as_array) {
        let text: Vec<String> =
            parts.iter().enumerate().map(|(i, part)| scalar(part, types.get(i).map_or("", String::as_str))).collect();
        return text.join(" . ");
    }
    scalar(listed, types.first().map_or("", String::as_str))
}

fn scalar(listed: &Value, kind: &str) -> String {
    if let Some(prefix) = listed.get("prefix") {
        let len = prefix.get("len").map(Value::to_string).unwrap_or_default();
        return format!("{}/{len}", scalar(prefix.get("addr").unwrap_or(&Value::Null), kind));
    }
    if let Some([start, end]) = listed.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        return format!("{}-{}", scalar(start, kind), scalar(end, kind));
    }
    match listed {
        Value::String(text) if kind == "ifname" => format!("\"{text}\""),
        Value::String(text) => text.parse::<IpAddr>().map_or_else(|_| text.clone(), |ip| ip.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::render::Content;
    use crate::{Dnat, NetworkPolicy, Ruleset};
    use berth_types::{PortProtocol, PortRange};

    fn ruleset() -> Ruleset {
        Ruleset {
            networks: vec![NetworkPolicy {
                name: "web".into(),
                bridge: "br0".into(),
                subnets: vec!["172.17.0.0/16".parse().unwrap()],
                internal: false,
                unmasqueraded: vec![],
            }],
            dnats: vec![
                Dnat {
                    protocol: PortProtocol::Tcp,
                    host_ip: None,
                    host_ports: PortRange::single(8080),
                    target: "172.17.0.2".parse().unwrap(),
                    target_ports: PortRange::single(80),
                },
                Dnat {
                    protocol: PortProtocol::Udp,
                    host_ip: Some("2001:db8:0::1".parse().unwrap()),
                    host_ports: PortRange { start: 20000, end: 20999 },
                    target: "fd00::2".parse().unwrap(),
                    target_ports: PortRange { start: 20000, end: 20999 },
                },
            ],
            loopback_dnat: false,
            routed_ports: vec![],
        }
    }

    /// A listing in the shape nft 1.0.6 prints for `ruleset()`, handles included.
    fn listing(extra_postrouting_rule: bool, dnat_port4: &str) -> String {
        let mut objects = vec![serde_json::json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}})];
        objects.push(serde_json::json!({"table": {"family": "inet", "name": "berth", "handle": 1}}));
        let sets = [
            ("set", "bridges", serde_json::json!("ifname"), None, serde_json::json!(["br0"])),
            ("set", "internal_bridges", serde_json::json!("ifname"), None, serde_json::json!([])),
            (
                "set",
                "bridge_pairs",
                serde_json::json!(["ifname", "ifname"]),
                None,
                serde_json::json!([{"concat": ["br0", "br0"]}]),
            ),
            (
                "map",
                "dnat_port4",
                serde_json::json!(["ipv4_addr", "inet_proto", "inet_service"]),
                Some("ipv4_addr . inet_service"),
                serde_json::json!([[{"concat": [{"prefix": {"addr": "0.0.0.0", "len": 0}}, "tcp", 8080]}, {"concat": [dnat_port4, 80]}]]),
            ),
            (
                "map",
                "dnat_addr4",
                serde_json::json!(["ipv4_addr", "inet_proto", "inet_service"]),
                Some("ipv4_addr"),
                serde_json::json!([]),
            ),
            (
                "map",
                "dnat_port6",
                serde_json::json!(["ipv6_addr", "inet_proto", "inet_service"]),
                Some("ipv6_addr . inet_service"),
                serde_json::json!([]),
            ),
            (
                "map",
                "dnat_addr6",
                serde_json::json!(["ipv6_addr", "inet_proto", "inet_service"]),
                Some("ipv6_addr"),
                serde_json::json!([[{"concat": ["2001:db8::1", "udp", {"range": [20000, 20999]}]}, "fd00::2"]]),
            ),
            (
                "set",
                "routed_ports4",
                serde_json::json!(["ipv4_addr", "inet_proto", "inet_service"]),
                None,
                serde_json::json!([]),
            ),
            (
                "set",
                "routed_ports6",
                serde_json::json!(["ipv6_addr", "inet_proto", "inet_service"]),
                None,
                serde_json::json!([]),
            ),
        ];
        for (keyword, name, key_type, value_type, elements) in sets {
            let mut set =
                serde_json::json!({"family": "inet", "name": name, "table": "berth", "type": key_type, "handle": 9});
            if let Some(value_type) = value_type {
                set["map"] = value_type.into();
            }
            if !elements.as_array().unwrap().is_empty() {
                set["elem"] = elements;
            }
            objects.push(serde_json::json!({ keyword: set }));
        }
        let content = Content::of(&ruleset()).unwrap();
        for (chain, rules) in &content.rules {
            objects
                .push(serde_json::json!({"chain": {"family": "inet", "table": "berth", "name": chain, "handle": 2}}));
            let count = rules.len() + usize::from(extra_postrouting_rule && *chain == "postrouting");
            for handle in 0..count {
                objects.push(serde_json::json!({"rule": {"family": "inet", "table": "berth", "chain": chain, "handle": handle, "expr": []}}));
            }
        }
        objects
            .push(serde_json::json!({"chain": {"family": "inet", "table": "berth", "name": "user-hook", "handle": 3}}));
        objects.push(serde_json::json!({"rule": {"family": "inet", "table": "berth", "chain": "user-hook", "handle": 99, "expr": []}}));
        serde_json::json!({ "nftables": objects }).to_string()
    }

    #[test]
    fn a_listing_of_exactly_the_ruleset_matches_whatever_the_user_hook_holds() {
        let observed = Observed::parse(&listing(false, "172.17.0.2")).unwrap();
        assert_eq!(observed.difference(&Content::of(&ruleset()).unwrap()), None);
    }

    #[test]
    fn an_extra_rule_or_a_changed_element_is_a_difference() {
        let content = Content::of(&ruleset()).unwrap();
        let observed = Observed::parse(&listing(true, "172.17.0.2")).unwrap();
        assert_eq!(observed.difference(&content).unwrap(), "chain postrouting has 3 rules instead of 2");
        // Loopback DNAT drops the output chain's loopback return and adds a masquerade.
        let observed = Observed::parse(&listing(false, "172.17.0.2")).unwrap();
        let loopback = Content::of(&Ruleset { loopback_dnat: true, ..ruleset() }).unwrap();
        assert_eq!(observed.difference(&loopback).unwrap(), "chain output has 2 rules instead of 1");
        let observed = Observed::parse(&listing(false, "172.17.0.9")).unwrap();
        assert_eq!(
            observed.difference(&content).unwrap(),
            "set dnat_port4 holds 0.0.0.0/0 . tcp . 8080 : 172.17.0.9 . 80 which berth did not put there"
        );
        let mut more = ruleset();
        more.networks[0].bridge = "br1".into();
        let observed = Observed::parse(&listing(false, "172.17.0.2")).unwrap();
        assert!(observed.difference(&Content::of(&more).unwrap()).unwrap().starts_with("set bridges holds \"br0\""));
    }

    #[test]
    fn an_empty_or_foreign_listing_is_a_difference_and_garbage_an_error() {
        let content = Content::of(&ruleset()).unwrap();
        let observed = Observed::parse(r#"{"nftables": [{"metainfo": {}}]}"#).unwrap();
        assert_eq!(observed.difference(&content).unwrap(), "chain prerouting is missing");
        assert!(Observed::parse("not json").unwrap_err().to_string().starts_with("cannot read the listing"));
    }
}
