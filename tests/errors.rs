//! Bad input gets a clear one-line error and changes nothing: each case is checked for its
//! message, a failing exit status, and an unchanged set of networks, sandboxes and links.

use berth_integration::{privileged, TestHost};

/// What must not change when a command is refused.
fn snapshot(host: &TestHost) -> (serde_json::Value, serde_json::Value, Vec<String>, String) {
    (
        host.berth_json(&["network", "ls"]),
        host.berth_json(&["ps"]),
        host.links(),
        host.sh_ok("ip -o addr show | awk '{print $2, $4}'"),
    )
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    // A link berth did not make, whose name a bridge may not take.
    host.sh_ok("ip link add other0 type veth peer name other1");
    host.berth_ok(&["network", "create", "--subnet", "10.80.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "n1", "--ip", "10.80.0.5", "--", "sleep", "600"]);
    let before = snapshot(&host);

    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "--subnet", "10.80.0.300/24", "x"], "invalid value '10.80.0.300/24' for '--subnet"),
        (&["network", "create", "--subnet", "10.80.0.5/24", "x"], "host bits"),
        (&["network", "create", "--subnet", "10.80.0.0/16", "x"], "overlaps subnet 10.80.0.0/24 of network n1"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "--gateway", "10.82.0.1", "x"], "not inside any --subnet"),
        (
            &["network", "create", "--subnet", "10.81.0.0/24", "--ip-range", "10.82.0.0/25", "x"],
            "not inside any --subnet",
        ),
        (&["network", "create", "--subnet", "10.81.0.0/31", "x"], "too small"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "n1"], "already exists"),
        (&["network", "create", "host"], "host is a pre-defined network and cannot be created"),
        (&["network", "create", "none"], "none is a pre-defined network and cannot be created"),
        (&["network", "create", "default"], "default is a pre-defined network and cannot be created"),
        (&["network", "create", "bad\nname"], "control characters"),
        (&["network", "create", &"x".repeat(256)], "longer than 255"),
        (&["network", "rm", "bridge"], "bridge is a pre-defined network and cannot be removed"),
        (&["network", "create", "--driver", "macvlan", "x"], "not supported"),
        (
            &["network", "create", "--subnet", "10.81.0.0/24", "-o", "com.docker.network.bridge.name=berth0", "x"],
            "already used by network bridge",
        ),
        (&["network", "rm", "n1"], "has active endpoints"),
        (&["network", "rm", "nope"], "network nope not found"),
        (&["network", "inspect", "nope"], "not found"),
        (&["run", "--network", "nope", "--", "true"], "network nope not found"),
        (&["run", "--network", "n1", "--ip", "10.80.0.5", "--", "true"], "already in use"),
        (&["run", "--network", "n1", "--ip", "10.99.0.5", "--", "true"], "outside subnet"),
        (&["run", "--network", "n1", "--ip", "10.80.0.1", "--", "true"], "in use"),
        (&["run", "--network", "n1", "--ip", "banana", "--", "true"], "banana"),
        (
            &["run", "--ip", "172.17.0.9", "--", "true"],
            "user specified IP address is supported on user defined networks only",
        ),
        (&["network", "connect", "--ip", "172.17.0.9", "bridge", "s"], "user defined networks only"),
        (&["run", "--name", "s", "--network", "n1", "--", "true"], "already in use"),
        (&["run", "--name=-x", "--", "true"], "invalid sandbox name"),
        (&["run", "--network", "container:nope", "--", "true"], "no such sandbox: nope"),
        (&["network", "connect", "n1", "s"], "already connected"),
        (&["network", "connect", "n1", "nope"], "no such sandbox"),
        (&["network", "disconnect", "bridge", "s"], "not connected"),
        (&["rm", "s"], "is running"),
        (&["rm", "nope"], "no such sandbox"),
        (&["attach", "--name", "a", "--netns", "/etc/hostname"], "not a network namespace"),
        (&["network", "create", "--subnet", "127.0.0.0/8", "x"], "overlaps loopback"),
        (&["network", "create", "--subnet", "127.5.0.0/24", "x"], "overlaps loopback"),
        (&["network", "create", "--subnet", "169.254.0.0/16", "x"], "overlaps link-local"),
        (&["network", "create", "--subnet", "224.0.0.0/24", "x"], "overlaps multicast"),
        (&["network", "create", "--subnet", "0.0.0.0/0", "x"], "every IPv4 address"),
        (&["network", "create", "--ipv6", "--subnet", "fe80::/64", "x"], "overlaps link-local"),
        (&["network", "create", "--ipv6", "--subnet", "ff02::/64", "x"], "overlaps multicast"),
        (&["network", "create", "--ipv6", "--subnet", "::/0", "x"], "every IPv6 address"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=lo", "x"], "loopback interface"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=br*", "x"], "invalid bridge name"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=br\"x", "x"], "invalid bridge name"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=br;x", "x"], "invalid bridge name"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=br x", "x"], "invalid bridge name"),
        (&["network", "create", "-o", "com.docker.network.bridge.name=a-very-long-name", "x"], "1 to 15 characters"),
        (
            &["network", "create", "-o", "com.docker.network.bridge.name=other0", "x"],
            "already used by a link berth did not create",
        ),
        (&["run", "-p", "1-65535", "--", "true"], "one request may publish at most 10000"),
        (
            &["run", "-p", "20000-29999:20000-29999", "-p", "30000", "--", "true"],
            "one request may publish at most 10000",
        ),
    ];
    for (args, expected) in cases {
        let err = host.berth_err(args);
        assert!(err.contains(expected), "berth {args:?}: expected {expected:?} in {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "berth {args:?}: more than one line: {err:?}");
        assert_eq!(snapshot(&host), before, "berth {args:?} changed something");
    }
}

