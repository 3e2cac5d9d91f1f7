//! Nothing leaks: 200 cycles of create network, run sandboxes, connect, disconnect and remove
//! leave the host namespace's links, addresses, routes and mounts exactly as they were.

use berth_integration::{privileged, TestHost};

fn namespace_state(host: &TestHost) -> String {
    host.sh_ok(
        // Carrier ("linkdown") of the default bridge changes with its ports; it is not a leak.
        "ip -o link show | awk -F': ' '{print $2}'; ip -o addr show | awk '{print $2, $4}'; \
         ip route show | sed 's/ linkdown//'; ip -6 route show | sed 's/ linkdown//'; \
         awk '{print $5}' /proc/self/mountinfo | sort",
    )
}

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let before = namespace_state(&host);
    let run_dir = host.dir().join("run");
    let files_before = std::fs::read_dir(run_dir.join("netns")).unwrap().count()
        + std::fs::read_dir(run_dir.join("sandboxes")).unwrap().count();
    for cycle in 0..200 {
        let net = format!("cycle{cycle}");
        host.berth_ok(&["network", "create", "--subnet", "10.90.0.0/24", &net]);
        host.berth_ok(&["run", "-d", "--name", "a", "--network", &net, "--", "sleep", "600"]);
        host.berth_ok(&["network", "connect", "bridge", "a"]);
        host.berth_ok(&["network", "disconnect", "bridge", "a"]);
        host.berth_ok(&["rm", "-f", "a"]);
        host.berth_ok(&["network", "rm", &net]);
    }
    assert_eq!(namespace_state(&host), before);
    let files_after = std::fs::read_dir(run_dir.join("netns")).unwrap().count()
        + std::fs::read_dir(run_dir.join("sandboxes")).unwrap().count();
    assert_eq!(files_after, files_before, "namespace files or sandbox directories left behind");
    assert_eq!(host.berth_json(&["ps"]), serde_json::json!([]));
}
