//! Docker's bridge driver options (`-o com.docker.network.*`), each proven in the kernel and
//! with real traffic: `enable_icc=false` keeps a network's sandboxes apart, `driver.mtu` sets
//! the bridge and both veth ends, `enable_ip_masquerade=false` and `gateway_mode_ipv4=routed`
//! let traffic out with the sandbox's own address (and routed opens the published container
//! ports, and only those, to the LAN), `host_binding_ipv4` is where `-p` binds by default,
//! `inhibit_ipv4` leaves the bridge without an IPv4 address. An option berth does not
//! implement is refused with 400, never stored; `Attachable` is kept and shown.

use berth_integration::{privileged, py, LanPeer, TestHost, HOST_LAN_IP, PEER_LAN_IP};
use serde_json::{json, Value};

/// A TCP client in the LAN peer, one attempt: the answer or "FAILED: ...".
fn peer_probe(peer: &LanPeer, addr: &str, port: u16) -> String {
    peer.python_ok(&py::tcp_probe(addr, port, "probe", 2.0))
}

fn bridge_of(host: &TestHost, network: &str) -> String {
    host.berth_json(&["network", "inspect", network])[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!("br-{}", &host.berth_json(&["network", "inspect", network])[0]["Id"].as_str().unwrap()[..12])
        })
}

#[test]
fn icc_false_keeps_a_networks_sandboxes_apart_but_not_from_the_outside() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.150.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "apart",
    ]);
    host.berth_ok(&["network", "create", "--subnet", "10.151.0.0/24", "together"]);
    for network in ["apart", "together"] {
        host.serve(&format!("server-{network}"), network, &[], &py::tcp_echo_server("0.0.0.0", 7300));
        host.berth_ok(&[
            "run",
            "-d",
            "--name",
            &format!("client-{network}"),
            "--network",
            network,
            "--",
            "sleep",
            "600",
        ]);
    }
    // Same network: reachable with the default, not with enable_icc=false.
    let together = host.ip_of("server-together", "together");
    assert_eq!(host.python_in("client-together", &py::tcp_client(&together, 7300, "icc")), "echo:icc");
    let apart = host.ip_of("server-apart", "apart");
    let probe = host.python_in("client-apart", &py::tcp_probe(&apart, 7300, "icc", 2.0));
    assert!(probe.starts_with("FAILED"), "a sandbox reached another on an enable_icc=false network: {probe}");
    // The host ends of its veths are isolated bridge ports.
    let ports = host.sh_ok(&format!("bridge -d link show master {}", bridge_of(&host, "apart")));
    assert_eq!(ports.matches("isolated on").count(), 2, "{ports}");
    // The gateway, and the LAN through a published port, still reach them.
    let _gateway_server = host.spawn("python3", &["-c", &py::tcp_echo_server("10.150.0.1", 7301)]);
    assert_eq!(host.python_in("client-apart", &py::tcp_client("10.150.0.1", 7301, "gw")), "echo:gw");
    host.serve("published", "apart", &["8300:7300"], &py::addr_echo_server("0.0.0.0", &[7300]));
    assert_eq!(peer.python_ok(&py::tcp_client(HOST_LAN_IP, 8300, "lan")), format!("{PEER_LAN_IP}|lan"));
}

#[test]
fn mtu_reaches_the_bridge_and_both_ends_of_every_veth() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.152.0.0/24",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "small",
    ]);
    host.serve("server", "small", &[], &py::tcp_echo_server("0.0.0.0", 7302));
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "small", "--", "sleep", "600"]);
    let mtu_in = |text: &str| -> String {
        let links: Value = serde_json::from_str(text).expect("ip -j output");
        links[0]["mtu"].to_string()
    };
    let mtu_of = |link: &str| mtu_in(&host.sh_ok(&format!("ip -j link show dev {link}")));
    assert_eq!(mtu_of(&bridge_of(&host, "small")), "1400");
    let veths: Vec<String> = host.links().into_iter().filter(|l| l.starts_with("bth")).collect();
    assert_eq!(veths.len(), 2, "{veths:?}");
    for veth in &veths {
        assert_eq!(mtu_of(veth), "1400", "{veth}");
    }
    let inside = mtu_in(&String::from_utf8_lossy(&host.exec("client", "ip -j link show dev eth0").stdout));
    assert_eq!(inside, "1400");
    let server = host.ip_of("server", "small");
    assert_eq!(host.python_in("client", &py::tcp_client(&server, 7302, "mtu")), "echo:mtu");
    // IPv6 needs at least 1280.
    let err = host.berth_err(&["network", "create", "--ipv6", "-o", "com.docker.network.driver.mtu=1000", "tiny"]);
    assert!(err.contains("too small for IPv6"), "{err}");
}

