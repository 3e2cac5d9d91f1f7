//! Sandboxes on real bridges: traffic between sandboxes (TCP and UDP, v4 and v6), to the
//! gateway, on two networks; what `berth inspect` reports against what the kernel has; the
//! host/none/container modes, `berth attach`, `berth run` in the foreground, and `--add-host`.

use berth_integration::{privileged, py, TestHost};

#[test]
fn sandboxes_on_one_network_talk_tcp_and_udp() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.10.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "n1", "--", "sleep", "600"]);
    host.serve("tcp-server", "n1", &[], &py::tcp_echo_server("0.0.0.0", 7000));
    host.serve("udp-server", "n1", &[], &py::udp_echo_server("0.0.0.0", 7001));
    let tcp_ip = host.ip_of("tcp-server", "n1");
    let udp_ip = host.ip_of("udp-server", "n1");
    assert_eq!(host.python_in("client", &py::tcp_client(&tcp_ip, 7000, "hello")), "echo:hello");
    assert_eq!(host.python_in("client", &py::udp_client(&udp_ip, 7001, "ping")), "echo:ping");
    // And the other way round: the server's sandbox reaches the client's.
    host.serve("tcp-server-2", "n1", &[], &py::tcp_echo_server("0.0.0.0", 7002));
    let ip2 = host.ip_of("tcp-server-2", "n1");
    assert_eq!(host.python_in("udp-server", &py::tcp_client(&ip2, 7002, "back")), "echo:back");
}

#[test]
fn sandboxes_on_ipv6_networks_talk() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--ipv6", "--subnet", "fd00:10::/64", "--subnet", "10.11.0.0/24", "v6net"]);
    host.serve("server", "v6net", &[], &py::tcp_echo_server("::", 7000));
    host.berth_ok(&["run", "-d", "--name", "client", "--network", "v6net", "--", "sleep", "600"]);
    let v6 = host.inspect("server")["NetworkSettings"]["Networks"]["v6net"]["GlobalIPv6Address"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(v6.starts_with("fd00:10::"), "{v6}");
    assert_eq!(host.python_in("client", &py::tcp_client(&v6, 7000, "six")), "echo:six");
    // The v6 default route points at the gateway.
    let routes = String::from_utf8_lossy(&host.exec("client", "ip -6 route show default").stdout).into_owned();
    assert!(routes.contains("via fd00:10::1"), "{routes}");
}

#[test]
fn sandboxes_reach_their_gateway_on_two_networks() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.20.0.0/24", "a"]);
    host.berth_ok(&["network", "create", "--subnet", "10.21.0.0/24", "b"]);
    host.berth_ok(&["run", "-d", "--name", "on-a", "--network", "a", "--", "sleep", "600"]);
    host.berth_ok(&["run", "-d", "--name", "on-b", "--network", "b", "--", "sleep", "600"]);
    // A listener in the host namespace on each gateway address.
    let listeners: Vec<std::process::Child> = ["10.20.0.1", "10.21.0.1"]
        .iter()
        .map(|gateway| {
            let script = py::tcp_echo_server(gateway, 8000);
            host.command("python3")
                .args(["-c", &script])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("gateway listener")
        })
        .collect();
    assert_eq!(host.python_in("on-a", &py::tcp_client("10.20.0.1", 8000, "gw-a")), "echo:gw-a");
    assert_eq!(host.python_in("on-b", &py::tcp_client("10.21.0.1", 8000, "gw-b")), "echo:gw-b");
    for mut listener in listeners {
        let _ = listener.kill();
        let _ = listener.wait();
    }
}

