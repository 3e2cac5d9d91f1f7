//! Published ports, proven with real traffic from a LAN peer namespace (192.0.2.2) to the test
//! host's address (192.0.2.1, 2001:db8::1): TCP and UDP, v4 and v6, the client's real source
//! address seen by the sandbox, from host processes, hairpin, host-address bindings, the
//! 127.0.0.1 guard against crafted packets from the LAN, conflicts, ranges as one map element,
//! `-P`, `berth port add/rm`, the `Ports` shape of inspect, and stale UDP conntrack entries.

use std::time::Duration;

use berth_integration::{
    nft, privileged, py, wait_for, LanPeer, TestHost, HOST_LAN_IP, HOST_LAN_IP6, PEER_LAN_IP, PEER_LAN_IP6,
};
use serde_json::json;

/// A TCP answer from the peer, retried for up to 5 s (the server may still be starting).
fn peer_tcp(peer: &LanPeer, addr: &str, port: u16, message: &str) -> String {
    peer.python_ok(&py::tcp_client(addr, port, message))
}

/// A UDP answer from the peer, retried for up to 6 s.
fn peer_udp(peer: &LanPeer, addr: &str, port: u16, message: &str) -> String {
    peer.python_ok(&py::udp_client(addr, port, message))
}

/// One TCP attempt from the peer: the answer or "FAILED: ...".
fn peer_tcp_probe(peer: &LanPeer, addr: &str, port: u16, timeout: f64) -> String {
    peer.python_ok(&py::tcp_probe(addr, port, "probe", timeout))
}

/// An error message of the CLI: one line, "Error: " and the message.
fn one_line_error(stderr: &str) -> String {
    let text = stderr.trim();
    assert_eq!(text.lines().count(), 1, "the error is not one line: {text:?}");
    text.to_owned()
}

#[test]
fn the_lan_peer_topology_is_as_testing_md_draws_it() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    // Both families work between host and peer, and each sees the other's address.
    let _echo = host.spawn("python3", &["-c", &py::addr_echo_server("::", &[5998])]);
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 5998, "v4"), format!("{PEER_LAN_IP}|v4"));
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP6, 5998, "v6"), format!("{PEER_LAN_IP6}|v6"));
    assert!(host.sh_ok("ip route show default").contains("via 192.0.2.2 dev lan0"));
    assert!(host.sh_ok("ip -6 route show default").contains("via 2001:db8::2 dev lan0"));
    // The peer knows its own subnets only: no default route, nothing towards container subnets.
    assert_eq!(peer.sh_ok("ip route show").trim(), "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2");
    assert!(peer.sh_ok("ip route get 172.17.0.2 2>&1 || true").contains("unreachable"));
    // Crafted datagrams (used by the 127.0.0.1 test) arrive when addressed to the host.
    let log = host.dir().join("host-udp.log");
    let _listener = host.spawn("python3", &["-c", &py::udp_log_server(&[5999], log.to_str().unwrap())]);
    let control = py::raw_udp(PEER_LAN_IP, HOST_LAN_IP, 5999, HOST_LAN_IP, "crafted", 1);
    let arrived = wait_for(Duration::from_secs(5), || {
        peer.python_ok(&control);
        std::fs::read_to_string(&log).unwrap_or_default().contains("crafted").then_some(())
    });
    assert!(arrived.is_some(), "a crafted datagram to {HOST_LAN_IP}:5999 did not arrive");
    // The peer dies with its guard.
    let netns = peer.netns();
    drop(peer);
    assert!(
        wait_for(Duration::from_secs(2), || (!host.sh_ok("ip -o link show").contains("lan0")).then_some(())).is_some()
    );
    assert!(!host.sh(&format!("test -e {netns}")).status.success());
}

