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
    host.berth_ok(&["network", "create", "--subnet", "10.80.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "n1", "--ip", "10.80.0.5", "--", "sleep", "600"]);
    let before = snapshot(&host);

    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "--subnet", "10.80.0.300/24", "x"], "invalid value '10.80.0.300/24' for '--subnet"),
        (&["network", "create", "--subnet", "10.80.0.5/24", "x"], "host bits"),
        (&["network", "create", "--subnet", "10.80.0.0/16", "x"], "overlaps subnet 10.80.0.0/24 of network n1"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "--gateway", "10.82.0.1", "x"], "not inside any --subnet"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "--ip-range", "10.82.0.0/25", "x"], "not inside any --subnet"),
        (&["network", "create", "--subnet", "10.81.0.0/31", "x"], "too small"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "n1"], "already exists"),
        (&["network", "create", "--", "-bad"], "invalid network name"),
        (&["network", "create", "bad name"], "invalid network name"),
        (&["network", "create", &"x".repeat(65)], "longer than 64"),
        (&["network", "create", "--driver", "macvlan", "x"], "not supported"),
        (&["network", "create", "--subnet", "10.81.0.0/24", "-o", "com.docker.network.bridge.name=berth0", "x"], "already used by network bridge"),
        (&["network", "rm", "n1"], "has active endpoints"),
        (&["network", "rm", "nope"], "network nope not found"),
        (&["network", "inspect", "nope"], "not found"),
        (&["run", "--network", "nope", "--", "true"], "network nope not found"),
        (&["run", "--network", "n1", "--ip", "10.80.0.5", "--", "true"], "already in use"),
        (&["run", "--network", "n1", "--ip", "10.99.0.5", "--", "true"], "outside subnet"),
        (&["run", "--network", "n1", "--ip", "10.80.0.1", "--", "true"], "in use"),
        (&["run", "--network", "n1", "--ip", "banana", "--", "true"], "banana"),
        (&["run", "--name", "s", "--network", "n1", "--", "true"], "already in use"),
        (&["run", "--name=-x", "--", "true"], "invalid sandbox name"),
        (&["run", "--network", "container:nope", "--", "true"], "no such sandbox: nope"),
        (&["network", "connect", "n1", "s"], "already connected"),
        (&["network", "connect", "n1", "nope"], "no such sandbox"),
        (&["network", "disconnect", "bridge", "s"], "not connected"),
        (&["rm", "s"], "is running"),
        (&["rm", "nope"], "no such sandbox"),
        (&["attach", "--name", "a", "--netns", "/etc/hostname"], "not a network namespace"),
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