#[test]
fn inspect_reports_what_the_kernel_has() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.30.0.0/24", "--gateway", "10.30.0.254", "n1"]);
    host.berth_ok(&["network", "create", "--subnet", "10.31.0.0/24", "n2"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "n1", "--ip", "10.30.0.7", "--", "sleep", "600"]);
    host.berth_ok(&["network", "connect", "--ip", "10.31.0.9", "n2", "s"]);
    let inspect = host.inspect("s");
    let netns = inspect["NetworkSettings"]["SandboxKey"].as_str().unwrap().to_owned();
    for (network, interface, ip, gateway) in
        [("n1", "eth0", "10.30.0.7", "10.30.0.254"), ("n2", "eth1", "10.31.0.9", "10.31.0.1")]
    {
        let settings = &inspect["NetworkSettings"]["Networks"][network];
        assert_eq!(settings["IPAddress"], ip);
        assert_eq!(settings["Gateway"], gateway);
        assert_eq!(settings["IPPrefixLen"], 24);
        assert_eq!(settings["Interface"], interface);
        let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
        let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", octets[0], octets[1], octets[2], octets[3]);
        assert_eq!(settings["MacAddress"], mac.as_str());
        // Read the kernel's view with ip(8) from the host side.
        let kernel: serde_json::Value =
            serde_json::from_str(&host.sh_ok(&format!("nsenter --net={netns} ip -j addr show {interface}"))).unwrap();
        assert_eq!(kernel[0]["address"], mac.as_str());
        let addrs: Vec<String> = kernel[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect();
        assert_eq!(addrs, vec![format!("{ip}/24")], "IPv4-only interfaces carry no IPv6 address");
        let disable_ipv6 =
            host.sh_ok(&format!("nsenter --net={netns} cat /proc/sys/net/ipv6/conf/{interface}/disable_ipv6"));
        assert_eq!(disable_ipv6.trim(), "1");
        let accept_ra = host.sh_ok(&format!("nsenter --net={netns} cat /proc/sys/net/ipv6/conf/{interface}/accept_ra"));
        assert_eq!(accept_ra.trim(), "0");
    }
    // One default route, via the first network's gateway.
    let routes = host.sh_ok(&format!("nsenter --net={netns} ip route show default"));
    assert_eq!(routes.trim(), "default via 10.30.0.254 dev eth0 proto static");
    let lo = host.sh_ok(&format!("nsenter --net={netns} ip -o link show lo"));
    assert!(lo.contains("UP"), "{lo}");
    // The network's view lists the sandbox with the same endpoint.
    let network = &host.berth_json(&["network", "inspect", "n1"])[0];
    let id = inspect["Id"].as_str().unwrap();
    assert_eq!(network["Containers"][id]["IPv4Address"], "10.30.0.7/24");
    assert_eq!(network["Containers"][id]["Name"], "s");
    // Processes are reported.
    assert_eq!(inspect["State"]["Running"], true);
    assert_eq!(inspect["State"]["Pids"].as_array().unwrap().len(), 1);
}