#[test]
fn lan_peer_reaches_a_published_port_over_ipv4_tcp_and_udp() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.60.0.0/24", "n4"]);
    host.serve("web", "n4", &["8080:80", "8080:80/udp"], &py::addr_echo_server("0.0.0.0", &[80]));
    // The sandbox sees the peer's own address: DNAT only, no masquerade on the way in.
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "tcp4"), format!("{PEER_LAN_IP}|tcp4"));
    assert_eq!(peer_udp(&peer, HOST_LAN_IP, 8080, "udp4"), format!("{PEER_LAN_IP}|udp4"));
    // A process of the host itself reaches the published port on the host's own address.
    let from_host = host.command("python3").args(["-c", &py::tcp_client(HOST_LAN_IP, 8080, "local")]).output().unwrap();
    assert!(
        from_host.status.success(),
        "host process → {HOST_LAN_IP}:8080: {}",
        String::from_utf8_lossy(&from_host.stderr)
    );
    let answer = String::from_utf8_lossy(&from_host.stdout).trim().to_owned();
    assert!(answer.ends_with("|local"), "host process → {HOST_LAN_IP}:8080 answered {answer:?}");
    // The container port itself is not what the peer reaches: nothing on 192.0.2.1:80.
    let direct = peer_tcp_probe(&peer, HOST_LAN_IP, 80, 1.0);
    assert!(direct.starts_with("FAILED"), "192.0.2.1:80 is not published but answered {direct:?}");
}

#[test]
fn lan_peer_reaches_a_published_port_over_ipv6_tcp_and_udp() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--ipv6", "--subnet", "fd00:77::/64", "--subnet", "10.77.0.0/24", "n6"]);
    host.serve("web6", "n6", &["8080:80", "8080:80/udp"], &py::addr_echo_server("::", &[80]));
    let v6 =
        host.inspect("web6")["NetworkSettings"]["Networks"]["n6"]["GlobalIPv6Address"].as_str().unwrap().to_owned();
    assert!(v6.starts_with("fd00:77::"), "{v6}");
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP6, 8080, "tcp6"), format!("{PEER_LAN_IP6}|tcp6"));
    assert_eq!(peer_udp(&peer, HOST_LAN_IP6, 8080, "udp6"), format!("{PEER_LAN_IP6}|udp6"));
    // Same mapping, other family: parity.
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "tcp4"), format!("{PEER_LAN_IP}|tcp4"));
    assert_eq!(peer_udp(&peer, HOST_LAN_IP, 8080, "udp4"), format!("{PEER_LAN_IP}|udp4"));
    let ports = &host.inspect("web6")["NetworkSettings"]["Ports"];
    assert_eq!(
        ports["80/tcp"],
        json!([{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]),
        "{ports}"
    );
}