#[test]
fn a_missing_daemon_is_explained() {
    if !privileged() {
        return;
    }
    let host = TestHost::without_daemon();
    let err = host.berth_err(&["network", "ls"]);
    assert!(err.contains("berthd"), "{err}");
    assert!(err.contains("is the daemon running"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// Every refusal is Docker's `{"message": ...}` with the status that says why, whatever the
/// route, method or query.
#[test]
fn api_errors_have_a_json_message_and_the_right_status() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.sh_ok("ip link add other0 type veth peer name other1");
    let network = |body: serde_json::Value| host.api("POST", "/v1/networks", Some(&body));
    let docker_network = |body: serde_json::Value| host.api("POST", "/v1.47/networks/create", Some(&body));
    let before = (host.berth_json(&["network", "ls"]), host.links());
    let cases: Vec<(&str, (u16, serde_json::Value), u16)> = vec![
        ("PUT /v1/networks", host.api("PUT", "/v1/networks", None), 405),
        ("PATCH docker networks", host.api("PATCH", "/v1.47/networks", None), 405),
        ("force=bogus", host.api("DELETE", "/v1/sandboxes/nope?force=bogus", None), 400),
        ("path not UTF-8", host.api("GET", "/v1/networks/%ff", None), 400),
        ("docker path not UTF-8", host.api("GET", "/v1.47/containers/%ff/json", None), 400),
        ("unknown route", host.api("GET", "/v1/nothing", None), 404),
        ("bad JSON", host.api("POST", "/v1/networks", Some(&serde_json::json!("not an object"))), 400),
        ("loopback subnet", network(serde_json::json!({"Name": "x", "IPAM": [{"Subnet": "127.0.0.0/8"}]})), 400),
        ("multicast subnet", network(serde_json::json!({"Name": "x", "IPAM": [{"Subnet": "224.0.0.0/24"}]})), 400),
        (
            "v6 multicast subnet",
            network(serde_json::json!({"Name": "x", "EnableIPv6": true, "IPAM": [{"Subnet": "ff02::/64"}]})),
            400,
        ),
        (
            "docker loopback subnet",
            docker_network(serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "127.0.0.0/8"}]}})),
            400,
        ),
        (
            "docker link-local",
            docker_network(serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "169.254.0.0/16"}]}})),
            400,
        ),
        (
            "docker default route",
            docker_network(serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "0.0.0.0/0"}]}})),
            400,
        ),
        (
            "bridge lo",
            network(serde_json::json!({"Name": "x", "Options": {"com.docker.network.bridge.name": "lo"}})),
            400,
        ),
        (
            "bridge with a quote",
            network(serde_json::json!({"Name": "x", "Options": {"com.docker.network.bridge.name": "a\"b"}})),
            400,
        ),
        (
            "bridge taken by another link",
            network(serde_json::json!({"Name": "x", "Options": {"com.docker.network.bridge.name": "other0"}})),
            409,
        ),
    ];
    for (what, (status, body), expected) in cases {
        assert_eq!(status, expected, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_else(|| panic!("{what}: no message in {body}"));
        assert!(!message.is_empty() && message.lines().count() == 1, "{what}: {message:?}");
    }
    assert_eq!((host.berth_json(&["network", "ls"]), host.links()), before, "a refused request changed something");
}

/// berthd holds a socket per published host port and family: it lifts its soft open-file limit
/// to the hard one at start, as Docker does.
#[test]
fn berthd_lifts_its_open_file_limit() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let berthd = host.berth_json(&["version"])["Pid"].as_u64().expect("berthd's pid");
    let limits = host.sh_ok(&format!("grep 'Max open files' /proc/{berthd}/limits"));
    let fields: Vec<&str> = limits.split_whitespace().collect();
    // "Max open files SOFT HARD files"
    assert_eq!(fields.get(3), fields.get(4), "soft and hard differ: {limits}");
    let soft: u64 = fields[3].parse().expect("a number");
    assert!(soft > 1024, "{limits}");
}