#[test]
fn host_none_and_container_modes() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    // none: only lo.
    let links = host.berth_ok(&["run", "--network", "none", "--rm", "--", "sh", "-c", "ls /sys/class/net"]);
    assert_eq!(links.split_whitespace().filter(|l| !l.starts_with("ifb")).collect::<Vec<_>>(), vec!["lo"]);
    // host: the daemon's namespace, where the default bridge lives.
    let links = host.berth_ok(&["run", "--network", "host", "--rm", "--", "sh", "-c", "ls /sys/class/net"]);
    assert!(links.split_whitespace().any(|l| l == "berth0"), "{links}");
    // container:NAME shares the namespace: same address, and localhost reaches the other's server.
    host.serve("web", "bridge", &[], &py::tcp_echo_server("0.0.0.0", 9000));
    let ip = host.ip_of("web", "bridge");
    let out = host.berth_ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "--",
        "python3",
        "-c",
        &py::tcp_client("127.0.0.1", 9000, "side"),
    ]);
    assert_eq!(out.trim(), "echo:side");
    let addr =
        host.berth_ok(&["run", "--rm", "--network", "container:web", "--", "sh", "-c", "ip -4 -o addr show eth0"]);
    assert!(addr.contains(&format!("{ip}/16")), "{addr}");
    // Hostname and hosts file of the sandbox.
    let out = host.berth_ok(&[
        "run",
        "--rm",
        "--hostname",
        "box1",
        "--",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; grep box1 /etc/hosts",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "box1");
    assert!(lines[2].starts_with("172.17.0."), "{out}");
}

#[test]
fn attach_gives_a_foreign_namespace_an_endpoint() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.40.0.0/24", "n1"]);
    // Another runtime's namespace: a process in a namespace of its own.
    let mut foreign = host.command("unshare");
    foreign.args(["--net", "sleep", "600"]);
    let child = foreign.spawn().expect("foreign namespace");
    let pid = loop {
        let pids = host.sh_ok("pgrep -f '^sleep 600$' || true");
        if let Some(pid) = pids.lines().next() {
            break pid.trim().to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let netns = format!("/proc/{pid}/ns/net");
    host.berth_ok(&["attach", "--name", "foreign", "--netns", &netns, "--network", "n1", "--ip", "10.40.0.50"]);
    let addr = host.sh_ok(&format!("nsenter --net={netns} ip -4 -o addr show eth0"));
    assert!(addr.contains("10.40.0.50/24"), "{addr}");
    host.serve("peer", "n1", &[], &py::tcp_echo_server("0.0.0.0", 7100));
    let peer_ip = host.ip_of("peer", "n1");
    let out = host.sh_ok(&format!(
        "nsenter --net={netns} python3 -c \"{}\"",
        py::tcp_client(&peer_ip, 7100, "from-foreign").replace('"', "\\\"")
    ));
    assert_eq!(out.trim(), "echo:from-foreign");
    // Removing the sandbox takes the endpoint but leaves the foreign namespace alone.
    host.berth_ok(&["rm", "-f", "foreign"]);
    assert_eq!(host.links_in(&netns), vec!["lo"]);
    drop(child);
}

#[test]
fn attaching_the_hosts_or_a_sandboxs_namespace_is_refused() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.41.0.0/24", "n1"]);
    host.berth_ok(&["run", "-d", "--name", "s", "--network", "n1", "--", "sleep", "600"]);
    let sandbox_key = host.inspect("s")["NetworkSettings"]["SandboxKey"].as_str().expect("SandboxKey").to_owned();
    let berthd = host.berth_json(&["version"])["Pid"].as_u64().expect("berthd's pid");
    let host_state = || {
        (
            host.links(),
            host.sh_ok("ip -o addr show; ip route show; ip -6 route show; sysctl -n net.ipv6.conf.all.disable_ipv6"),
        )
    };
    let before = (host_state(), host.berth_json(&["ps"]));
    let own = format!("/proc/{berthd}/ns/net");
    for (netns, expected) in [
        ("/proc/1/ns/net", "is the host's network namespace"),
        ("/proc/self/ns/net", "is the host's network namespace"),
        (own.as_str(), "is the host's network namespace"),
        (sandbox_key.as_str(), "is the network namespace of sandbox s"),
    ] {
        let err = host.berth_err(&["attach", "--name", "x", "--netns", netns, "--network", "n1"]);
        assert!(err.contains(expected), "{netns}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!((host_state(), host.berth_json(&["ps"])), before, "attaching {netns} changed something");
    }
    let (status, _) =
        host.api("POST", "/v1/sandboxes", Some(&serde_json::json!({"Name": "x", "Netns": "/proc/1/ns/net"})));
    assert_eq!(status, 403);
    let (status, _) = host.api("POST", "/v1/sandboxes", Some(&serde_json::json!({"Name": "x", "Netns": sandbox_key})));
    assert_eq!(status, 409);
}

#[test]
fn mac_addresses_asked_for_are_the_kernels_and_checked() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    for (name, subnet) in [("n1", "10.42.0.0/24"), ("n2", "10.43.0.0/24"), ("n3", "10.44.0.0/24")] {
        host.berth_ok(&["network", "create", "--subnet", subnet, name]);
    }
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "m",
        "--network",
        "n1",
        "--mac-address",
        "02:AA:bb:cc:dd:01",
        "--",
        "python3",
        "-c",
        &py::tcp_echo_server("0.0.0.0", 7200),
    ]);
    host.berth_ok(&["network", "connect", "--mac-address", "02:aa:bb:cc:dd:02", "n2", "m"]);
    let (status, body) = host.api(
        "POST",
        "/v1.47/networks/n3/connect",
        Some(&serde_json::json!({"Container": "m", "EndpointConfig": {"MacAddress": "02:aa:bb:cc:dd:03"}})),
    );
    assert_eq!(status, 200, "{body}");
    let networks = host.inspect("m")["NetworkSettings"]["Networks"].clone();
    for (network, mac) in [("n1", "02:aa:bb:cc:dd:01"), ("n2", "02:aa:bb:cc:dd:02"), ("n3", "02:aa:bb:cc:dd:03")] {
        assert_eq!(networks[network]["MacAddress"], mac, "{networks}");
        let interface = networks[network]["Interface"].as_str().unwrap();
        let kernel =
            String::from_utf8_lossy(&host.exec("m", &format!("cat /sys/class/net/{interface}/address")).stdout)
                .trim()
                .to_owned();
        assert_eq!(kernel, mac, "{network}");
    }
    // A peer that talked to it has learnt that MAC for its address.
    host.berth_ok(&["run", "-d", "--name", "peer", "--network", "n1", "--", "sleep", "600"]);
    let m_ip = host.ip_of("m", "n1");
    assert_eq!(host.python_in("peer", &py::tcp_client(&m_ip, 7200, "mac")), "echo:mac");
    let neigh = String::from_utf8_lossy(&host.exec("peer", &format!("ip neigh show {m_ip}")).stdout).into_owned();
    assert!(neigh.contains("02:aa:bb:cc:dd:01"), "{neigh}");
    // A derived MAC never copies one asked for on the same network: 10.42.0.5 would be
    // 02:42:0a:2a:00:05, which "late" asks for first.
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "n1",
        "--mac-address",
        "02:42:0a:2a:00:05",
        "--",
        "sleep",
        "600",
    ]);
    host.berth_ok(&["run", "-d", "--name", "derived", "--network", "n1", "--ip", "10.42.0.5", "--", "sleep", "600"]);
    let derived =
        host.inspect("derived")["NetworkSettings"]["Networks"]["n1"]["MacAddress"].as_str().unwrap().to_owned();
    assert_ne!(derived, "02:42:0a:2a:00:05");

    let before = (host.berth_json(&["ps"]), host.links());
    for (args, expected) in [
        (
            &["run", "--network", "n1", "--mac-address", "02:aa:bb:cc:dd:01", "--", "true"][..],
            "already in use on network n1",
        ),
        (&["run", "--network", "n1", "--mac-address", "01:00:5e:00:00:01", "--", "true"][..], "multicast"),
        (&["run", "--network", "n1", "--mac-address", "00:00:00:00:00:00", "--", "true"][..], "all zeros"),
        (&["run", "--network", "n1", "--mac-address", "02:aa:bb", "--", "true"][..], "invalid MAC address"),
        (&["run", "--network", "host", "--mac-address", "02:aa:bb:cc:dd:09", "--", "true"][..], "--mac-address"),
        (&["network", "connect", "--mac-address", "02:aa:bb:cc:dd:01", "n1", "peer"][..], "already connected"),
        (
            &["network", "connect", "--mac-address", "02:aa:bb:cc:dd:02", "n2", "peer"][..],
            "already in use on network n2",
        ),
    ] {
        let err = host.berth_err(args);
        assert!(err.contains(expected), "berth {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let (status, _) = host.api(
        "POST",
        "/v1/networks/n2/connect",
        Some(&serde_json::json!({"Container": "peer", "MacAddress": "02:aa:bb:cc:dd:02"})),
    );
    assert_eq!(status, 409);
    assert_eq!((host.berth_json(&["ps"]), host.links()), before, "a refused MAC changed something");
}

