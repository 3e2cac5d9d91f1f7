//! Networks through the CLI: create with and without a subnet (Docker's pool order, skipping
//! what the host already routes), options and labels, IPv6, ls, inspect, rm and prune, checked
//! against the bridges and addresses in the kernel.

use berth_integration::{privileged, TestHost};

fn subnet_of(host: &TestHost, network: &str) -> String {
    host.berth_json(&["network", "inspect", network])[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_owned()
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

#[test]
fn create_inspect_ls_rm_and_prune() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let id = host.berth_ok(&[
        "network", "create", "--subnet", "10.12.0.0/16", "--ip-range", "10.12.5.0/24", "--gateway", "10.12.0.254",
        "-o", "com.docker.network.bridge.name=br-custom", "--label", "team=net", "--internal", "custom",
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
    assert!(link[0]["addr_info"].as_array().unwrap().iter().any(|a| a["local"] == "10.12.0.254" && a["prefixlen"] == 16));
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
    let mut deleted: Vec<&str> = pruned["NetworksDeleted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, vec!["unused1", "unused2"], "networks in use and the default stay");

    host.berth_ok(&["rm", "-f", "s"]);
    host.berth_ok(&["network", "rm", "custom"]);
    assert!(!host.links().contains(&"br-custom".to_owned()));
    let names: Vec<String> = host.berth_json(&["network", "ls"]).as_array().unwrap().iter().map(|n| n["Name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, vec!["bridge"]);
}
