// The example ruleset the firewall's unit tests (src/nft/render.rs) and its kernel tests
// (tests/nftables.rs) share: two networks, one internal, and DNAT entries of every shape (v4 and
// v6, a range, a host address, many-to-one, SCTP). Both include this file into a module of their
// own (so it has no inner doc comment); the including module provides the names used here.

use super::{Dnat, NetworkPolicy, PortProtocol, PortRange, Ruleset};

pub fn dnat(protocol: PortProtocol, host_ip: Option<&str>, host: (u16, u16), target: &str, to: (u16, u16)) -> Dnat {
    Dnat {
        protocol,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_ports: PortRange { start: host.0, end: host.1 },
        target: target.parse().unwrap(),
        target_ports: PortRange { start: to.0, end: to.1 },
    }
}

pub fn example() -> Ruleset {
    Ruleset {
        networks: vec![
            NetworkPolicy {
                name: "web".into(),
                bridge: "br-web".into(),
                subnets: vec!["172.18.0.0/16".parse().unwrap(), "fd00:18::/64".parse().unwrap()],
                internal: false,
                unmasqueraded: vec![],
            },
            NetworkPolicy {
                name: "db".into(),
                bridge: "br-db".into(),
                subnets: vec!["172.19.0.0/16".parse().unwrap()],
                internal: true,
                unmasqueraded: vec![],
            },
        ],
        dnats: vec![
            dnat(PortProtocol::Tcp, None, (8080, 8080), "172.18.0.2", (80, 80)),
            dnat(PortProtocol::Udp, Some("192.0.2.1"), (20000, 20999), "172.18.0.3", (20000, 20999)),
            dnat(PortProtocol::Tcp, None, (9000, 9000), "fd00:18::2", (9000, 9000)),
            dnat(PortProtocol::Sctp, Some("2001:db8::1"), (7000, 7010), "fd00:18::3", (70, 70)),
        ],
        loopback_dnat: false,
        routed_ports: vec![],
    }
}
