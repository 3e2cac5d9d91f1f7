//! Published ports: the `-p [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/PROTO]` syntax, the mapping
//! record berthd keeps per sandbox, and Docker's `NetworkSettings.Ports` shape.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        })
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self { start: port, end: port }
    }

    /// How many ports the range holds (at least one).
    pub fn count(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `-p` request as the user wrote it, parsed. `host_ports` None means "pick free ports".
/// The API carries it as the text the user wrote ([`PortSpec::parse`] reads it, `Display`
/// writes it back), so a bad spec is refused where the request is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortSpec {
    pub host_ip: Option<IpAddr>,
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub protocol: PortProtocol,
}

fn parse_port(text: &str, spec: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port {text:?} in {spec:?}: ports are 1-65535")),
    }
}

fn parse_range(text: &str, spec: &str) -> Result<PortRange, String> {
    let range = match text.split_once('-') {
        Some((a, b)) => PortRange { start: parse_port(a, spec)?, end: parse_port(b, spec)? },
        None => PortRange::single(parse_port(text, spec)?),
    };
    if range.start > range.end {
        return Err(format!("invalid port range {text:?} in {spec:?}: start is after end"));
    }
    Ok(range)
}

impl PortSpec {
    /// Parses `[HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp|/sctp]`; an IPv6 HOSTIP is
    /// written in brackets (`[::1]:8080:80`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (body, protocol) = match spec.rsplit_once('/') {
            Some((body, "tcp")) => (body, PortProtocol::Tcp),
            Some((body, "udp")) => (body, PortProtocol::Udp),
            Some((body, "sctp")) => (body, PortProtocol::Sctp),
            Some((_, other)) => return Err(format!("invalid protocol {other:?} in {spec:?}: use tcp, udp or sctp")),
            None => (spec, PortProtocol::Tcp),
        };
        let (host_ip, rest) = if let Some(after) = body.strip_prefix('[') {
            let (ip, rest) = after.split_once("]:").ok_or_else(|| {
                format!("invalid port spec {spec:?}: an IPv6 host address is written [ADDR]:PORT:PORT")
            })?;
            let ip: IpAddr = ip.parse().map_err(|_| format!("invalid host address {ip:?} in {spec:?}"))?;
            (Some(ip), rest)
        } else {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.len() {
                1 | 2 => (None, body),
                3 => {
                    let ip = if parts[0].is_empty() {
                        None
                    } else {
                        Some(parts[0].parse().map_err(|_| format!("invalid host address {:?} in {spec:?}", parts[0]))?)
                    };
                    (ip, &body[parts[0].len() + 1..])
                }
                _ => return Err(format!("invalid port spec {spec:?}: write IPv6 host addresses in brackets")),
            }
        };
        let (host_ports, container_ports) = match rest.split_once(':') {
            Some(("", container)) => (None, parse_range(container, spec)?),
            Some((host, container)) => (Some(parse_range(host, spec)?), parse_range(container, spec)?),
            None => (None, parse_range(rest, spec)?),
        };
        if let Some(host) = host_ports {
            if host.count() != container_ports.count() && container_ports.count() != 1 {
                return Err(format!(
                    "invalid port spec {spec:?}: host range {host} and container range {container_ports} differ in size"
                ));
            }
        }
        Ok(Self { host_ip, host_ports, container_ports, protocol })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            None => {}
        }
        match self.host_ports {
            Some(ports) => write!(f, "{ports}:")?,
            None if self.host_ip.is_some() => write!(f, ":")?,
            None => {}
        }
        write!(f, "{}/{}", self.container_ports, self.protocol)
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl TryFrom<String> for PortSpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<PortSpec> for String {
    fn from(spec: PortSpec) -> Self {
        spec.to_string()
    }
}

/// A published port range as berthd keeps it: host ports are always concrete here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: PortProtocol,
    /// None: every address of both families.
    pub host_ip: Option<IpAddr>,
    pub host_ports: PortRange,
    /// Same length as `host_ports`, or a single port every host port maps to.
    pub container_ports: PortRange,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host_ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            None => "0.0.0.0".into(),
        };
        write!(f, "{}/{} -> {host}:{}", self.container_ports, self.protocol, self.host_ports)
    }
}