#[test]
fn hairpin_reaches_the_published_port_through_the_host_address() {
    if !privileged() {
        return;
    }
    let (host, _peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.65.0.0/24", "n1"]);
    host.serve("web", "n1", &["8080:80"], &py::addr_echo_server("0.0.0.0", &[80]));
    host.berth_ok(&["run", "-d", "--name", "neighbour", "--network", "n1", "--", "sleep", "600"]);
    host.serve("dns", "n1", &["5353:53/udp"], &py::udp_echo_server("0.0.0.0", 53));
    // From another sandbox on the same bridge, TCP and UDP.
    let answer = host.python_in("neighbour", &py::tcp_client(HOST_LAN_IP, 8080, "neighbour"));
    assert!(answer.ends_with("|neighbour"), "neighbour → {HOST_LAN_IP}:8080 → web answered {answer:?}");
    assert_eq!(host.python_in("neighbour", &py::udp_client(HOST_LAN_IP, 5353, "u-nb")), "echo:u-nb");
    // From the sandbox itself, to its own published port via the host's address: the packet
    // leaves and re-enters through the same bridge port.
    let tcp = host.python_in("web", &py::tcp_probe(HOST_LAN_IP, 8080, "self", 2.0));
    let udp = host.python_in("dns", &py::udp_probe(HOST_LAN_IP, 5353, "u-self", 2.0));
    let hairpin = host.sh_ok("bridge -d link show | grep -Eo '^[0-9]+: [^:]+|hairpin [a-z]+'");
    assert!(
        tcp.ends_with("|self") && udp == "echo:u-self",
        "a sandbox → {HOST_LAN_IP}:PORT → itself: TCP answered {tcp:?}, UDP {udp:?}; bridge ports (`bridge -d link show`):\n{hairpin}"
    );
}

#[test]
fn a_mapping_bound_to_one_host_address_answers_only_there() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.sh_ok("ip addr add 192.0.2.10/24 dev lan0");
    host.berth_ok(&["network", "create", "--subnet", "10.66.0.0/24", "n1"]);
    host.serve("web", "n1", &["192.0.2.1:8080:80", "192.0.2.1:8080:80/udp"], &py::addr_echo_server("0.0.0.0", &[80]));
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "bound"), format!("{PEER_LAN_IP}|bound"));
    let other = peer_tcp_probe(&peer, "192.0.2.10", 8080, 1.5);
    assert!(other.starts_with("FAILED"), "a mapping on 192.0.2.1 answered on 192.0.2.10: {other:?}");
    assert_eq!(peer_udp(&peer, HOST_LAN_IP, 8080, "ubound"), format!("{PEER_LAN_IP}|ubound"));
    let other = peer.python_ok(&py::udp_probe("192.0.2.10", 8080, "other", 1.0));
    assert!(other.starts_with("FAILED"), "a UDP mapping on 192.0.2.1 answered on 192.0.2.10: {other:?}");
    assert_eq!(
        host.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"],
        json!([{"HostIp": "192.0.2.1", "HostPort": "8080"}])
    );
}

#[test]
fn a_port_published_on_127_0_0_1_is_not_reachable_from_the_lan() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.67.0.0/24", "n1"]);
    let log = host.dir().join("udp.log");
    let log_path = log.to_str().unwrap().to_owned();
    std::fs::write(&log, "").unwrap();
    // 5300 only on 127.0.0.1; 5301 on every address (the positive control).
    host.serve("dns", "n1", &["127.0.0.1:5300:53/udp", "5301:54/udp"], &py::udp_log_server(&[53, 54], &log_path));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let received = peer.assert_crafted_loopback_dropped(5300, 5301, read_log);
    // The control line shows the sandbox saw the peer's real address on its port 54.
    assert!(received.lines().any(|l| l.starts_with(&format!("54 {PEER_LAN_IP}:40999 control"))), "{received:?}");
    assert_eq!(
        host.inspect("dns")["NetworkSettings"]["Ports"]["53/udp"],
        json!([{"HostIp": "127.0.0.1", "HostPort": "5300"}])
    );
}