#[test]
fn foreground_run_returns_output_and_exit_code() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let out = host.berth(&["run", "--rm", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // The caller's environment reaches the command.
    let mut cmd = host.berth_command();
    cmd.args(["run", "--rm", "--", "sh", "-c", "echo $BERTH_TEST_VALUE"]);
    cmd.env("BERTH_TEST_VALUE", "carried");
    let out = cmd.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "carried");
    // --rm sandboxes are gone after the run.
    let sandboxes = host.berth_json(&["ps"]);
    assert_eq!(sandboxes.as_array().unwrap().len(), 0, "{sandboxes}");
}

#[test]
fn interrupt_reaches_the_foreground_command() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let mut cmd = host.berth_command();
    cmd.args([
        "run",
        "--name",
        "sleeper",
        "--",
        "sh",
        "-c",
        "trap 'echo got-int; exit 3' INT; sleep 30 >/dev/null & wait",
    ])
    .stdout(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The sandbox exists once the CLI has asked berthd for it; until then inspect fails.
    while host
        .berth(&["inspect", "sleeper"])
        .status
        .success()
        .then(|| host.inspect("sleeper")["State"]["Running"] == true)
        != Some(true)
    {
        assert!(std::time::Instant::now() < deadline, "sandbox process did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Ctrl-C: SIGINT to the berth CLI (nsenter's child), which forwards it to the command.
    host.sh_ok("pkill -INT -x berth");
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "got-int");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn stop_ends_processes_and_detached_rm_sandboxes_go_when_done() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["run", "-d", "--name", "long", "--", "sleep", "600"]);
    assert_eq!(host.inspect("long")["State"]["Running"], true);
    host.berth_ok(&["stop", "long"]);
    assert_eq!(host.inspect("long")["State"]["Running"], false);
    // Stopped, it can be removed without --force, and its endpoint goes with it.
    host.berth_ok(&["rm", "long"]);
    assert!(!host.links().iter().any(|l| l.starts_with("bth")), "{:?}", host.links());

    // -d --rm: berthd removes the sandbox once its main process has ended.
    host.berth_ok(&["run", "-d", "--rm", "--name", "brief", "--", "sleep", "0.3"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while host.berth_json(&["ps"]).as_array().unwrap().iter().any(|s| s["Name"] == "brief") {
        assert!(std::time::Instant::now() < deadline, "the --rm sandbox was not removed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!host.links().iter().any(|l| l.starts_with("bth")), "{:?}", host.links());
}

#[test]
fn add_host_entries_reach_etc_hosts_and_host_gateway_reaches_the_host() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", "10.12.0.0/24", "n1"]);
    // A server of the host itself, on every address.
    let _server = host.spawn("python3", &["-c", &py::tcp_echo_server("0.0.0.0", 9000)]);
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "n1",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--add-host",
        "db:192.0.2.7",
        "--add-host",
        "v6=[2001:db8::7]",
        "--",
        "sleep",
        "600",
    ]);
    let getent = |name: &str| {
        String::from_utf8_lossy(&host.exec("app", &format!("getent hosts {name}")).stdout).trim().to_owned()
    };
    // host-gateway is the default network's gateway, a host address: real traffic reaches the
    // host's server through it from a sandbox on another network.
    assert!(getent("host.docker.internal").starts_with("172.17.0.1 "), "{}", getent("host.docker.internal"));
    assert_eq!(host.python_in("app", &py::tcp_client("host.docker.internal", 9000, "to the host")), "echo:to the host");
    assert!(getent("db").starts_with("192.0.2.7 "), "{}", getent("db"));
    assert!(getent("v6").starts_with("2001:db8::7 "), "{}", getent("v6"));
    // The sandbox's own lines stay first.
    let hosts = String::from_utf8_lossy(&host.exec("app", "cat /etc/hosts").stdout).into_owned();
    let own = format!("{}\t", host.ip_of("app", "n1"));
    assert!(hosts.find(&own).unwrap() < hosts.find("172.17.0.1\thost.docker.internal").unwrap(), "{hosts}");
    let listed = serde_json::json!(["host.docker.internal:172.17.0.1", "db:192.0.2.7", "v6:2001:db8::7"]);
    assert_eq!(host.inspect("app")["ExtraHosts"], listed);
    let docker_view = host
        .sh_ok(&format!("curl -sS --unix-socket {} http://berthd/v1.47/containers/app/json", host.socket().display()));
    let docker_view: serde_json::Value = serde_json::from_str(&docker_view).unwrap();
    assert_eq!(docker_view["HostConfig"]["ExtraHosts"], listed, "{docker_view}");
    // Host mode: the host's file, then the entry.
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "onhost",
        "--network",
        "host",
        "--add-host",
        "extra:192.0.2.9",
        "--",
        "sleep",
        "600",
    ]);
    let hosts = String::from_utf8_lossy(&host.exec("onhost", "cat /etc/hosts").stdout).into_owned();
    let host_file = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(hosts.starts_with(host_file.trim_end()) && hosts.ends_with("192.0.2.9\textra\n"), "{hosts}");
    // Bad entries: one line, no sandbox.
    let before = host.berth_ok(&["ps"]);
    for (spec, says) in [
        ("nocolon", "NAME:IP is expected"),
        ("db:not-an-ip", "not an IP address"),
        ("bad name:192.0.2.1", "not a host name"),
    ] {
        let err = host.berth_err(&["run", "-d", "--add-host", spec, "--", "sleep", "1"]);
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{spec}: {err}");
    }
    let err =
        host.berth_err(&["run", "-d", "--network", "container:app", "--add-host", "x:192.0.2.1", "--", "sleep", "1"]);
    assert!(err.contains("cannot be used with network mode container:app"), "{err}");
    assert_eq!(host.berth_ok(&["ps"]), before);
}
