//! A bridge network's driver options: Docker's `com.docker.network.bridge.*` and
//! `com.docker.network.driver.mtu` keys, given with `-o`. They are parsed and checked when a
//! network is created, so a key berth does not implement, or a value it cannot use, is refused
//! there rather than stored and ignored; the record keeps the text and every user reads it back
//! through [`BridgeOptions`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::OPTION_BRIDGE_NAME;

/// `false` keeps the sandboxes of a network from talking to each other (inter-container
/// communication); they still reach the gateway and the outside.
pub const OPTION_ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";
/// `false`: no masquerade for the network's traffic leaving the host.
pub const OPTION_ENABLE_IP_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// MTU of the bridge and both ends of every endpoint's veth pair.
pub const OPTION_MTU: &str = "com.docker.network.driver.mtu";
/// The host address `-p` binds to on this network when the spec names none.
pub const OPTION_HOST_BINDING_IPV4: &str = "com.docker.network.bridge.host_binding_ipv4";
/// `nat` (the default) or `routed`, per family.
pub const OPTION_GATEWAY_MODE_IPV4: &str = "com.docker.network.bridge.gateway_mode_ipv4";
pub const OPTION_GATEWAY_MODE_IPV6: &str = "com.docker.network.bridge.gateway_mode_ipv6";
/// `true`: the bridge gets no IPv4 address (the gateway is elsewhere on the segment).
pub const OPTION_INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";

/// Every option key berth implements.
pub const BRIDGE_OPTION_KEYS: [&str; 8] = [
    OPTION_BRIDGE_NAME,
    OPTION_ENABLE_ICC,
    OPTION_ENABLE_IP_MASQUERADE,
    OPTION_MTU,
    OPTION_HOST_BINDING_IPV4,
    OPTION_GATEWAY_MODE_IPV4,
    OPTION_GATEWAY_MODE_IPV6,
    OPTION_INHIBIT_IPV4,
];

/// How a network's traffic of one family meets the outside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GatewayMode {
    /// Masqueraded on the way out; in only through published ports, by DNAT.
    #[default]
    Nat,
    /// Not masqueraded, so it needs routes to the subnet elsewhere; in, besides DNAT, straight
    /// to the sandboxes' published container ports (and nothing else).
    Routed,
}

/// A network's options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    pub enable_icc: bool,
    pub enable_ip_masquerade: bool,
    pub mtu: Option<u32>,
    pub host_binding: Option<IpAddr>,
    pub gateway_mode_ipv4: GatewayMode,
    pub gateway_mode_ipv6: GatewayMode,
    pub inhibit_ipv4: bool,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            enable_icc: true,
            enable_ip_masquerade: true,
            mtu: None,
            host_binding: None,
            gateway_mode_ipv4: GatewayMode::Nat,
            gateway_mode_ipv6: GatewayMode::Nat,
            inhibit_ipv4: false,
        }
    }
}

/// Smallest and largest MTU a network may have (IPv4's minimum; the largest a veth takes).
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;

impl BridgeOptions {
    /// Parses a network's options; an unknown key or a bad value is an error naming it.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        for (key, value) in options {
            let invalid = |expected: &str| format!("invalid value {value:?} for option {key}: {expected}");
            match key.as_str() {
                OPTION_BRIDGE_NAME => {}
                OPTION_ENABLE_ICC => parsed.enable_icc = parse_bool(value).ok_or_else(|| invalid("true or false"))?,
                OPTION_ENABLE_IP_MASQUERADE => {
                    parsed.enable_ip_masquerade = parse_bool(value).ok_or_else(|| invalid("true or false"))?
                }
                OPTION_INHIBIT_IPV4 => {
                    parsed.inhibit_ipv4 = parse_bool(value).ok_or_else(|| invalid("true or false"))?
                }
                OPTION_MTU => {
                    let mtu: u32 = value.parse().map_err(|_| invalid("a number"))?;
                    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                        return Err(invalid(&format!("an MTU from {MIN_MTU} to {MAX_MTU}")));
                    }
                    parsed.mtu = Some(mtu);
                }
                OPTION_HOST_BINDING_IPV4 => {
                    parsed.host_binding = Some(value.parse().map_err(|_| invalid("an IP address of this host"))?)
                }
                OPTION_GATEWAY_MODE_IPV4 => parsed.gateway_mode_ipv4 = parse_gateway_mode(value).map_err(invalid)?,
                OPTION_GATEWAY_MODE_IPV6 => parsed.gateway_mode_ipv6 = parse_gateway_mode(value).map_err(invalid)?,
                _ => {
                    return Err(format!(
                        "network option {key} is not supported by berth (supported: {})",
                        BRIDGE_OPTION_KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(parsed)
    }

    /// Whether the network's traffic of this family is masqueraded on its way out.
    pub fn masquerades(&self, v6: bool) -> bool {
        self.enable_ip_masquerade && self.gateway_mode(v6) == GatewayMode::Nat
    }

    pub fn gateway_mode(&self, v6: bool) -> GatewayMode {
        if v6 {
            self.gateway_mode_ipv6
        } else {
            self.gateway_mode_ipv4
        }
    }
}

/// Go's strconv.ParseBool, which Docker uses for these options.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_gateway_mode(text: &str) -> Result<GatewayMode, &'static str> {
    match text {
        "nat" => Ok(GatewayMode::Nat),
        "routed" => Ok(GatewayMode::Routed),
        _ => Err("nat or routed (nat-unprotected and isolated are not supported)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn known_options_parse_like_dockers() {
        let parsed = BridgeOptions::parse(&options(&[
            (OPTION_ENABLE_ICC, "false"),
            (OPTION_ENABLE_IP_MASQUERADE, "0"),
            (OPTION_MTU, "1400"),
            (OPTION_HOST_BINDING_IPV4, "192.0.2.1"),
            (OPTION_GATEWAY_MODE_IPV6, "routed"),
            (OPTION_INHIBIT_IPV4, "True"),
            (OPTION_BRIDGE_NAME, "br-x"),
        ]))
        .unwrap();
        assert!(!parsed.enable_icc && !parsed.enable_ip_masquerade && parsed.inhibit_ipv4);
        assert_eq!(parsed.mtu, Some(1400));
        assert_eq!(parsed.host_binding, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((parsed.gateway_mode(false), parsed.gateway_mode(true)), (GatewayMode::Nat, GatewayMode::Routed));
        assert!(!parsed.masquerades(false) && !parsed.masquerades(true));
        assert_eq!(BridgeOptions::parse(&BTreeMap::new()).unwrap(), BridgeOptions::default());
        let routed_v4 = BridgeOptions::parse(&options(&[(OPTION_GATEWAY_MODE_IPV4, "routed")])).unwrap();
        assert!(!routed_v4.masquerades(false) && routed_v4.masquerades(true));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_them() {
        let unknown = BridgeOptions::parse(&options(&[("com.docker.network.bridge.enable_icc2", "x")])).unwrap_err();
        assert!(
            unknown.starts_with("network option com.docker.network.bridge.enable_icc2 is not supported"),
            "{unknown}"
        );
        for (key, value) in [
            (OPTION_ENABLE_ICC, "nope"),
            (OPTION_MTU, "67"),
            (OPTION_MTU, "70000"),
            (OPTION_MTU, "x"),
            (OPTION_HOST_BINDING_IPV4, "host"),
            (OPTION_GATEWAY_MODE_IPV4, "isolated"),
        ] {
            let error = BridgeOptions::parse(&options(&[(key, value)])).unwrap_err();
            assert!(error.contains(key) && error.contains(value), "{error}");
        }
    }
}