#[test]
fn conflicting_host_ports_are_refused_with_one_line_naming_the_holder() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.69.0.0/24", "n1"]);
    host.serve("first", "n1", &["8080:80"], &py::addr_echo_server("0.0.0.0", &[80]));
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "one"), format!("{PEER_LAN_IP}|one"));
    let table = nft::normalized(&host.berth_table());

    // The same host port for a second sandbox: refused, naming the sandbox that has it.
    let err = one_line_error(&host.berth_err(&[
        "run",
        "-d",
        "--name",
        "second",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "--",
        "sleep",
        "600",
    ]));
    assert!(err.contains("8080") && err.contains("first"), "the error should name port 8080 and sandbox first: {err}");
    assert!(!host.berth(&["inspect", "second"]).status.success(), "the refused sandbox was created anyway");
    // On a sandbox that exists: `port add` is refused the same way and changes nothing.
    host.berth_ok(&["run", "-d", "--name", "third", "--network", "n1", "--", "sleep", "600"]);
    let err = one_line_error(&host.berth_err(&["port", "add", "third", "8080:80"]));
    assert!(err.contains("8080") && err.contains("first"), "{err}");
    // A mix of a free and a taken port is refused as a whole.
    let err = one_line_error(&host.berth_err(&["port", "add", "third", "8081:80", "8080:81"]));
    assert!(err.contains("8080"), "{err}");
    assert_eq!(
        host.inspect("third")["NetworkSettings"]["Ports"]
            .as_object()
            .map_or(0, |p| p.values().filter(|v| !v.is_null()).count()),
        0
    );
    assert_eq!(nft::normalized(&host.berth_table()), table, "a refused publication changed the ruleset");

    // A host process listening on 0.0.0.0:9090 in the host namespace.
    let _listener = host.spawn("python3", &["-c", &py::tcp_echo_server("0.0.0.0", 9090)]);
    let bound =
        wait_for(Duration::from_secs(5), || host.sh_ok("ss -Hltn 'sport = :9090'").contains("9090").then_some(()));
    assert!(bound.is_some(), "the host listener did not start");
    let err = one_line_error(&host.berth_err(&[
        "run",
        "-d",
        "--name",
        "fourth",
        "--network",
        "n1",
        "-p",
        "9090:80",
        "--",
        "sleep",
        "600",
    ]));
    assert!(err.contains("9090"), "the error should name port 9090: {err}");
    eprintln!("host-process conflict message: {err}");
    let err = one_line_error(&host.berth_err(&["port", "add", "third", "9090:80"]));
    assert!(err.contains("9090"), "{err}");
    assert_eq!(nft::normalized(&host.berth_table()), table, "a refused publication changed the ruleset");
    // The host process still has its port, and the first mapping still works.
    let out = host.command("python3").args(["-c", &py::tcp_client("127.0.0.1", 9090, "mine")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "echo:mine");
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "two"), format!("{PEER_LAN_IP}|two"));
}

#[test]
fn a_port_range_is_one_map_element_and_forwards_every_port() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.70.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "idle", "--network", "n1", "--", "sleep", "600"]);
    let before = nft::element_counts(&host.berth_table());
    host.serve("ranged", "n1", &["20000-20999:20000-20999"], &py::addr_echo_server("0.0.0.0", &[20000, 20500, 20999]));
    for port in [20000, 20500, 20999] {
        assert_eq!(peer_tcp(&peer, HOST_LAN_IP, port, "r"), format!("{PEER_LAN_IP}|r"), "port {port} of the range");
    }
    let after = nft::element_counts(&host.berth_table());
    let grown: Vec<(String, usize)> = after
        .iter()
        .map(|(name, count)| (name.clone(), count.saturating_sub(*before.get(name).unwrap_or(&0))))
        .filter(|(_, delta)| *delta > 0)
        .collect();
    assert!(
        !grown.is_empty(),
        "publishing a range added no map or set element; maps before {before:?}, after {after:?}"
    );
    for (name, delta) in &grown {
        assert_eq!(*delta, 1, "{name} grew by {delta} elements for one range (before {before:?}, after {after:?})");
    }
    eprintln!("maps and sets that grew by one element for the range: {grown:?}");
    // A range's ports are also a range in Docker's shape.
    let ports = &host.inspect("ranged")["NetworkSettings"]["Ports"];
    assert_eq!(ports["20999/tcp"][0], json!({"HostIp": "0.0.0.0", "HostPort": "20999"}));
    assert_eq!(ports.as_object().unwrap().len(), 1000);
}

#[test]
fn a_range_published_at_another_offset_maps_port_by_port() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.71.0.0/24", "n1"]);
    // Servers on two of the ten container ports only: a host port reaching any other container
    // port than its own finds nothing there.
    host.serve("offset", "n1", &["8000-8009:9000-9009"], &py::addr_echo_server("0.0.0.0", &[9005, 9009]));
    for port in [8005, 8009] {
        assert_eq!(peer_tcp(&peer, HOST_LAN_IP, port, "o"), format!("{PEER_LAN_IP}|o"), "host port {port}");
    }
    let probe = peer_tcp_probe(&peer, HOST_LAN_IP, 8003, 1.0);
    assert!(probe.starts_with("FAILED"), "host port 8003 reached a server, but only 9005 and 9009 serve: {probe}");
    // From the host itself, through the userland proxy.
    let local = host.sh_ok(&format!("python3 -c \"{}\"", py::tcp_client("127.0.0.1", 8009, "l").replace('"', "\\\"")));
    assert!(local.trim().ends_with("|l"), "127.0.0.1:8009 through the proxy: {local}");
    let ports = &host.inspect("offset")["NetworkSettings"]["Ports"];
    assert_eq!(ports["9003/tcp"][0], json!({"HostIp": "0.0.0.0", "HostPort": "8003"}), "{ports}");
    assert_eq!(ports.as_object().unwrap().len(), 10, "{ports}");
}