#[test]
fn without_masquerade_or_routed_sandboxes_reach_the_lan_with_their_own_address() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.153.0.0/24", "nat"]);
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.154.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "plain",
    ]);
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.155.0.0/24",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=routed",
        "routed",
    ]);
    // The LAN routes the unmasqueraded subnets to the host, as a routed setup must.
    peer.sh_ok("ip route add 10.154.0.0/24 via 192.0.2.1 && ip route add 10.155.0.0/24 via 192.0.2.1 && ip route add 10.153.0.0/24 via 192.0.2.1");
    let _lan_server = peer.spawn_python(&py::addr_echo_server("0.0.0.0", &[9300]));
    for network in ["nat", "plain", "routed"] {
        host.berth_ok(&["run", "-d", "--name", &format!("out-{network}"), "--network", network, "--", "sleep", "600"]);
    }
    let seen = |network: &str| host.python_in(&format!("out-{network}"), &py::tcp_client(PEER_LAN_IP, 9300, "out"));
    assert_eq!(seen("nat"), format!("{HOST_LAN_IP}|out"), "the default masquerades");
    assert_eq!(seen("plain"), format!("{}|out", host.ip_of("out-plain", "plain")));
    assert_eq!(seen("routed"), format!("{}|out", host.ip_of("out-routed", "routed")));

    // Routed: the published container port answers at the sandbox's own address, with the
    // client's address; an unpublished one does not; a NAT network's sandbox is not reachable
    // that way at all.
    host.serve("web-routed", "routed", &["8301:80"], &py::addr_echo_server("0.0.0.0", &[80, 81]));
    host.serve("web-nat", "nat", &["8302:80"], &py::addr_echo_server("0.0.0.0", &[80]));
    let routed_ip = host.ip_of("web-routed", "routed");
    assert_eq!(peer.python_ok(&py::tcp_client(&routed_ip, 80, "direct")), format!("{PEER_LAN_IP}|direct"));
    assert!(
        peer_probe(&peer, &routed_ip, 81).starts_with("FAILED"),
        "an unpublished port of a routed network answered"
    );
    assert!(
        peer_probe(&peer, &host.ip_of("web-nat", "nat"), 80).starts_with("FAILED"),
        "a NAT network's sandbox answered directly"
    );
    // DNAT through the host still works for both.
    assert_eq!(peer.python_ok(&py::tcp_client(HOST_LAN_IP, 8301, "dnat")), format!("{PEER_LAN_IP}|dnat"));
    assert_eq!(peer.python_ok(&py::tcp_client(HOST_LAN_IP, 8302, "dnat")), format!("{PEER_LAN_IP}|dnat"));
    // Unpublishing closes the direct path too.
    host.berth_ok(&["port", "rm", "web-routed", "8301:80"]);
    assert!(peer_probe(&peer, &routed_ip, 80).starts_with("FAILED"), "an unpublished routed port still answers");
    host.berth_ok(&["port", "add", "web-routed", "8301:80"]);
    assert_eq!(peer.python_ok(&py::tcp_client(&routed_ip, 80, "again")), format!("{PEER_LAN_IP}|again"));
    // Two mappings of one container port: the direct path stays until the last one goes.
    host.berth_ok(&["port", "add", "web-routed", "8303:80"]);
    host.berth_ok(&["port", "rm", "web-routed", "8301:80"]);
    assert_eq!(peer.python_ok(&py::tcp_client(&routed_ip, 80, "shared")), format!("{PEER_LAN_IP}|shared"));
    host.berth_ok(&["port", "rm", "web-routed", "8303:80"]);
    assert!(peer_probe(&peer, &routed_ip, 80).starts_with("FAILED"), "the last mapping's removal left it open");
    host.berth_ok(&["port", "add", "web-routed", "8301:80"]);
    host.berth_ok(&["rm", "-f", "web-routed"]);
    let table = host.sh_ok("nft list set inet berth routed_ports4");
    assert!(!table.contains(&routed_ip), "a removed sandbox's routed port is left: {table}");
}

