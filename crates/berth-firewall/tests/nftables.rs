//! berth's table against the real kernel: idempotent apply, a thousand port mappings added one
//! at a time, other tables and the user hook left alone, self-healing after a flush, and change
//! notifications.
//!
//! Every test body runs in a fresh network namespace: the test re-runs its own binary under
//! `unshare --net` and the child runs the body, after checking it is not in the namespace the
//! test started in. Nothing here touches the machine's own namespace. Without root the tests
//! skip with a message.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_firewall::{select, watch_changes, Dnat, Firewall, FirewallKind, NetworkPolicy, RoutedPort, Ruleset};
use berth_types::{PortProtocol, PortRange};
use serde_json::Value;

use berth_testns::in_fresh_netns;

/// The ruleset shared with the unit tests of src/nft/render.rs.
mod example_ruleset {
    include!("support/example_ruleset.rs");
}
use example_ruleset::{dnat, example};

/// Runs an nft script in the current namespace, as a user would.
fn nft_script(script: &str) {
    let mut child = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().expect("run nft");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft -f - failed on:\n{script}");
}

fn nft_json(args: &[&str]) -> Value {
    let output = Command::new("nft").arg("-j").args(args).output().expect("run nft");
    assert!(output.status.success(), "nft -j {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("nft prints JSON")
}

/// A listing without handles and nft's version, elements sorted: equal for equal content.
fn normalized(mut listing: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("handle");
                if let Some(Value::Array(elements)) = map.get_mut("elem") {
                    elements.sort_by_key(|e| e.to_string());
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(list) => list.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if let Some(objects) = listing.get_mut("nftables").and_then(Value::as_array_mut) {
        objects.retain(|o| o.get("metainfo").is_none());
    }
    strip(&mut listing);
    listing
}

fn berth_table() -> Value {
    normalized(nft_json(&["list", "table", "inet", "berth"]))
}

/// Rules per chain and elements per set or map of berth's table.
fn counts() -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let listing = nft_json(&["list", "table", "inet", "berth"]);
    let (mut rules, mut elements) = (BTreeMap::new(), BTreeMap::new());
    for object in listing["nftables"].as_array().unwrap() {
        if let Some(rule) = object.get("rule") {
            *rules.entry(rule["chain"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        if let Some(set) = object.get("set").or_else(|| object.get("map")) {
            let count = set.get("elem").and_then(Value::as_array).map_or(0, Vec::len);
            elements.insert(set["name"].as_str().unwrap().to_owned(), count);
        }
    }
    (rules, elements)
}

fn nftables() -> Box<dyn Firewall> {
    select(FirewallKind::Nftables)
}

#[test]
fn applying_twice_leaves_one_copy_of_everything() {
    in_fresh_netns("applying_twice_leaves_one_copy_of_everything", || {
        let firewall = nftables();
        assert!(!firewall.matches(&example()).unwrap(), "no table yet");
        firewall.apply(&example()).unwrap();
        let first = berth_table();
        assert!(firewall.matches(&example()).unwrap());
        let (rules, elements) = counts();
        assert_eq!(rules["postrouting"], 4, "two rules per subnet of the one non-internal network");
        assert_eq!(rules["into-network"], 6);
        assert_eq!(elements["bridges"], 2);
        assert_eq!(elements["internal_bridges"], 1);
        assert_eq!(
            elements["dnat_port4"] + elements["dnat_addr4"] + elements["dnat_port6"] + elements["dnat_addr6"],
            4
        );
        let text = Command::new("nft").args(["list", "table", "inet", "berth"]).output().unwrap().stdout;
        let text = String::from_utf8(text).unwrap();
        for expected in [
            "0.0.0.0/0 . tcp . 8080 : 172.18.0.2 . 80",
            "192.0.2.1 . udp . 20000-20999 : 172.18.0.3",
            "::/0 . tcp . 9000 : fd00:18::2",
            "2001:db8::1 . sctp . 7000-7010 : fd00:18::3 . 70",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }

        firewall.apply(&example()).unwrap();
        assert_eq!(berth_table(), first, "a second apply changes nothing");
        assert_eq!(counts(), (rules, elements));

        // A smaller ruleset replaces the bigger one.
        firewall.apply(&Ruleset::default()).unwrap();
        let (rules, elements) = counts();
        assert!(!rules.contains_key("postrouting") && elements.values().all(|n| *n == 0), "{rules:?} {elements:?}");
        assert!(firewall.matches(&Ruleset::default()).unwrap());
        assert!(!firewall.matches(&example()).unwrap());
    });
}

#[test]
fn routed_networks_open_their_published_ports_and_skip_masquerade() {
    in_fresh_netns("routed_networks_open_their_published_ports_and_skip_masquerade", || {
        let firewall = nftables();
        let mut ruleset = example();
        ruleset.networks[0].unmasqueraded = vec!["fd00:18::/64".parse().unwrap()];
        ruleset.routed_ports = vec![
            RoutedPort { protocol: PortProtocol::Tcp, address: "fd00:18::2".parse().unwrap(), port: 9000 },
            RoutedPort { protocol: PortProtocol::Udp, address: "172.18.0.3".parse().unwrap(), port: 53 },
        ];
        firewall.apply(&ruleset).unwrap();
        assert!(firewall.matches(&ruleset).unwrap(), "the listing reads back what was applied");
        assert!(!firewall.matches(&example()).unwrap(), "routed ports and masquerade count");
        let (rules, elements) = counts();
        assert_eq!(rules["postrouting"], 3, "no masquerade for the routed IPv6 subnet, hairpin kept");
        assert_eq!((elements["routed_ports4"], elements["routed_ports6"]), (1, 1));
        let text =
            String::from_utf8(Command::new("nft").args(["list", "table", "inet", "berth"]).output().unwrap().stdout)
                .unwrap();
        for expected in
            ["fd00:18::2 . tcp . 9000", "172.18.0.3 . udp . 53", "oifname \"br-web\" ip6 saddr fd00:18::/64 masquerade"]
        {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("ip6 saddr fd00:18::/64 oifname != \"br-web\" masquerade"), "{text}");

        // Opened and closed one at a time, as publishing and unpublishing do.
        let extra = RoutedPort { protocol: PortProtocol::Sctp, address: "172.18.0.4".parse().unwrap(), port: 7000 };
        firewall.add_routed_ports(&[extra]).unwrap();
        ruleset.routed_ports.push(extra);
        assert!(firewall.matches(&ruleset).unwrap(), "an opened port is an element of the set");
        assert_eq!(counts().1["routed_ports4"], 2);
        let missing = RoutedPort { port: 7001, ..extra };
        assert!(firewall.remove_routed_ports(&[extra, missing]).is_err(), "closing a port not open fails");
        assert_eq!(counts().1["routed_ports4"], 2, "and closes none");
        firewall.remove_routed_ports(&[extra]).unwrap();
        ruleset.routed_ports.pop();
        assert!(firewall.matches(&ruleset).unwrap(), "a closed port is gone from the set");
    });
}

#[test]
fn a_thousand_mappings_added_one_at_a_time() {
    in_fresh_netns("a_thousand_mappings_added_one_at_a_time", || {
        let firewall = nftables();
        let mut ruleset = example();
        ruleset.dnats.clear();
        firewall.apply(&ruleset).unwrap();
        let mut took = Vec::new();
        for i in 0..1000u16 {
            let port = 10000 + i;
            // Even: the port is kept (dnat_addr4); odd: another target port (dnat_port4).
            let to = if i % 2 == 0 { port } else { 80 };
            let mapping = dnat(PortProtocol::Tcp, Some("192.0.2.1"), (port, port), "172.18.0.2", (to, to));
            let start = Instant::now();
            firewall.add_dnats(&[mapping]).unwrap();
            took.push(start.elapsed());
            ruleset.dnats.push(mapping);
        }
        let (_, elements) = counts();
        assert_eq!((elements["dnat_addr4"], elements["dnat_port4"]), (500, 500));
        assert!(firewall.matches(&ruleset).unwrap());
        let average = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
        let (first, last) = (average(&took[..100]), average(&took[900..]));
        eprintln!("add_dnats of one mapping: {first:?} with 0-99 present, {last:?} with 900-999 present");
        assert!(last < first * 4, "adding got slower with more mappings: {first:?} then {last:?}");

        // A batch with a mapping that exists fails whole: the new mapping in it is not added
        // either. (The kernel catches a new element whose first or last key lies in an existing
        // one, not every overlap: a wildcard over an existing single address is accepted.)
        let fresh = dnat(PortProtocol::Tcp, Some("192.0.2.1"), (30000, 30000), "172.18.0.2", (80, 80));
        let overlapping = dnat(PortProtocol::Tcp, Some("192.0.2.1"), (10000, 10000), "172.18.0.9", (10000, 10000));
        let error = firewall.add_dnats(&[fresh, overlapping]).unwrap_err().to_string();
        assert!(error.starts_with("cannot add 2 port mapping(s) to inet berth: nft failed: "), "{error}");
        assert!(error.contains("File exists (at `192.0.2.1 . tcp . 10000`)"), "{error}");
        assert!(firewall.matches(&ruleset).unwrap(), "nothing of the failed batch is left");

        // Half removed one at a time, the other half in one batch.
        for mapping in &ruleset.dnats[..500] {
            firewall.remove_dnats(std::slice::from_ref(mapping)).unwrap();
        }
        firewall.remove_dnats(&ruleset.dnats[500..]).unwrap();
        let (_, elements) = counts();
        assert_eq!((elements["dnat_addr4"], elements["dnat_port4"]), (0, 0));
        let error = firewall.remove_dnats(&[fresh]).unwrap_err().to_string();
        assert!(error.contains("No such file or directory (at `192.0.2.1 . tcp . 30000`)"), "{error}");
        ruleset.dnats.clear();
        assert!(firewall.matches(&ruleset).unwrap());
    });
}

#[test]
fn other_tables_and_the_user_hook_are_left_alone() {
    in_fresh_netns("other_tables_and_the_user_hook_are_left_alone", || {
        nft_script(
            "add table ip other\n\
             add chain ip other forward { type filter hook forward priority 10; policy accept; }\n\
             add rule ip other forward tcp dport 22 counter accept\n\
             add set ip other peers { type ipv4_addr; elements = { 192.0.2.7 } }\n",
        );
        let other = normalized(nft_json(&["list", "table", "ip", "other"]));
        let firewall = nftables();
        firewall.apply(&example()).unwrap();
        let user_rule = "ct status dnat meta l4proto tcp ct original proto-dst 8080 ip saddr != 192.0.2.0/24 drop";
        nft_script(&format!("add rule inet berth user-hook {user_rule}\n"));
        let hook = normalized(nft_json(&["list", "chain", "inet", "berth", "user-hook"]));
        firewall.apply(&example()).unwrap();
        firewall.add_dnats(&[dnat(PortProtocol::Udp, None, (53, 53), "172.18.0.4", (53, 53))]).unwrap();
        firewall.apply(&example()).unwrap();
        assert_eq!(normalized(nft_json(&["list", "table", "ip", "other"])), other, "another table was changed");
        assert_eq!(
            normalized(nft_json(&["list", "chain", "inet", "berth", "user-hook"])),
            hook,
            "the user hook was changed"
        );
        let text = String::from_utf8(
            Command::new("nft").args(["list", "chain", "inet", "berth", "user-hook"]).output().unwrap().stdout,
        )
        .unwrap();
        assert!(text.contains(user_rule), "{text}");
        assert!(firewall.matches(&example()).unwrap(), "the user's rules do not count against berth's");
    });
}

#[test]
fn a_flushed_or_tampered_table_no_longer_matches_until_applied() {
    in_fresh_netns("a_flushed_or_tampered_table_no_longer_matches_until_applied", || {
        let firewall = nftables();
        firewall.apply(&example()).unwrap();
        let original = berth_table();

        nft_script("flush ruleset\n");
        assert!(!firewall.matches(&example()).unwrap(), "the table is gone");
        firewall.apply(&example()).unwrap();
        assert!(firewall.matches(&example()).unwrap());
        assert_eq!(berth_table(), original);

        nft_script("delete element inet berth dnat_port4 { 0.0.0.0/0 . tcp . 8080 }\n");
        assert!(!firewall.matches(&example()).unwrap(), "a mapping is missing");
        firewall.apply(&example()).unwrap();
        nft_script("add element inet berth bridges { \"eth0\" }\n");
        assert!(!firewall.matches(&example()).unwrap(), "a set holds a stranger");
        firewall.apply(&example()).unwrap();
        nft_script("add rule inet berth forward accept\n");
        assert!(!firewall.matches(&example()).unwrap(), "a chain holds a stranger");
        nft_script("flush chain inet berth forward\ndelete chain inet berth user-hook\n");
        assert!(!firewall.matches(&example()).unwrap(), "the hook chain is gone");
        firewall.apply(&example()).unwrap();
        assert!(firewall.matches(&example()).unwrap());
        assert_eq!(berth_table(), original);
    });
}

#[test]
fn changes_by_others_are_notified() {
    in_fresh_netns("changes_by_others_are_notified", || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut changes = watch_changes().unwrap();
            nft_script("add table ip x\n");
            let change = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
            assert_eq!(change, Ok(Some(())), "no notification within 5 s of a new table");
            while changes.try_recv().is_ok() {}
            // berth's own writes are not reported: they would only trigger needless checks.
            tokio::task::spawn_blocking(|| nftables().apply(&example()).unwrap()).await.unwrap();
            let change = tokio::time::timeout(Duration::from_secs(1), changes.recv()).await;
            assert!(change.is_err(), "berth's own apply was reported as a foreign change");
            nft_script("flush chain inet berth forward\n");
            let change = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
            assert_eq!(change, Ok(Some(())), "no notification within 5 s of a flushed berth chain");
        });
    });
}

#[test]
fn watching_needs_a_runtime() {
    let error = watch_changes().unwrap_err().to_string();
    assert_eq!(error, "cannot watch nftables changes: watch_changes must be called within a tokio runtime");
}

/// A process alone in a fresh network namespace (`unshare --net sleep`), standing for a
/// sandbox or a LAN peer; killed on drop, with whatever was started in it.
struct Namespace {
    holder: Child,
    servers: Vec<Child>,
}

impl Namespace {
    fn new() -> Self {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        let ns = format!("/proc/{}/ns/net", holder.id());
        let ours = std::fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net").display().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&ns).map(|p| p.display().to_string()).unwrap_or_else(|_| ours.clone()) == ours {
            assert!(Instant::now() < deadline, "the namespace did not appear");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { holder, servers: Vec::new() }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.holder.id().to_string(), "-n", "--", program]);
        command
    }

    fn sh(&self, script: &str) {
        let status = self.command("sh").args(["-ec", script]).status().expect("run nsenter");
        assert!(status.success(), "failed in a namespace: {script}");
    }

    /// Runs a python script and returns what it printed.
    fn python(&self, script: &str) -> String {
        let output = self.command("python3").args(["-c", script]).output().expect("run python3");
        assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Plugs the namespace's `eth0` into `bridge` with `addresses` (v4 first), routed via the
    /// bridge's gateway addresses `gateways`.
    fn plug(&self, veth: &str, bridge: &str, addresses: &[&str], gateways: &[&str]) {
        sh(&format!(
            "ip link add {veth} type veth peer name eth0 netns {}; ip link set {veth} master {bridge} up",
            self.holder.id()
        ));
        let mut script = String::from("ip link set lo up; ip link set eth0 up\n");
        for address in addresses {
            script.push_str(&format!("ip addr add {address} dev eth0 nodad\n"));
        }
        for gateway in gateways {
            script.push_str(&format!("ip route add default via {gateway}\n"));
        }
        self.sh(&script);
    }

    /// Starts an echo server answering `CLIENT_ADDRESS|MESSAGE` on every TCP and UDP port of
    /// `ports`, v4 and v6.
    fn serve(&mut self, ports: &[u16]) {
        let script = format!(
            "import socket,threading\n\
             def reply(a,d): return a[0].removeprefix('::ffff:').encode()+b'|'+d\n\
             def tcp(p):\n  s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('::',p));s.listen()\n  \
               while True:\n    c,a=s.accept();c.sendall(reply(a,c.recv(100)));c.close()\n\
             def udp(p):\n  s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.bind(('::',p))\n  \
               while True:\n    d,a=s.recvfrom(100);s.sendto(reply(a,d),a)\n\
             for p in {ports:?}:\n  threading.Thread(target=tcp,args=(p,)).start();threading.Thread(target=udp,args=(p,)).start()\n"
        );
        self.servers.push(self.command("python3").args(["-c", &script]).spawn().expect("run python3"));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in self.servers.iter_mut().chain([&mut self.holder]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A shell script in the current (test) namespace.
fn sh(script: &str) {
    let status = Command::new("sh").args(["-ec", script]).status().expect("run sh");
    assert!(status.success(), "failed: {script}");
}

/// Python that prints the echo server's answer to `message` at `address`:`port`, trying for up
/// to `patience` seconds, or `FAILED ...`.
fn client(protocol: &str, address: &str, port: u16, message: &str, patience: f64) -> String {
    let exchange = match protocol {
        "tcp" => format!("c=socket.create_connection(('{address}',{port}),timeout=0.5);c.sendall(b'{message}');print(c.recv(100).decode())"),
        _ => format!(
            "c=socket.socket(socket.AF_INET6 if ':' in '{address}' else socket.AF_INET,socket.SOCK_DGRAM);c.settimeout(0.5);\
             c.sendto(b'{message}',('{address}',{port}));print(c.recv(100).decode())"
        ),
    };
    format!(
        "import socket,time\nend=time.time()+{patience}\nwhile True:\n  try:\n    {exchange}\n    break\n  \
         except OSError as e:\n    if time.time()>end:\n      print('FAILED',e);break\n    time.sleep(0.1)\n"
    )
}

/// Runs a python script in the current (test) namespace, as a host process, and returns what it
/// printed.
fn host(script: String) -> String {
    let output = Command::new("python3").args(["-c", &script]).output().expect("run python3");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A process started in the current (test) namespace, killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The packet paths of docs/firewall.md, with real traffic between namespaces: a LAN peer
/// (192.0.2.2, 2001:db8::2) in front of the host (192.0.2.1, 2001:db8::1), sandboxes on a
/// dual-stack network, an internal network and a third network.
#[test]
fn packets_take_the_documented_paths() {
    in_fresh_netns("packets_take_the_documented_paths", || {
        sh("ip link set lo up\n\
            sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n\
            for b in br-web br-db br-other; do ip link add $b type bridge; ip link set $b up; done\n\
            ip addr add 172.18.0.1/16 dev br-web; ip addr add fd00:18::1/64 dev br-web nodad\n\
            ip addr add 172.19.0.1/16 dev br-db; ip addr add 172.20.0.1/16 dev br-other");
        let mut peer = Namespace::new();
        sh(&format!(
            "ip link add lan0 type veth peer name eth0 netns {}; ip link set lan0 up\n\
             ip addr add 192.0.2.1/24 dev lan0; ip addr add 2001:db8::1/64 dev lan0 nodad\n\
             ip route add default via 192.0.2.2; ip route add default via 2001:db8::2",
            peer.holder.id()
        ));
        // The peer's own loopback stays down so it can send to 127.0.0.1 through the host, and it
        // accepts answers from 127.0.0.1, as an attacker on the LAN would (CVE-2020-8558).
        peer.sh("ip link set eth0 up; ip addr add 192.0.2.2/24 dev eth0; ip addr add 2001:db8::2/64 dev eth0 nodad\n\
             sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1\n\
             ip route add 127.0.0.0/8 via 192.0.2.1");
        let mut a = Namespace::new();
        a.plug("veth-a", "br-web", &["172.18.0.2/16", "fd00:18::2/64"], &["172.18.0.1", "fd00:18::1"]);
        let b = Namespace::new();
        b.plug("veth-b", "br-web", &["172.18.0.3/16"], &["172.18.0.1"]);
        let c = Namespace::new();
        c.plug("veth-c", "br-db", &["172.19.0.2/16"], &["172.19.0.1"]);
        let d = Namespace::new();
        d.plug("veth-d", "br-other", &["172.20.0.2/16"], &["172.20.0.1"]);
        a.serve(&[80, 53, 9101]);
        peer.serve(&[9000]);

        let network = |name: &str, bridge: &str, subnets: &[&str], internal| NetworkPolicy {
            name: name.into(),
            bridge: bridge.into(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            internal,
            unmasqueraded: vec![],
        };
        let ruleset = Ruleset {
            networks: vec![
                network("web", "br-web", &["172.18.0.0/16", "fd00:18::/64"], false),
                network("db", "br-db", &["172.19.0.0/16"], true),
                network("other", "br-other", &["172.20.0.0/16"], false),
            ],
            dnats: vec![
                dnat(PortProtocol::Tcp, None, (8080, 8080), "172.18.0.2", (80, 80)),
                dnat(PortProtocol::Tcp, None, (8080, 8080), "fd00:18::2", (80, 80)),
                dnat(PortProtocol::Tcp, Some("192.0.2.1"), (9100, 9102), "172.18.0.2", (9100, 9102)),
                dnat(PortProtocol::Udp, None, (5353, 5353), "172.18.0.2", (53, 53)),
            ],
            loopback_dnat: false,
            routed_ports: vec![],
        };
        nftables().apply(&ruleset).unwrap();

        // LAN → published port: DNAT in prerouting, the sandbox sees the client's address.
        assert_eq!(peer.python(&client("tcp", "192.0.2.1", 8080, "lan", 5.0)), "192.0.2.2|lan");
        assert_eq!(peer.python(&client("tcp", "2001:db8::1", 8080, "lan6", 5.0)), "2001:db8::2|lan6");
        assert_eq!(peer.python(&client("tcp", "192.0.2.1", 9101, "range", 5.0)), "192.0.2.2|range");
        assert_eq!(peer.python(&client("udp", "192.0.2.1", 5353, "dns", 5.0)), "192.0.2.2|dns");
        // A host process to the host's own address: DNAT in output.
        assert_eq!(host(client("tcp", "192.0.2.1", 8080, "self", 5.0)), "192.0.2.1|self");
        // Never from the LAN to the host's loopback address (host processes reaching 127.0.0.1
        // are the userland proxy's job).
        assert!(peer.python(&client("tcp", "127.0.0.1", 8080, "cve", 0.0)).starts_with("FAILED"));
        // Hairpin: a sandbox to a published port of its own network through the host's address.
        assert_eq!(b.python(&client("tcp", "192.0.2.1", 8080, "hairpin", 5.0)), "172.18.0.1|hairpin");
        // Outbound: masqueraded to the host's address.
        assert_eq!(a.python(&client("tcp", "192.0.2.2", 9000, "out", 5.0)), "192.0.2.1|out");
        assert_eq!(d.python(&client("udp", "192.0.2.2", 9000, "out", 5.0)), "192.0.2.1|out");
        // Another network reaches a published port, never a sandbox directly.
        assert!(d.python(&client("tcp", "192.0.2.1", 8080, "via-host", 5.0)).ends_with("|via-host"));
        assert!(d.python(&client("tcp", "172.18.0.2", 80, "direct", 0.0)).starts_with("FAILED"));
        // Nor does the LAN, even with a route to the subnet (no direct routing).
        peer.sh("ip route add 172.18.0.0/16 via 192.0.2.1");
        assert!(peer.python(&client("tcp", "172.18.0.2", 80, "direct", 0.0)).starts_with("FAILED"));
        // An internal network has no way out, even where the other side could answer.
        peer.sh("ip route add 172.19.0.0/16 via 192.0.2.1");
        assert!(c.python(&client("tcp", "192.0.2.2", 9000, "out", 0.0)).starts_with("FAILED"));
        // The user hook sees new connections before berth's verdicts.
        nft_script("add rule inet berth user-hook ct status dnat meta l4proto tcp ct original proto-dst 8080 ip saddr 192.0.2.0/24 drop\n");
        assert!(peer.python(&client("tcp", "192.0.2.1", 8080, "hooked", 0.0)).starts_with("FAILED"));
        assert_eq!(peer.python(&client("tcp", "192.0.2.1", 9101, "other-port", 5.0)), "192.0.2.2|other-port");
    });
}

/// Without the userland proxy (`loopback_dnat`): a host process reaches a sandbox's published port
/// on 127.0.0.1 through the kernel's DNAT once the bridge, and only the bridge, has
/// `route_localnet`; the guard keeps packets from the wire, from the LAN or from a sandbox, away
/// from 127.0.0.0/8 even where `route_localnet` would let them in. Topology: a LAN peer
/// (192.0.2.2) in front of the host (192.0.2.1), sandbox a (172.18.0.2) serving, sandbox b
/// (172.18.0.3) attacking the host's loopback, a host service on 127.0.0.1:7000.
#[test]
fn loopback_reaches_published_ports_without_the_proxy() {
    in_fresh_netns("loopback_reaches_published_ports_without_the_proxy", || {
        // Strict reverse-path filtering, as on many distributions: it changes nothing here.
        sh("ip link set lo up\n\
            sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1\n\
            ip link add br-web type bridge; ip link set br-web up; ip addr add 172.18.0.1/16 dev br-web");
        let peer = Namespace::new();
        sh(&format!(
            "ip link add lan0 type veth peer name eth0 netns {}; ip link set lan0 up\n\
             ip addr add 192.0.2.1/24 dev lan0; ip route add default via 192.0.2.2",
            peer.holder.id()
        ));
        // Attackers: no loopback of their own (down and without its address, or the kernel keeps
        // its local routes), a route to 127.0.0.0/8 via the host, answers from 127.0.0.1
        // accepted (see packets_take_the_documented_paths).
        let attacker = "ip link set lo down; ip addr flush dev lo\n\
                        sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1\n";
        peer.sh(&format!(
            "ip link set eth0 up; ip addr add 192.0.2.2/24 dev eth0\n{attacker}ip route add 127.0.0.0/8 via 192.0.2.1"
        ));
        let mut a = Namespace::new();
        a.plug("veth-a", "br-web", &["172.18.0.2/16"], &["172.18.0.1"]);
        a.serve(&[80, 53]);
        let b = Namespace::new();
        b.plug("veth-b", "br-web", &["172.18.0.3/16"], &["172.18.0.1"]);
        b.sh(&format!("{attacker}ip route add 127.0.0.0/8 via 172.18.0.1"));
        let service = "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                       s.bind(('127.0.0.1',7000));s.listen()\n\
                       while True:\n  c,a=s.accept();c.sendall(a[0].encode()+b'|'+c.recv(100));c.close()\n";
        let _service = Background(Command::new("python3").args(["-c", service]).spawn().expect("run python3"));

        let on = Ruleset {
            networks: vec![NetworkPolicy {
                name: "web".into(),
                bridge: "br-web".into(),
                subnets: vec!["172.18.0.0/16".parse().unwrap()],
                internal: false,
                unmasqueraded: vec![],
            }],
            dnats: vec![
                dnat(PortProtocol::Tcp, None, (8080, 8080), "172.18.0.2", (80, 80)),
                dnat(PortProtocol::Tcp, Some("127.0.0.1"), (8081, 8081), "172.18.0.2", (80, 80)),
                dnat(PortProtocol::Udp, None, (5353, 5353), "172.18.0.2", (53, 53)),
                dnat(PortProtocol::Tcp, Some("192.0.2.1"), (9000, 9000), "172.18.0.2", (80, 80)),
            ],
            loopback_dnat: true,
            routed_ports: vec![],
        };
        let off = Ruleset { loopback_dnat: false, ..on.clone() };
        let firewall = nftables();
        // Switching on over a table applied with it off: the same chains, a plain apply.
        firewall.apply(&off).unwrap();
        firewall.apply(&on).unwrap();
        assert!(firewall.matches(&on).unwrap());
        assert!(!firewall.matches(&off).unwrap(), "matches() tells the two settings apart");

        // Without route_localnet on the bridge the kernel will not route 127.0.0.1 out of it.
        assert!(host(client("tcp", "127.0.0.1", 8080, "no-sysctl", 0.0)).starts_with("FAILED"));
        sh("sysctl -qw net.ipv4.conf.br-web.route_localnet=1");
        let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet").unwrap();
        assert_eq!(all.trim(), "0", "the bridge's own route_localnet is enough");
        // Host processes to 127.0.0.0/8, masqueraded to the bridge's address.
        assert_eq!(host(client("tcp", "127.0.0.1", 8080, "lo", 5.0)), "172.18.0.1|lo");
        assert_eq!(host(client("tcp", "127.0.0.1", 8081, "lo-bound", 5.0)), "172.18.0.1|lo-bound");
        assert_eq!(host(client("udp", "127.0.0.1", 5353, "lo-udp", 5.0)), "172.18.0.1|lo-udp");
        assert_eq!(host(client("tcp", "127.0.0.2", 8080, "lo-2", 5.0)), "172.18.0.1|lo-2");
        // A mapping bound to another address is not on 127.0.0.1 (nothing listens there).
        assert!(host(client("tcp", "127.0.0.1", 9000, "elsewhere", 0.0)).starts_with("FAILED"));
        // The other paths are unchanged.
        assert_eq!(host(client("tcp", "192.0.2.1", 8080, "self", 5.0)), "192.0.2.1|self");
        assert_eq!(peer.python(&client("tcp", "192.0.2.1", 8080, "lan", 5.0)), "192.0.2.2|lan");

        // The guard: packets to 127.0.0.0/8 from the wire are dropped (no answer, not even a
        // reset), from the LAN and from a sandbox, whose bridge now has route_localnet.
        let dropped = |answer: String| {
            assert_eq!(answer, "FAILED timed out", "a packet to 127.0.0.0/8 from the wire was not dropped");
        };
        dropped(peer.python(&client("tcp", "127.0.0.1", 7000, "cve", 0.0)));
        dropped(peer.python(&client("tcp", "127.0.0.1", 8081, "cve", 0.0)));
        dropped(b.python(&client("tcp", "127.0.0.1", 7000, "cve", 0.0)));
        dropped(b.python(&client("tcp", "127.0.0.1", 8081, "cve", 0.0)));
        // Even with route_localnet on every interface (as kube-proxy sets it).
        sh("sysctl -qw net.ipv4.conf.all.route_localnet=1");
        dropped(peer.python(&client("tcp", "127.0.0.1", 7000, "cve", 0.0)));
        // It is the guard that stops them: without it both reach the host's loopback service.
        nft_script("flush chain inet berth localnet-guard\n");
        assert_eq!(b.python(&client("tcp", "127.0.0.1", 7000, "in", 5.0)), "172.18.0.3|in");
        assert_eq!(peer.python(&client("tcp", "127.0.0.1", 7000, "in", 5.0)), "192.0.2.2|in");
        assert!(!firewall.matches(&on).unwrap(), "a missing guard is a mismatch");
        firewall.apply(&on).unwrap();
        assert!(firewall.matches(&on).unwrap());
        dropped(b.python(&client("tcp", "127.0.0.1", 7000, "cve", 0.0)));

        // Off again: 127.0.0.1 is no longer DNATed (the proxy's job), the guard stays.
        firewall.apply(&off).unwrap();
        assert!(firewall.matches(&off).unwrap());
        assert!(host(client("tcp", "127.0.0.1", 8080, "off", 0.0)).contains("refused"));
        dropped(b.python(&client("tcp", "127.0.0.1", 7000, "cve", 0.0)));
    });
}