#[test]
fn publish_all_picks_ports_from_the_ephemeral_range() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.71.0.0/24", "n1"]);
    let range = host.sh_ok("cat /proc/sys/net/ipv4/ip_local_port_range");
    let bounds: Vec<u16> = range.split_whitespace().map(|p| p.parse().unwrap()).collect();
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n1",
        "-P",
        "--expose",
        "80",
        "--",
        "python3",
        "-c",
        &py::addr_echo_server("0.0.0.0", &[80]),
    ]);
    let ports = &host.inspect("web")["NetworkSettings"]["Ports"];
    let bindings = ports["80/tcp"].as_array().unwrap_or_else(|| panic!("80/tcp is not published: {ports}"));
    let host_port: u16 = bindings[0]["HostPort"].as_str().unwrap().parse().unwrap();
    assert!(
        (bounds[0]..=bounds[1]).contains(&host_port),
        "host port {host_port} is outside the ephemeral range {range}"
    );
    assert!(bindings.iter().all(|b| b["HostPort"] == bindings[0]["HostPort"]), "{ports}");
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, host_port, "any"), format!("{PEER_LAN_IP}|any"));
    let listing = host.berth_ok(&["port", "web"]);
    assert!(listing.lines().any(|l| l == format!("80/tcp -> 0.0.0.0:{host_port}")), "{listing}");
    // A second one gets another port.
    host.berth_ok(&["run", "-d", "--name", "web2", "--network", "n1", "-P", "--expose", "80", "--", "sleep", "600"]);
    let second = host.inspect("web2")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"].as_str().unwrap().to_owned();
    assert_ne!(second, host_port.to_string());
}

#[test]
fn port_add_and_rm_on_a_running_sandbox() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.72.0.0/24", "n1"]);
    host.serve("web", "n1", &[], &py::addr_echo_server("0.0.0.0", &[80, 90]));
    assert_eq!(host.berth_ok(&["port", "web"]), "");
    assert!(peer_tcp_probe(&peer, HOST_LAN_IP, 8080, 1.0).starts_with("FAILED"));

    host.berth_ok(&["port", "add", "web", "8080:80"]);
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "added"), format!("{PEER_LAN_IP}|added"));
    assert_eq!(host.berth_ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n");
    assert_eq!(host.berth_ok(&["port", "web", "80/tcp"]), "0.0.0.0:8080\n[::]:8080\n");
    assert_eq!(
        host.inspect("web")["NetworkSettings"]["Ports"],
        json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]})
    );

    // More at once, of both protocols and one on an address.
    host.berth_ok(&["port", "add", "web", "127.0.0.1:8081:80", "9090:90/udp"]);
    assert_eq!(
        host.inspect("web")["NetworkSettings"]["Ports"],
        json!({
            "80/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "8080"},
                {"HostIp": "::", "HostPort": "8080"},
                {"HostIp": "127.0.0.1", "HostPort": "8081"}
            ],
            "90/udp": [{"HostIp": "0.0.0.0", "HostPort": "9090"}, {"HostIp": "::", "HostPort": "9090"}]
        })
    );
    assert_eq!(peer_udp(&peer, HOST_LAN_IP, 9090, "u"), format!("{PEER_LAN_IP}|u"));

    // A spec with host ports removes that mapping only.
    host.berth_ok(&["port", "rm", "web", "9090:90/udp"]);
    assert!(peer.python_ok(&py::udp_probe(HOST_LAN_IP, 9090, "gone", 1.0)).starts_with("FAILED"));
    assert_eq!(peer_tcp(&peer, HOST_LAN_IP, 8080, "still"), format!("{PEER_LAN_IP}|still"));
    // A container port alone removes all of its mappings.
    host.berth_ok(&["port", "rm", "web", "80"]);
    let after = peer_tcp_probe(&peer, HOST_LAN_IP, 8080, 1.0);
    assert!(after.starts_with("FAILED"), "8080 still answers after port rm: {after:?}");
    assert_eq!(host.berth_ok(&["port", "web"]), "");
    let ports = host.inspect("web")["NetworkSettings"]["Ports"].clone();
    assert!(ports.as_object().unwrap().values().all(|v| v.is_null() || v == &json!([])), "{ports}");
    // The port is free again: another sandbox may take it.
    host.berth_ok(&["run", "-d", "--name", "other", "--network", "n1", "-p", "8080:80", "--", "sleep", "600"]);
    // Removing what is not published says so.
    let err = one_line_error(&host.berth_err(&["port", "rm", "web", "7777:77"]));
    assert!(err.contains("77"), "{err}");
}

