//! Networks through the CLI: create with and without a subnet (Docker's pool order, skipping
//! what the host already routes), options and labels, IPv6, ls, inspect, rm and prune, checked
//! against the bridges and addresses in the kernel.

use berth_integration::{privileged, py, TestHost};

fn subnet_of(host: &TestHost, network: &str) -> String {
    host.berth_json(&["network", "inspect", network])[0]["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().to_owned()
}

#[test]
fn subnets_come_from_the_default_pools_in_order_around_host_routes() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "first"]);
    assert_eq!(subnet_of(&host, "first"), "172.18.0.0/16");
    // The host already uses 172.19.0.0/16 (a route) and has an address in 172.20.0.0/16.
    host.sh_ok("ip link add dummy0 type bridge && ip link set dummy0 up && ip route add 172.19.0.0/16 dev dummy0 && ip addr add 172.20.5.1/24 dev dummy0");
    host.berth_ok(&["network", "create", "second"]);
    assert_eq!(subnet_of(&host, "second"), "172.21.0.0/16");
    // A removed network's subnet is free again.
    host.berth_ok(&["network", "rm", "first"]);
    host.berth_ok(&["network", "create", "third"]);
    assert_eq!(subnet_of(&host, "third"), "172.18.0.0/16");
}

/// The subnet of one family of a network's IPAM config.
fn subnet_of_family(host: &TestHost, network: &str, v6: bool) -> String {
    let configs = host.berth_json(&["network", "inspect", network])[0]["IPAM"]["Config"].clone();
    configs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["Subnet"].as_str())
        .find(|s| s.contains(':') == v6)
        .unwrap_or_else(|| panic!("network {network} has no {} subnet: {configs}", if v6 { "IPv6" } else { "IPv4" }))
        .to_owned()
}

#[test]
fn ipv6_without_a_subnet_gets_a_unique_local_64_and_pools_are_configurable() {
    if !privileged() {
        return;
    }
    let mut host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--ipv6", "v6a"]);
    host.berth_ok(&["network", "create", "--ipv6", "v6b"]);
    let (a, b) = (subnet_of_family(&host, "v6a", true), subnet_of_family(&host, "v6b", true));
    // fdXX:XXXX:XXXX:N::/64, N counting up within one /48.
    assert!(a.starts_with("fd") && a.ends_with("::/64"), "{a}");
    let prefix48 = |s: &str| s.split(':').take(3).collect::<Vec<_>>().join(":");
    assert_eq!(prefix48(&a), prefix48(&b), "{a} and {b} come from one /48");
    assert_ne!(a, b);
    assert_eq!(subnet_of_family(&host, "v6a", false), "172.18.0.0/16");
    // Sandboxes on it talk over IPv6.
    host.serve("s2", "v6a", &[], &py::tcp_echo_server("::", 7000));
    host.berth_ok(&["run", "-d", "--name", "s1", "--network", "v6a", "--", "sleep", "600"]);
    let s2 = host.inspect("s2")["NetworkSettings"]["Networks"]["v6a"]["GlobalIPv6Address"].as_str().unwrap().to_owned();
    assert!(s2.starts_with(&prefix48(&a)), "{s2} in {a}");
    assert_eq!(host.python_in("s1", &py::tcp_client(&s2, 7000, "ula")), "echo:ula");
    // The /48 is the daemon's own: the same after a restart.
    host.stop_daemon();
    host.start_daemon(&[]);
    host.berth_ok(&["network", "create", "--ipv6", "v6c"]);
    assert_eq!(prefix48(&subnet_of_family(&host, "v6c", true)), prefix48(&a));

    // --default-address-pool, per family, as Docker's flag.
    host.stop_daemon();
    host.start_daemon(&[
        "--default-address-pool",
        "base=10.99.0.0/16,size=24",
        "--default-address-pool",
        "base=fd00:77::/56,size=64",
    ]);
    host.berth_ok(&["network", "create", "--ipv6", "pooled"]);
    assert_eq!(subnet_of_family(&host, "pooled", false), "10.99.0.0/24");
    assert_eq!(subnet_of_family(&host, "pooled", true), "fd00:77::/64");
    host.berth_ok(&["network", "create", "pooled2"]);
    assert_eq!(subnet_of(&host, "pooled2"), "10.99.1.0/24");
    host.stop_daemon();
    // A pool that cannot be is refused at start, in one line.
    let dir = host.dir().display().to_string();
    let refused = host.sh(&format!(
        "timeout 10 {} --default-address-pool base=10.0.0.0/16,size=8 --data-root {dir}/bad --exec-root {dir}/bad-run --socket {dir}/bad.sock",
        berth_integration::binary_path("berthd").display()
    ));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("size must be between 16 (the base's prefix) and 30"),
        "{stderr}"
    );
}

#[test]
fn create_inspect_ls_rm_and_prune() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let id = host.berth_ok(&[
        "network",
        "create",
        "--subnet",
        "10.12.0.0/16",
        "--ip-range",
        "10.12.5.0/24",
        "--gateway",
        "10.12.0.254",
        "-o",
        "com.docker.network.bridge.name=br-custom",
        "--label",
        "team=net",
        "--internal",
        "custom",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let network = &host.berth_json(&["network", "inspect", "custom"])[0];
    assert_eq!(network["Id"], id);
    assert_eq!(network["Driver"], "bridge");
    assert_eq!(network["Scope"], "local");
    assert_eq!(network["Internal"], true);
    assert_eq!(network["EnableIPv6"], false);
    assert_eq!(network["Labels"]["team"], "net");
    assert_eq!(network["Options"]["com.docker.network.bridge.name"], "br-custom");
    assert_eq!(network["IPAM"]["Config"][0]["Subnet"], "10.12.0.0/16");
    assert_eq!(network["IPAM"]["Config"][0]["IPRange"], "10.12.5.0/24");
    assert_eq!(network["IPAM"]["Config"][0]["Gateway"], "10.12.0.254");
    // The kernel has the bridge, up, with the gateway address and berth's mark.
    let link: serde_json::Value = serde_json::from_str(&host.sh_ok("ip -j -d addr show br-custom")).unwrap();
    assert_eq!(link[0]["linkinfo"]["info_kind"], "bridge");
    assert_eq!(link[0]["ifalias"], "berth");
    assert!(link[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(link[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["local"] == "10.12.0.254" && a["prefixlen"] == 16));
    // Inspect by id prefix; addresses come from the range.
    assert_eq!(host.berth_json(&["network", "inspect", &id[..10]])[0]["Name"], "custom");
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "custom", "--", "sleep", "600"]);
    assert_eq!(host.ip_of("s", "custom"), "10.12.5.0");

    let ls = host.berth_ok(&["network", "ls"]);
    assert!(ls.lines().next().unwrap().contains("NAME"), "{ls}");
    assert!(ls.contains("custom") && ls.contains("bridge"), "{ls}");

    host.berth_ok(&["network", "create", "unused1"]);
    host.berth_ok(&["network", "create", "unused2"]);
    let pruned = host.berth_json(&["network", "prune", "-f"]);
    let mut deleted: Vec<&str> =
        pruned["NetworksDeleted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, vec!["unused1", "unused2"], "networks in use and the default stay");

    host.berth_ok(&["rm", "-f", "s"]);
    host.berth_ok(&["network", "rm", "custom"]);
    assert!(!host.links().contains(&"br-custom".to_owned()));
    let names: Vec<String> = host
        .berth_json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["bridge"]);
}