#[test]
fn host_binding_ipv4_is_where_ports_bind_by_default() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.sh_ok("ip addr add 192.0.2.10/24 dev lan0");
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.156.0.0/24",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=192.0.2.10",
        "bound",
    ]);
    host.serve("web", "bound", &["8303:80"], &py::addr_echo_server("0.0.0.0", &[80]));
    let ports = &host.inspect("web")["NetworkSettings"]["Ports"];
    assert_eq!(ports["80/tcp"], json!([{"HostIp": "192.0.2.10", "HostPort": "8303"}]), "{ports}");
    assert_eq!(peer.python_ok(&py::tcp_client("192.0.2.10", 8303, "bound")), format!("{PEER_LAN_IP}|bound"));
    assert!(peer_probe(&peer, HOST_LAN_IP, 8303).starts_with("FAILED"), "the port answered on another host address");
    // A spec with its own host address keeps it.
    host.berth_ok(&["port", "add", "web", "192.0.2.1:8304:80"]);
    assert_eq!(peer.python_ok(&py::tcp_client(HOST_LAN_IP, 8304, "own")), format!("{PEER_LAN_IP}|own"));
}

#[test]
fn inhibit_ipv4_leaves_the_bridge_without_an_ipv4_address() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.157.0.0/24",
        "-o",
        "com.docker.network.bridge.inhibit_ipv4=true",
        "inhibited",
    ]);
    let bridge = bridge_of(&host, "inhibited");
    assert_eq!(host.sh_ok(&format!("ip -4 -o addr show dev {bridge}")).trim(), "", "the bridge has an IPv4 address");
    host.serve("server", "inhibited", &[], &py::tcp_echo_server("0.0.0.0", 7304));
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "inhibited", "--", "sleep", "600"]);
    let server = host.ip_of("server", "inhibited");
    assert_eq!(host.python_in("client", &py::tcp_client(&server, 7304, "l2")), "echo:l2");
    // It survives a restart's reconcile the same way.
    let mut host = host;
    host.stop_daemon();
    host.start_daemon(&[]);
    assert_eq!(host.sh_ok(&format!("ip -4 -o addr show dev {bridge}")).trim(), "");
}

#[test]
fn options_berth_does_not_implement_are_refused_and_attachable_is_kept() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.158.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--", "sleep", "600"]);
    let before = (host.berth_json(&["network", "ls"]), host.links());
    let cases: Vec<(&str, (u16, Value), &str)> = vec![
        ("unknown option", host.api("POST", "/v1/networks", Some(&json!({"Name": "x", "Options": {"com.docker.network.bridge.enable_icc2": "1"}}))), "com.docker.network.bridge.enable_icc2 is not supported"),
        ("docker unknown option", host.api("POST", "/v1.47/networks/create", Some(&json!({"Name": "x", "Options": {"foo": "bar"}}))), "network option foo is not supported"),
        ("bad boolean", host.api("POST", "/v1/networks", Some(&json!({"Name": "x", "Options": {"com.docker.network.bridge.enable_icc": "maybe"}}))), "invalid value \"maybe\""),
        ("bad mtu", host.api("POST", "/v1/networks", Some(&json!({"Name": "x", "Options": {"com.docker.network.driver.mtu": "20"}}))), "an MTU from 68"),
        ("unsupported gateway mode", host.api("POST", "/v1/networks", Some(&json!({"Name": "x", "Options": {"com.docker.network.bridge.gateway_mode_ipv4": "nat-unprotected"}}))), "nat or routed"),
        ("IPAM options", host.api("POST", "/v1.47/networks/create", Some(&json!({"Name": "x", "IPAM": {"Options": {"foo": "bar"}}}))), "IPAM option foo is not supported"),
        ("endpoint driver options", host.api("POST", "/v1.47/networks/n1/connect", Some(&json!({"Container": "s", "EndpointConfig": {"DriverOpts": {"foo": "bar"}}}))), "endpoint driver option foo is not supported"),
    ];
    for (what, (status, body), expected) in cases {
        assert_eq!(status, 400, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{what}: {message:?}");
    }
    assert_eq!((host.berth_json(&["network", "ls"]), host.links()), before, "a refused option changed something");
    let err = host.berth_err(&["network", "create", "-o", "com.docker.network.bridge.foo=1", "x"]);
    assert!(err.contains("network option com.docker.network.bridge.foo is not supported"), "{err}");

    // Attachable is kept and shown, in both views.
    let (status, body) = host.api("POST", "/v1.47/networks/create", Some(&json!({"Name": "att", "Attachable": true})));
    assert_eq!(status, 201, "{body}");
    assert_eq!(host.api("GET", "/v1.47/networks/att", None).1["Attachable"], true);
    assert_eq!(host.berth_json(&["network", "inspect", "att"])[0]["Attachable"], true);
    host.berth_ok(&["network", "create", "--attachable", "att2"]);
    assert_eq!(host.api("GET", "/v1.47/networks/att2", None).1["Attachable"], true);
    assert_eq!(host.api("GET", "/v1.47/networks/n1", None).1["Attachable"], false);
}