#[test]
fn removing_a_udp_mapping_drops_stale_conntrack_entries() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.68.0.0/24", "n1"]);
    let log_a = host.dir().join("a.log");
    let log_b = host.dir().join("b.log");
    std::fs::write(&log_a, "").unwrap();
    std::fs::write(&log_b, "").unwrap();
    host.serve("a", "n1", &["5353:53/udp"], &py::udp_log_server(&[53], log_a.to_str().unwrap()));
    host.serve("b", "n1", &[], &py::udp_log_server(&[53], log_b.to_str().unwrap()));
    let count = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default().lines().count();

    // The peer keeps one flow alive: same source port, a datagram every 20 ms.
    let _stream = peer.spawn_python(&py::udp_stream(40053, HOST_LAN_IP, 5353, 0.02));
    assert!(
        wait_for(Duration::from_secs(5), || (count(&log_a) > 0).then_some(())).is_some(),
        "the flow never reached a"
    );
    let first = std::fs::read_to_string(&log_a).unwrap();
    assert!(first.starts_with(&format!("53 {PEER_LAN_IP}:40053 n")), "{first}");

    host.berth_ok(&["port", "rm", "a", "5353:53/udp"]);
    // The flow goes on while nothing is published on 5353 (as it would while a service moves):
    // its datagrams now meet the host itself and the kernel tracks that too (an entry whose
    // reply comes from the host's own address, not a sandbox's).
    let meets_host = wait_for(Duration::from_secs(5), || {
        let entries = String::from_utf8_lossy(&host.sh("conntrack -L -p udp --orig-port-src 40053 2>/dev/null").stdout)
            .into_owned();
        entries.contains(&format!("src={HOST_LAN_IP} dst={PEER_LAN_IP} sport=5353")).then_some(())
    });
    assert!(meets_host.is_some(), "the unpublished flow never met the host itself");
    host.berth_ok(&["port", "add", "b", "5353:53/udp"]);
    let moved = wait_for(Duration::from_secs(3), || (count(&log_b) > 0).then_some(()));
    let conntrack = host.sh("conntrack -L -p udp 2>&1");
    assert!(
        moved.is_some(),
        "datagrams from {PEER_LAN_IP}:40053 never reached b after the mapping moved (a has {} lines); conntrack -L: {}",
        count(&log_a),
        String::from_utf8_lossy(&conntrack.stdout)
    );
    // And a gets no more of them, while b gets ten more (200 ms of the stream).
    let (a_then, b_then) = (count(&log_a), count(&log_b));
    assert!(
        wait_for(Duration::from_secs(5), || (count(&log_b) >= b_then + 10).then_some(())).is_some(),
        "b got no more of the flow"
    );
    assert_eq!(count(&log_a), a_then, "a still receives the flow after the move");
}
