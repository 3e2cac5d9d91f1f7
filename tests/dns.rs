//! The embedded DNS, end to end: sandboxes on user-defined networks ask 127.0.0.11 (their
//! resolv.conf says so) with the real clients (glibc's `getent`, `dig`), and get each other's
//! names, aliases and hostnames per network, PTRs, and forwarded answers from an upstream that
//! the test runs on its LAN peer (192.0.2.53), over UDP and, after truncation, TCP. Internal
//! networks never forward; records follow connect/disconnect; restarts keep serving; bad input
//! from one sandbox does not stop answers.

use std::time::Duration;

use berth_integration::{privileged, py, wait_for, Background, LanPeer, TestHost};

/// Where the test's upstream answers (the host's resolv.conf names it).
const UPSTREAM: &str = "192.0.2.53";

/// `dig` in a sandbox with short timeouts, so a test that expects no answer fails fast.
fn dig(host: &TestHost, sandbox: &str, args: &str) -> String {
    let out = host.exec(sandbox, &format!("dig +time=2 +tries=1 {args}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer lines of `dig +short`, sorted.
fn short(host: &TestHost, sandbox: &str, args: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(host, sandbox, &format!("+short {args}")).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The status dig reports (NOERROR, NXDOMAIN, REFUSED, SERVFAIL...).
fn status(host: &TestHost, sandbox: &str, args: &str) -> String {
    let out = dig(host, sandbox, args);
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_owned()
}

fn run(host: &TestHost, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "infinity"]);
    host.berth_ok(&args);
}

fn ip6_of(host: &TestHost, sandbox: &str, network: &str) -> String {
    host.inspect(sandbox)["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"].as_str().unwrap().to_owned()
}

/// A host with a LAN peer serving DNS at [`UPSTREAM`]; returns the upstream's query log path.
fn host_with_upstream(daemon_args: &[&str]) -> (TestHost, LanPeer, Background, String) {
    let (host, peer) = TestHost::with_lan_peer(daemon_args);
    let log = host.dir().join("upstream.log").display().to_string();
    std::fs::write(&log, "").unwrap();
    peer.sh_ok(&format!("ip addr add {UPSTREAM}/24 dev eth0"));
    let server = peer.spawn_python(&py::dns_upstream(UPSTREAM, &log));
    let up = wait_for(Duration::from_secs(5), || {
        peer.sh(&format!("dig +time=1 +tries=1 +short @{UPSTREAM} up.example.test"))
            .stdout
            .starts_with(b"203.0.113.7")
            .then_some(())
    });
    assert!(up.is_some(), "the test's upstream DNS server did not start");
    std::fs::write(&log, "").unwrap();
    (host, peer, server, log)
}

#[test]
fn names_aliases_hostnames_and_ptr_resolve_per_network() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--ipv6", "--subnet", "10.31.0.0/24", "--subnet", "fd31::/64", "n1"]);
    run(
        &host,
        "alpha",
        &["--network", "n1", "--hostname", "alpha-host", "--network-alias", "web", "--network-alias", "Api"],
    );
    run(&host, "beta", &["--network", "n1"]);
    let alpha = host.ip_of("alpha", "n1");
    let alpha6 = ip6_of(&host, "alpha", "n1");
    let beta = host.ip_of("beta", "n1");

    // What a user sees: resolv.conf names berth's resolver, keeping the host's search and ndots.
    let resolv = String::from_utf8_lossy(&host.exec("beta", "cat /etc/resolv.conf").stdout).into_owned();
    assert_eq!(resolv, "nameserver 127.0.0.11\nsearch berth.test\noptions ndots:2\n");
    // glibc's resolver, as any program uses it: name, aliases (any case), hostname.
    for name in ["alpha", "web", "API", "alpha-host", "Alpha.n1"] {
        let out = host.exec("beta", &format!("getent ahostsv4 {name}"));
        assert!(out.status.success(), "getent {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&alpha),
            "{name} -> {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(short(&host, "alpha", "beta"), vec![beta.clone()]);
    assert_eq!(short(&host, "beta", "alpha AAAA"), vec![alpha6]);
    // The short id answers too, as in Docker.
    let id = host.inspect("alpha")["Id"].as_str().unwrap()[..12].to_owned();
    assert_eq!(short(&host, "beta", &id), vec![alpha.clone()]);
    // A local name with no address of the asked type is NODATA, not forwarded or NXDOMAIN.
    assert_eq!(status(&host, "beta", "beta MX"), "NOERROR");
    assert!(short(&host, "beta", "beta MX").is_empty());
    // Reverse lookups of both families.
    assert_eq!(short(&host, "beta", &format!("-x {alpha}")), vec!["alpha.".to_owned()]);
    let out = host.exec("beta", &format!("getent hosts {alpha}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("alpha"),
        "reverse via glibc: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An unknown address inside the network is NXDOMAIN, answered here (not asked upstream).
    assert_eq!(status(&host, "beta", "-x 10.31.0.200"), "NXDOMAIN");
    // Unknown names go upstream, which this host has none of: a quick failure, never a hang.
    assert_eq!(status(&host, "beta", "gamma"), "SERVFAIL");
    // Port 53 inside the sandbox stays free for the sandbox's own programs (berth's listener
    // sits elsewhere, reached through a DNAT).
    host.python_in(
        "beta",
        "import socket\nfor kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):\n  s=socket.socket(socket.AF_INET,kind)\n  s.bind(('0.0.0.0',53))\n",
    );
}

#[test]
fn names_are_scoped_to_the_networks_a_sandbox_shares() {
    if !privileged() {
        return;
    }
    let (host, _peer, _upstream, _log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    host.berth_ok(&["network", "create", "n2"]);
    run(&host, "one", &["--network", "n1"]);
    run(&host, "two", &["--network", "n2"]);
    run(&host, "both", &["--network", "n1"]);
    host.berth_ok(&["network", "connect", "--alias", "shared", "n2", "both"]);
    // n2 cannot see n1's names: the question goes upstream, which does not know it.
    assert_eq!(status(&host, "two", "one"), "NXDOMAIN");
    assert_eq!(status(&host, "one", "two"), "NXDOMAIN");
    // A sandbox on both networks is found from each with its address on the network asked from.
    assert_eq!(short(&host, "one", "both"), vec![host.ip_of("both", "n1")]);
    assert_eq!(short(&host, "two", "both"), vec![host.ip_of("both", "n2")]);
    // Aliases are per network: `shared` exists on n2 only.
    assert_eq!(short(&host, "two", "shared"), vec![host.ip_of("both", "n2")]);
    assert_eq!(status(&host, "one", "shared"), "NXDOMAIN");
    // The default network has no names: its sandboxes keep a copy of the host's resolv.conf.
    run(&host, "plain", &[]);
    let resolv = String::from_utf8_lossy(&host.exec("plain", "cat /etc/resolv.conf").stdout).into_owned();
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    // Aliases need a user-defined network.
    let err = host.berth_err(&["run", "-d", "--network-alias", "x", "--", "sleep", "1"]);
    assert!(err.contains("only on user-defined networks"), "{err}");
}

#[test]
fn other_names_are_forwarded_over_udp_and_tcp_after_truncation() {
    if !privileged() {
        return;
    }
    let (host, _peer, _upstream, log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    run(&host, "client", &["--network", "n1"]);
    // UDP, with the upstream's TTL kept.
    let answer = dig(&host, "client", "+noall +answer www.example.test");
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"1234"), "TTL of {answer:?}");
    assert_eq!(fields.last(), Some(&"203.0.113.7"), "{answer:?}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("udp www.example.test"));
    // Too big for UDP: the client sees TC, retries over TCP, and berth asks upstream over TCP.
    let truncated = dig(&host, "client", "+ignore +notcp big.example.test");
    assert!(truncated.contains(" tc"), "no TC flag: {truncated}");
    assert_eq!(short(&host, "client", "big.example.test").len(), 100);
    assert!(std::fs::read_to_string(&log).unwrap().contains("tcp big.example.test"));
    // glibc does the same on its own.
    let out = host.exec("client", "getent ahostsv4 big.example.test | grep -c STREAM");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100");
    // Asking over TCP from the start works too.
    assert_eq!(short(&host, "client", "+tcp www.example.test"), vec!["203.0.113.7".to_owned()]);
    // Upstream NXDOMAIN comes back as it is.
    assert_eq!(status(&host, "client", "nowhere.invalid"), "NXDOMAIN");
}

#[test]
fn internal_networks_never_forward() {
    if !privileged() {
        return;
    }
    let (host, _peer, _upstream, log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "--internal", "secret"]);
    run(&host, "inside", &["--network", "secret"]);
    run(&host, "neighbour", &["--network", "secret"]);
    assert_eq!(short(&host, "inside", "neighbour"), vec![host.ip_of("neighbour", "secret")]);
    assert_eq!(status(&host, "inside", "www.example.test"), "REFUSED");
    assert_eq!(status(&host, "inside", "+tcp www.example.test"), "REFUSED");
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains("www.example.test"),
        "an internal network's question reached the upstream"
    );
    // Once the sandbox also has a way out, it may ask upstream.
    host.berth_ok(&["network", "create", "open"]);
    host.berth_ok(&["network", "connect", "open", "inside"]);
    assert_eq!(short(&host, "inside", "www.example.test"), vec!["203.0.113.7".to_owned()]);
}

#[test]
fn records_follow_connect_disconnect_and_remove() {
    if !privileged() {
        return;
    }
    let (host, _peer, _upstream, _log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    host.berth_ok(&["network", "create", "n2"]);
    run(&host, "server", &["--network", "n1"]);
    run(&host, "visitor", &["--network", "n2"]);
    assert_eq!(status(&host, "visitor", "server"), "NXDOMAIN");
    host.berth_ok(&["network", "connect", "n1", "visitor"]);
    assert_eq!(short(&host, "visitor", "server"), vec![host.ip_of("server", "n1")]);
    // A sandbox that gets its first user-defined network late gets the resolver then.
    run(&host, "late", &[]);
    host.berth_ok(&["network", "connect", "--network-alias", "latecomer", "n1", "late"]);
    let resolv = String::from_utf8_lossy(&host.exec("late", "cat /etc/resolv.conf").stdout).into_owned();
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    assert_eq!(short(&host, "late", "server"), vec![host.ip_of("server", "n1")]);
    assert_eq!(short(&host, "server", "latecomer"), vec![host.ip_of("late", "n1")]);
    host.berth_ok(&["network", "disconnect", "n1", "visitor"]);
    assert_eq!(status(&host, "visitor", "server"), "NXDOMAIN");
    assert_eq!(status(&host, "server", "visitor"), "NXDOMAIN");
    host.berth_ok(&["rm", "-f", "late"]);
    assert_eq!(status(&host, "server", "latecomer"), "NXDOMAIN");
}

#[test]
fn restarts_keep_serving_and_upstreams_follow_resolv_conf() {
    if !privileged() {
        return;
    }
    let (mut host, _peer, _upstream, _log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    run(&host, "a", &["--network", "n1"]);
    run(&host, "b", &["--network", "n1", "--network-alias", "bee"]);
    let b = host.ip_of("b", "n1");
    let ports = host.inspect("a")["NetworkSettings"].clone();
    assert!(host.stop_daemon(), "berthd did not stop cleanly");
    host.start_daemon(&[]);
    assert_eq!(short(&host, "a", "bee"), vec![b.clone()]);
    host.kill_daemon();
    host.start_daemon(&[]);
    assert_eq!(short(&host, "a", "bee"), vec![b.clone()]);
    assert_eq!(short(&host, "a", "www.example.test"), vec!["203.0.113.7".to_owned()]);
    assert_eq!(host.inspect("a")["NetworkSettings"], ports);

    // A resolver on the host's loopback (as systemd-resolved's 127.0.0.53) answers the same
    // names with another address; the host's resolv.conf moves to it and berth follows without
    // a restart, reaching it from the host's side (a sandbox could not).
    let log2 = host.dir().join("upstream2.log").display().to_string();
    let loopback_upstream = py::dns_upstream("127.0.0.53", &log2)
        .replace("203.0.113.%d", "198.51.100.%d")
        .replace("'203.0.113.7'", "'198.51.100.7'");
    let _second = host.spawn("python3", &["-c", &loopback_upstream]);
    host.write_resolv_conf("nameserver 127.0.0.53\n");
    let moved = wait_for(Duration::from_secs(5), || {
        (short(&host, "a", "www.example.test") == vec!["198.51.100.7".to_owned()]).then_some(())
    });
    assert!(moved.is_some(), "berth still forwards to the old upstream");
    // `--dns` on one sandbox overrides the host's for that sandbox only.
    run(&host, "own", &["--network", "n1", "--dns", UPSTREAM]);
    assert_eq!(host.inspect("own")["Dns"], serde_json::json!([UPSTREAM]));
    let docker_view = host
        .sh_ok(&format!("curl -sS --unix-socket {} http://berthd/v1.47/containers/own/json", host.socket().display()));
    let docker_view: serde_json::Value = serde_json::from_str(&docker_view).unwrap();
    assert_eq!(docker_view["HostConfig"]["Dns"], serde_json::json!([UPSTREAM]), "Docker's inspect: {docker_view}");
    assert_eq!(short(&host, "own", "www.example.test"), vec!["203.0.113.7".to_owned()]);
    assert_eq!(short(&host, "a", "www.example.test"), vec!["198.51.100.7".to_owned()]);
    // berthd's own --dns overrides the host's resolv.conf.
    assert!(host.stop_daemon());
    host.start_daemon(&["--dns", UPSTREAM]);
    assert_eq!(short(&host, "a", "www.example.test"), vec!["203.0.113.7".to_owned()]);
}

#[test]
fn own_servers_search_domains_and_options_shape_a_sandboxs_resolv_conf() {
    if !privileged() {
        return;
    }
    let (mut host, _peer, _upstream, _log) = host_with_upstream(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    let resolv = |host: &TestHost, sandbox: &str| {
        String::from_utf8_lossy(&host.exec(sandbox, "cat /etc/resolv.conf").stdout).into_owned()
    };
    let getent = |sandbox: &str, name: &str| {
        String::from_utf8_lossy(&host.exec(sandbox, &format!("getent hosts {name}")).stdout).trim().to_owned()
    };
    // Default network (no embedded resolver): the sandbox's own servers, search domains and
    // options replace the host's, and glibc uses them: `www` is found as www.example.test.
    run(
        &host,
        "plain",
        &[
            "--dns",
            UPSTREAM,
            "--dns",
            "192.0.2.54",
            "--dns-search",
            "example.test",
            "--dns-opt",
            "ndots:1",
            "--dns-option",
            "timeout:1",
        ],
    );
    assert_eq!(
        resolv(&host, "plain"),
        format!("nameserver {UPSTREAM}\nnameserver 192.0.2.54\nsearch example.test\noptions ndots:1 timeout:1\n")
    );
    assert!(getent("plain", "www").starts_with("203.0.113.7"), "{}", getent("plain", "www"));
    // With the embedded resolver: 127.0.0.11, and the sandbox's search domains and options.
    run(&host, "named", &["--network", "n1", "--dns-search", "example.test", "--dns-option", "ndots:1"]);
    assert_eq!(resolv(&host, "named"), "nameserver 127.0.0.11\nsearch example.test\noptions ndots:1\n");
    assert!(getent("named", "www").starts_with("203.0.113.7"), "{}", getent("named", "www"));
    // `.` alone: no search domains, not even the host's; the host's options stay.
    run(&host, "nosearch", &["--network", "n1", "--dns-search", "."]);
    assert_eq!(resolv(&host, "nosearch"), "nameserver 127.0.0.11\noptions ndots:2\n");
    // Both APIs show them.
    let view = host.inspect("named");
    assert_eq!(
        (view["DnsSearch"].clone(), view["DnsOptions"].clone()),
        (serde_json::json!(["example.test"]), serde_json::json!(["ndots:1"]))
    );
    let docker_view = host.sh_ok(&format!(
        "curl -sS --unix-socket {} http://berthd/v1.47/containers/plain/json",
        host.socket().display()
    ));
    let docker_view: serde_json::Value = serde_json::from_str(&docker_view).unwrap();
    assert_eq!(docker_view["HostConfig"]["DnsSearch"], serde_json::json!(["example.test"]), "{docker_view}");
    assert_eq!(docker_view["HostConfig"]["DnsOptions"], serde_json::json!(["ndots:1", "timeout:1"]), "{docker_view}");
    // Bad values: one line each, and no sandbox made.
    let before = host.berth_ok(&["ps"]);
    for (args, says) in [
        (&["--dns-search", "bad_domain"][..], "invalid --dns-search domain"),
        (&["--dns-search=-lead.test"][..], "invalid --dns-search domain"),
        (&["--dns-search", ".", "--dns-search", "a.test"][..], "cannot be given with others"),
        (&["--dns-option", "ndots:1 rotate"][..], "invalid --dns-option"),
        (&["--dns-option", "ndots:1\nnameserver 198.51.100.1"][..], "invalid --dns-option"),
        (&["--network", "container:named", "--dns", UPSTREAM][..], "cannot be used with network mode container:named"),
    ] {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--", "sleep", "1"]);
        let err = host.berth_err(&full);
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    assert_eq!(host.berth_ok(&["ps"]), before);
    // The daemon's --dns is the default network's nameserver (the host's is another now).
    host.write_resolv_conf("nameserver 198.51.100.99\n");
    assert!(host.stop_daemon());
    host.start_daemon(&["--dns", UPSTREAM]);
    run(&host, "later", &[]);
    assert_eq!(resolv(&host, "later"), format!("nameserver {UPSTREAM}\n"));
    // A sandbox's own servers still win over the daemon's, and survive the restart.
    assert!(resolv(&host, "plain").starts_with(&format!("nameserver {UPSTREAM}\nnameserver 192.0.2.54\n")));
}

#[test]
fn bad_input_from_one_sandbox_does_not_stop_answers() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    run(&host, "good", &["--network", "n1"]);
    run(&host, "bad", &["--network", "n1"]);
    let good = host.ip_of("good", "n1");
    // Half a TCP query, then silence, held open in the background; plus many connections.
    let _stalled = Background::spawn(host.berth_command().args([
        "exec", "bad", "--", "python3", "-c",
        "import socket,time\nheld=[]\nfor i in range(100):\n  try:\n    c=socket.create_connection(('127.0.0.11',53),timeout=2)\n    c.sendall(b'\\x00\\x30\\x12')\n    held.append(c)\n  except OSError:\n    pass\ntime.sleep(60)\n",
    ]));
    // Garbage, truncated queries, a header-only query, an oversized datagram and a flood.
    host.python_in(
        "bad",
        "import socket,os\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
q=bytes.fromhex('123401000001000000000000')+b'\\x04good\\x00\\x00\\x01\\x00\\x01'\n\
for p in [b'', b'\\x00', q[:5], q[:12], q[:20], q+b'\\xff'*100, os.urandom(65000), b'\\xc0'*64]:\n  s.sendto(p,('127.0.0.11',53))\n\
for i in range(20000):\n  s.sendto(os.urandom(40) if i%2 else q[:17],('127.0.0.11',53))\n",
    );
    // A zero-length TCP message and a length larger than what follows.
    host.python_in(
        "bad",
        "import socket\nfor p in [b'\\x00\\x00', b'\\xff\\xff'+b'x'*10]:\n  c=socket.create_connection(('127.0.0.11',53),timeout=2)\n  c.sendall(p)\n  c.close()\n",
    );
    // Meanwhile both sandboxes still get answers, over UDP and TCP.
    assert_eq!(short(&host, "good", "bad"), vec![host.ip_of("bad", "n1")]);
    assert_eq!(short(&host, "bad", "good"), vec![good.clone()]);
    assert_eq!(short(&host, "good", "+tcp bad"), vec![host.ip_of("bad", "n1")]);
    // The sandbox that holds its own connection slots gets TCP back once its stalled clients
    // are dropped (after the idle timeout); UDP never stopped.
    let tcp_back =
        wait_for(Duration::from_secs(15), || (short(&host, "bad", "+tcp good") == vec![good.clone()]).then_some(()));
    assert!(tcp_back.is_some(), "the stalled TCP clients were never dropped");
    assert!(host.berth(&["version"]).status.success(), "berthd died");
}

#[test]
fn a_namespace_made_anew_on_restart_gets_its_resolver_back() {
    if !privileged() {
        return;
    }
    let mut host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "n1"]);
    // `a` runs nothing, so its namespace lives only through berth's pin.
    host.berth_ok(&["run", "-d", "--name", "a", "--network", "n1", "--", "true"]);
    run(&host, "b", &["--network", "n1", "--network-alias", "bee"]);
    let netns = host.inspect("a")["NetworkSettings"]["SandboxKey"].as_str().unwrap().to_owned();
    assert!(host.stop_daemon());
    // The namespace disappears while berthd is down; the next start makes it anew, with its
    // endpoint, its resolver listener and the redirect inside it.
    host.sh_ok(&format!("umount {netns} && rm {netns}"));
    host.start_daemon(&[]);
    assert!(host.daemon_log().contains("recreated its namespace"));
    assert_eq!(short(&host, "a", "bee"), vec![host.ip_of("b", "n1")]);
}
