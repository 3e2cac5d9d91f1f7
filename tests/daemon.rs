//! The daemon's life: default network flags, SIGTERM and restart keeping everything working,
//! reconcile repairing a link deleted behind berth's back and removing berth-marked orphans,
//! kill -9 in the middle of a connect, and two daemons side by side.

use std::time::Duration;

use berth_integration::{privileged, py, TestHost};

fn host_veth_of(host: &TestHost, sandbox: &str, network: &str) -> String {
    let endpoint = host.inspect(sandbox)["NetworkSettings"]["Networks"][network]["EndpointID"]
        .as_str()
        .expect("an endpoint")
        .to_owned();
    format!("bth{}", &endpoint[..8])
}

fn echo_from(host: &TestHost, client: &str, ip: &str, port: u16, message: &str) -> String {
    let out = host.berth(&["exec", client, "--", "python3", "-c", &py::tcp_client(ip, port, message)]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn default_network_follows_the_flags() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the API socket is created mode 0660");
    let networks = host.berth_json(&["network", "ls"]);
    assert_eq!(networks[0]["Name"], "bridge");
    assert_eq!(networks[0]["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(networks[0]["IPAM"]["Config"][0]["Gateway"], "172.17.0.1");
    assert!(host.sh_ok("ip -4 -o addr show berth0").contains("172.17.0.1/16"));

    let host = TestHost::new(&["--bridge-subnet", "10.99.0.0/16"]);
    assert!(host.sh_ok("ip -4 -o addr show berth0").contains("10.99.0.1/16"));

    let host = TestHost::new(&["--no-default-network"]);
    assert_eq!(host.berth_json(&["network", "ls"]), serde_json::json!([]));
    assert!(!host.links().contains(&"berth0".to_owned()));
}

#[test]
fn restart_keeps_sandboxes_and_repairs_what_was_deleted() {
    if !privileged() {
        return;
    }
    let mut host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.50.0.0/24", "n1"]);
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        "n1",
        "--",
        "python3",
        "-c",
        &py::tcp_echo_server("0.0.0.0", 7000),
    ]);
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "n1", "--", "sleep", "600"]);
    let server_ip = host.ip_of("server", "n1");
    assert_eq!(echo_from(&host, "client", &server_ip, 7000, "before"), "echo:before");

    let veth = host_veth_of(&host, "server", "n1");

    // SIGTERM: a clean exit that leaves the kernel state in place.
    assert!(host.stop_daemon(), "berthd did not exit cleanly on SIGTERM");
    assert!(!host.socket().exists(), "the socket is removed on shutdown");
    let links = host.links();
    assert!(links.contains(&veth) && links.contains(&"berth0".to_owned()), "{links:?}");

    // Behind berth's back: the server's veth is deleted, a marked orphan and a foreign link appear.
    host.sh_ok(&format!("ip link del {veth}"));
    host.sh_ok("ip link add bthdeadbeef type bridge && ip link set bthdeadbeef alias berth");
    host.sh_ok("ip link add bthforeign type bridge");

    host.start_daemon(&[]);
    let links = host.links();
    assert!(links.contains(&veth), "the deleted veth is recreated: {links:?}");
    assert!(!links.contains(&"bthdeadbeef".to_owned()), "a berth-marked orphan is removed: {links:?}");
    assert!(links.contains(&"bthforeign".to_owned()), "links berth did not make are left alone: {links:?}");
    assert_eq!(host.ip_of("server", "n1"), server_ip);
    assert_eq!(echo_from(&host, "client", &server_ip, 7000, "after"), "echo:after");
    // Addresses in use stay allocated across the restart.
    host.berth_ok(&["run", "-d", "--name", "third", "--network", "n1", "--", "sleep", "600"]);
    let third = host.ip_of("third", "n1");
    assert!(third != server_ip && third != host.ip_of("client", "n1"), "{third} was handed out twice");
}

#[test]
fn kill_during_connect_leaves_a_complete_endpoint_or_none() {
    if !privileged() {
        return;
    }
    let mut host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.60.0.0/24", "n1"]);
    host.berth_ok(&["network", "create", "--subnet", "10.61.0.0/24", "n2"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "n1", "--", "sleep", "600"]);
    let netns = host.inspect("s")["NetworkSettings"]["SandboxKey"].as_str().unwrap().to_owned();
    let (mut complete, mut none) = (0, 0);
    for delay_ms in [0u64, 1, 2, 3, 5, 8, 12, 20, 40, 80] {
        let connecting = host.berth_command().args(["network", "connect", "n2", "s"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        host.kill_daemon();
        let _ = connecting.wait_with_output();
        host.start_daemon(&[]);

        let inspect = host.inspect("s");
        let host_veths: Vec<String> = host.links().into_iter().filter(|l| l.starts_with("bth")).collect();
        let inside = host.links_in(&netns);
        if inspect["NetworkSettings"]["Networks"].get("n2").is_some() {
            complete += 1;
            assert_eq!(host_veths.len(), 2, "delay {delay_ms}: {host_veths:?}");
            let ip = inspect["NetworkSettings"]["Networks"]["n2"]["IPAddress"].as_str().unwrap();
            let addr = host.sh_ok(&format!("nsenter --net={netns} ip -4 -o addr show eth1"));
            assert!(addr.contains(&format!("{ip}/24")), "delay {delay_ms}: {addr}");
            host.berth_ok(&["network", "disconnect", "n2", "s"]);
        } else {
            none += 1;
            assert_eq!(host_veths.len(), 1, "delay {delay_ms}: orphan veth left: {host_veths:?}");
            assert_eq!(inside, vec!["lo", "eth0"], "delay {delay_ms}: orphan interface in the sandbox");
        }
    }
    eprintln!("kill -9 during connect: {complete} complete, {none} none");
    // The network is still usable afterwards.
    host.berth_ok(&["network", "connect", "n2", "s"]);
    assert_eq!(host.inspect("s")["NetworkSettings"]["Networks"]["n2"]["IPAddress"], "10.61.0.2");
}

#[test]
fn two_daemons_run_side_by_side() {
    if !privileged() {
        return;
    }
    let a = TestHost::new(&[]);
    let b = TestHost::new(&[]);
    for host in [&a, &b] {
        host.berth_ok(&["network", "create", "--subnet", "10.70.0.0/24", "same"]);
        host.berth_ok(&["run", "-d", "--name", "s", "--network", "same", "--", "sleep", "600"]);
        assert_eq!(host.ip_of("s", "same"), "10.70.0.2");
    }
    assert_ne!(a.inspect("s")["Id"], b.inspect("s")["Id"]);
}