/// One host binding in Docker's `NetworkSettings.Ports` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// Docker's `NetworkSettings.Ports`: "80/tcp" → bindings, one key per container port.
pub type PortMap = BTreeMap<String, Vec<PortBinding>>;

/// Expands mappings into Docker's per-port shape; a mapping on every address shows as
/// `0.0.0.0` and `::` like Docker.
pub fn port_map(mappings: &[PortMapping]) -> PortMap {
    let mut map = PortMap::new();
    for m in mappings {
        for offset in 0..m.host_ports.count() {
            let container = if m.container_ports.count() == 1 {
                m.container_ports.start
            } else {
                m.container_ports.start + offset as u16
            };
            let host_port = (m.host_ports.start + offset as u16).to_string();
            let ips = match m.host_ip {
                Some(ip) => vec![ip.to_string()],
                None => vec!["0.0.0.0".to_owned(), "::".to_owned()],
            };
            let entry = map.entry(format!("{container}/{}", m.protocol)).or_default();
            entry.extend(ips.into_iter().map(|host_ip| PortBinding { host_ip, host_port: host_port.clone() }));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap()
    }

    #[test]
    fn specs_print_as_they_parse() {
        for text in
            ["80/tcp", "8080:80/udp", "127.0.0.1::443/tcp", "[::1]:9090-9091:90-91/sctp", "10.0.0.1:7000:70/tcp"]
        {
            assert_eq!(spec(text).to_string(), text);
        }
        assert_eq!(spec("8080:80").to_string(), "8080:80/tcp", "the protocol is written out");
        let json = serde_json::to_string(&spec("[::1]:53:53/udp")).unwrap();
        assert_eq!(json, r#""[::1]:53:53/udp""#);
        assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), spec("[::1]:53:53/udp"));
        let bad = serde_json::from_str::<PortSpec>(r#""80/icmp""#).unwrap_err().to_string();
        assert!(bad.contains("invalid protocol \"icmp\""), "{bad}");
    }

    #[test]
    fn specs_parse_like_docker() {
        assert_eq!(
            spec("80"),
            PortSpec {
                host_ip: None,
                host_ports: None,
                container_ports: PortRange::single(80),
                protocol: PortProtocol::Tcp
            }
        );
        assert_eq!(spec("8080:80").host_ports, Some(PortRange::single(8080)));
        assert_eq!(spec("8080:80/udp").protocol, PortProtocol::Udp);
        let s = spec("127.0.0.1:8080:80");
        assert_eq!(s.host_ip, Some("127.0.0.1".parse().unwrap()));
        let s = spec("[::1]:8080:80/sctp");
        assert_eq!(s.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(s.protocol, PortProtocol::Sctp);
        let s = spec("20000-20999:20000-20999");
        assert_eq!(s.host_ports, Some(PortRange { start: 20000, end: 20999 }));
        assert_eq!(s.container_ports.count(), 1000);
        assert_eq!(spec("127.0.0.1::80").host_ports, None);
        assert_eq!(spec("8000-8009:80").container_ports, PortRange::single(80));
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in
            ["", "0", "70000", "80/icmp", "a:80", "1.2.3.4:x:80", "90-80", "8000-8010:80-81", "::1:80:80", "[::1:80:80"]
        {
            assert!(PortSpec::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn port_map_is_dockers_shape() {
        let map = port_map(&[PortMapping {
            protocol: PortProtocol::Tcp,
            host_ip: None,
            host_ports: PortRange { start: 8080, end: 8081 },
            container_ports: PortRange { start: 80, end: 81 },
        }]);
        assert_eq!(
            map["80/tcp"],
            vec![
                PortBinding { host_ip: "0.0.0.0".into(), host_port: "8080".into() },
                PortBinding { host_ip: "::".into(), host_port: "8080".into() },
            ]
        );
        assert_eq!(map["81/tcp"][0].host_port, "8081");
    }
}
