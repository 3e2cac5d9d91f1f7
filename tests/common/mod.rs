//! The integration-test harness: a throwaway "host" per test, made of fresh network, mount and
//! pid namespaces (`unshare`), with a real berthd inside and helpers to run the CLI, shell
//! commands and sandbox processes there. Dropping a [`TestHost`] kills its pid namespace's init,
//! which takes every process inside with it, so the namespaces, mounts and links go too; then
//! its temporary directory is removed. Nothing here touches the machine's own namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace's target directory holding the built `berthd` and `berth`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> -> target/debug/<name>
    let path = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --workspace` first", path.display());
    path
}

/// Whether this process can make namespaces; tests skip (with a message) when it cannot, and
/// fail instead under CI or `BERTH_REQUIRE_ROOT=1` (berth_testns::can_run).
pub fn privileged() -> bool {
    berth_testns::can_run_as_root()
}

/// The throwaway host's /etc/resolv.conf: a resolver on the LAN peer's network.
pub const TEST_RESOLV_CONF: &str = "nameserver 192.0.2.53\nsearch berth.test\noptions ndots:2\n";

/// One throwaway host: its own net, mount and pid namespaces, a temp dir and maybe a berthd.
pub struct TestHost {
    holder: Child,
    init_pid: u32,
    dir: PathBuf,
    daemon: Option<Child>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestHost {
    /// A new host with `lo` up and berthd started with `daemon_args`.
    pub fn new(daemon_args: &[&str]) -> Self {
        let mut host = Self::without_daemon();
        host.start_daemon(daemon_args);
        host
    }

    /// A new host with `lo` up and no daemon yet.
    pub fn without_daemon() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "berth-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let holder = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "--",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let children = format!("/proc/{0}/task/{0}/children", holder.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        let init_pid = loop {
            if let Some(pid) =
                std::fs::read_to_string(&children).ok().and_then(|s| s.split_whitespace().next()?.parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the throwaway host did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        let host = Self { holder, init_pid, dir, daemon: None };
        host.sh("ip link set lo up");
        // The host's resolvers are a LAN address of the test's own (a peer may serve it), never
        // the machine's: berthd forwards names that are not berth's to them.
        let resolv_conf = host.dir.join("resolv.conf");
        std::fs::write(&resolv_conf, TEST_RESOLV_CONF).expect("write the test resolv.conf");
        host.sh_ok(&format!("mount --bind {} /etc/resolv.conf", resolv_conf.display()));
        host
    }

    /// A new host joined to a [`LanPeer`] (see [`TestHost::add_lan_peer`]), with berthd started
    /// after the topology exists, as on a real machine whose uplink is up before the daemon.
    pub fn with_lan_peer(daemon_args: &[&str]) -> (Self, LanPeer) {
        let mut host = Self::without_daemon();
        let peer = host.add_lan_peer();
        host.start_daemon(daemon_args);
        (host, peer)
    }

    /// Makes the single-host topology of TESTING.md: a LAN peer namespace inside this host's pid
    /// namespace (so it dies with the host), joined by a veth pair `lan0` (host, 192.0.2.1/24 and
    /// 2001:db8::1/64) ↔ `eth0` (peer, 192.0.2.2/24 and 2001:db8::2/64). The host's default
    /// routes go via the peer; the peer only knows its own /24 and /64, so answers from
    /// sandboxes reach it only through NAT.
    pub fn add_lan_peer(&self) -> LanPeer {
        let mut holder = self
            .command("unshare")
            .args(["--net", "--", "sh", "-c", "echo $$; exec sleep infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the LAN peer namespace");
        // The shell prints its pid (as seen in the host) once it runs in its new namespace.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line)
            .expect("the LAN peer's pid");
        let pid: u32 = line.trim().parse().unwrap_or_else(|_| panic!("the LAN peer printed {line:?}, not its pid"));
        let peer = LanPeer { host_init: self.init_pid, pid, holder };
        self.sh_ok(&format!(
            "ip link add lan0 type veth peer name eth0 netns {pid} && \
             ip addr add 192.0.2.1/24 dev lan0 && \
             ip -6 addr add 2001:db8::1/64 dev lan0 nodad && \
             ip link set lan0 up && \
             ip route add default via 192.0.2.2 dev lan0 && \
             ip -6 route add default via 2001:db8::2 dev lan0"
        ));
        peer.sh_ok(
            "ip link set lo up && ip addr add 192.0.2.2/24 dev eth0 && \
             ip -6 addr add 2001:db8::2/64 dev eth0 nodad && ip link set eth0 up",
        );
        peer
    }

    /// Starts `program` in the host's namespaces in the background; the program (nsenter's
    /// child) is killed when the returned guard is dropped.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Background {
        Background::spawn(self.command(program).args(args))
    }

    /// `nft -j list table inet berth` parsed (panics when the table does not exist).
    pub fn berth_table(&self) -> Value {
        serde_json::from_str(&self.sh_ok("nft -j list table inet berth")).expect("nft json")
    }

    /// Like [`TestHost::berth_table`] but None when the table does not exist.
    pub fn try_berth_table(&self) -> Option<Value> {
        let out = self.sh("nft -j list table inet berth");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("nft json"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the content of the host's /etc/resolv.conf (a file of the test, bind-mounted).
    pub fn write_resolv_conf(&self, text: &str) {
        std::fs::write(self.dir.join("resolv.conf"), text).expect("write the test resolv.conf");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("berth.sock")
    }

    /// A command that runs inside this host's namespaces.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.init_pid.to_string()).args(["-n", "-m", "-p", "--"]).arg(program);
        cmd
    }

    /// Starts berthd with this host's roots and socket, and waits until it answers.
    pub fn start_daemon(&mut self, extra_args: &[&str]) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("berthd.log")).expect("log file");
        let child = self
            .command(binary("berthd"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("--socket")
            .arg(self.socket())
            .args(["--log-level", "debug"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berthd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.berth(&["version"]).status.success() {
            if Instant::now() > deadline {
                panic!("berthd did not come up; log:\n{}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }

    /// Sends SIGTERM to berthd and waits for it; returns whether it exited cleanly.
    pub fn stop_daemon(&mut self) -> bool {
        self.end_daemon(nix::sys::signal::Signal::SIGTERM)
    }

    /// Kills berthd with SIGKILL, mid-whatever it was doing.
    pub fn kill_daemon(&mut self) {
        self.end_daemon(nix::sys::signal::Signal::SIGKILL);
    }

    fn end_daemon(&mut self, signal: nix::sys::signal::Signal) -> bool {
        let mut nsenter = self.daemon.take().expect("a daemon is running");
        // nsenter forked berthd as its only child; signal that one.
        let berthd = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nsenter.id()))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok())
            .expect("berthd pid");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(berthd), signal);
        nsenter.wait().expect("wait for berthd").success()
    }

    /// The CLI as a command inside the host, pointed at its daemon.
    pub fn berth_command(&self) -> Command {
        let mut cmd = self.command(binary("berth"));
        cmd.arg("--socket").arg(self.socket());
        cmd
    }

    /// Runs the CLI inside the host against its daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_command().args(args).stdin(Stdio::null()).output().expect("run berth")
    }

    /// Runs the CLI and returns its stdout, failing the test with stderr if it failed.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI expecting failure; returns its stderr.
    pub fn berth_err(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `berth --format json ARGS` parsed.
    pub fn berth_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--format", "json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.berth_ok(&full)).expect("json output")
    }

    /// One request to berthd's API with curl from inside the host: the status and the body
    /// (parsed JSON, or Null when empty). `body` is sent as JSON when given.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut cmd = self.command("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--unix-socket"]).arg(self.socket());
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", &body.to_string()]);
        }
        let out = cmd.arg(format!("http://berthd{path}")).stdin(Stdio::null()).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) =
            text.rsplit_once('\n').unwrap_or_else(|| panic!("curl {method} {path}: {text:?} {:?}", out.stderr));
        let status = status.trim().parse().unwrap_or_else(|_| panic!("curl {method} {path}: no status in {text:?}"));
        let body = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| {
                panic!("{method} {path} answered {status} with a body that is not JSON ({e}): {body:?}")
            })
        };
        (status, body)
    }

    /// Runs a shell script in the host namespace; returns its output.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh").args(["-c", script]).stdin(Stdio::null()).output().expect("run sh")
    }

    /// Runs a shell script in the host namespace, failing the test if it fails; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell script inside a sandbox (`berth exec`); returns the output.
    pub fn exec(&self, sandbox: &str, script: &str) -> Output {
        self.berth(&["exec", sandbox, "--", "sh", "-c", script])
    }

    /// `berth run -d --name NAME --network NETWORK [-p SPEC]... -- python3 -c SCRIPT`.
    pub fn serve(&self, name: &str, network: &str, publish: &[&str], script: &str) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        for spec in publish {
            args.extend_from_slice(&["-p", spec]);
        }
        args.extend_from_slice(&["--", "python3", "-c", script]);
        self.berth_ok(&args);
    }

    /// Runs a python script inside a sandbox (`berth exec`), failing the test if it fails;
    /// returns its trimmed stdout.
    pub fn python_in(&self, sandbox: &str, script: &str) -> String {
        let out = self.berth(&["exec", sandbox, "--", "python3", "-c", script]);
        assert!(out.status.success(), "python in {sandbox} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The inspect document of one sandbox.
    pub fn inspect(&self, sandbox: &str) -> Value {
        self.berth_json(&["inspect", sandbox])[0].clone()
    }

    /// A sandbox's IPv4 address on `network`.
    pub fn ip_of(&self, sandbox: &str, network: &str) -> String {
        self.inspect(sandbox)["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .expect("an IPAddress")
            .to_owned()
    }

    /// Link names in the host namespace.
    pub fn links(&self) -> Vec<String> {
        self.links_in("/proc/self/ns/net")
    }

    /// Link names in the namespace at `netns` (a path as seen from the host), without the ifb
    /// devices the kernel may add to every new namespace.
    pub fn links_in(&self, netns: &str) -> Vec<String> {
        self.sh_ok(&format!("nsenter --net={netns} ip -o link show | awk -F': ' '{{print $2}}' | sed 's/@.*//'"))
            .lines()
            .filter(|l| !l.starts_with("ifb"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Killing the pid namespace's init kills every process in it (berthd, sandboxes); the
        // namespaces and their mounts and links go with the last of them.
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init_pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = self.holder.wait();
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.wait();
        }
        if std::thread::panicking() {
            eprintln!("berthd log of the failed test:\n{}", self.daemon_log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway user account, for rootless mode: made with useradd (which on Debian also gives it
/// ranges in /etc/subuid and /etc/subgid), removed with its home and ranges when dropped.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn new() -> Self {
        let name = format!("berth{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let made =
            Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).output().expect("useradd");
        assert!(made.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&made.stderr));
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        Self { name, uid, gid }
    }
}

impl Default for TestUser {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Its processes die with the throwaway host that ran them (dropped first); userdel
        // refuses while the last of them are still exiting.
        let removed = wait_for(Duration::from_secs(5), || {
            let out = Command::new("userdel").args(["--remove", &self.name]).output().ok()?;
            out.status.success().then_some(())
        });
        if removed.is_none() {
            eprintln!("cannot remove the test user {}", self.name);
        }
    }
}

/// A LAN peer: a process in a network namespace of its own, inside a [`TestHost`]'s pid
/// namespace, joined to the host by the veth pair `lan0` ↔ `eth0` (see
/// [`TestHost::add_lan_peer`]). It holds no borrow of the host, so the host stays free to
/// restart its daemon; it dies with the host, or earlier when dropped.
pub struct LanPeer {
    host_init: u32,
    /// The peer's process as seen inside the host's pid namespace.
    pid: u32,
    /// The nsenter (in the machine's pid namespace) whose only child is the peer's process.
    holder: Child,
}

/// The peer's addresses, as the tests name them.
pub const HOST_LAN_IP: &str = "192.0.2.1";
pub const PEER_LAN_IP: &str = "192.0.2.2";
pub const HOST_LAN_IP6: &str = "2001:db8::1";
pub const PEER_LAN_IP6: &str = "2001:db8::2";

impl LanPeer {
    /// The CVE-2020-8558 check: crafted datagrams from this peer to 127.0.0.1:`loopback_port`
    /// (routed to the host's MAC, header kept) must not reach the sandbox, while the same
    /// crafting to the host's LAN address on `control_port` does (or the negative proves
    /// nothing). `read_log` returns what the sandbox's UDP server logged; the final log is
    /// returned for further checks.
    pub fn assert_crafted_loopback_dropped(
        &self,
        loopback_port: u16,
        control_port: u16,
        read_log: impl Fn() -> String,
    ) -> String {
        let crafted = py::raw_udp(PEER_LAN_IP, "127.0.0.1", loopback_port, HOST_LAN_IP, "to-loopback", 5);
        let control = py::raw_udp(PEER_LAN_IP, HOST_LAN_IP, control_port, HOST_LAN_IP, "control", 1);
        self.python_ok(&crafted);
        let arrived = wait_for(Duration::from_secs(5), || {
            self.python_ok(&control);
            wait_for(Duration::from_millis(200), || read_log().contains("control").then_some(()))
        });
        assert!(
            arrived.is_some(),
            "the control datagram to {HOST_LAN_IP}:{control_port} never arrived; log: {:?}",
            read_log()
        );
        // A little longer for stragglers, then nothing addressed to 127.0.0.1 may have arrived.
        self.python_ok(&crafted);
        std::thread::sleep(Duration::from_millis(500));
        let received = read_log();
        assert!(
            !received.contains("to-loopback"),
            "a datagram from the LAN to 127.0.0.1:{loopback_port} reached the sandbox: {received:?}"
        );
        received
    }
    /// The peer's namespace file, as seen from inside the host (`/proc/PID/ns/net`).
    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    /// A command that runs in the peer's network namespace (and the host's mount and pid
    /// namespaces).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.host_init.to_string()).args(["-m", "-p", "--", "nsenter", "-t"]);
        cmd.arg(self.pid.to_string()).args(["-n", "--"]).arg(program);
        cmd
    }

    /// Runs a shell script in the peer; returns its output.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh").args(["-c", script]).stdin(Stdio::null()).output().expect("run sh in the peer")
    }

    /// Runs a shell script in the peer, failing the test if it fails; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script:?} in the LAN peer failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a python script in the peer; returns its output.
    pub fn python(&self, script: &str) -> Output {
        self.command("python3").args(["-c", script]).stdin(Stdio::null()).output().expect("run python3 in the peer")
    }

    /// Runs a python script in the peer, failing the test if it fails; returns stdout, trimmed.
    pub fn python_ok(&self, script: &str) -> String {
        let out = self.python(script);
        assert!(
            out.status.success(),
            "python in the LAN peer failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a python script in the peer in the background, stdout to null (use
    /// [`LanPeer::command`] with [`Background::from_child`] to read it).
    pub fn spawn_python(&self, script: &str) -> Background {
        Background::spawn(self.command("python3").args(["-c", script]).stdout(Stdio::null()))
    }
}

impl Drop for LanPeer {
    fn drop(&mut self) {
        kill_children_of(self.holder.id());
        let _ = self.holder.wait();
    }
}

/// SIGKILLs the children of `pid` (nsenter's one child: the program it ran in the namespaces).
fn kill_children_of(pid: u32) {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A program started through nsenter in the background: dropping the guard kills the program
/// (nsenter's child; killing nsenter alone would leave it running) and reaps nsenter.
pub struct Background {
    child: Child,
}

impl Background {
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd.stdin(Stdio::null()).spawn().expect("start a background process");
        Self { child }
    }

    /// Wraps a child the caller set up itself (piped stdin, say).
    pub fn from_child(child: Child) -> Self {
        Self { child }
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_children_of(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nftables JSON helpers: comparing listings and counting map elements.
pub mod nft {
    use std::collections::BTreeMap;

    use serde_json::Value;

    /// A listing with what changes on its own taken out: `handle`s, set elements' `expires`,
    /// counters' values, and the `metainfo` header (nft's version).
    pub fn normalized(listing: &Value) -> Value {
        fn strip(value: &Value) -> Value {
            match value {
                Value::Object(map) => {
                    let mut out = serde_json::Map::new();
                    for (key, v) in map {
                        match key.as_str() {
                            "handle" | "expires" | "metainfo" => {}
                            "counter" if v.is_object() && v.get("packets").is_some() => {
                                out.insert(key.clone(), serde_json::json!({"packets": 0, "bytes": 0}));
                            }
                            "packets" | "bytes" => {
                                out.insert(key.clone(), Value::from(0));
                            }
                            _ => {
                                out.insert(key.clone(), strip(v));
                            }
                        }
                    }
                    Value::Object(out)
                }
                Value::Array(items) => Value::Array(
                    items.iter().map(strip).filter(|v| !matches!(v, Value::Object(m) if m.is_empty())).collect(),
                ),
                other => other.clone(),
            }
        }
        strip(listing)
    }

    /// The objects of a listing (`{"nftables": [{"table": ..}, {"chain": ..}, ..]}`) of one kind.
    pub fn objects<'a>(listing: &'a Value, kind: &str) -> Vec<&'a Value> {
        listing["nftables"]
            .as_array()
            .map(|items| items.iter().filter_map(|item| item.get(kind)).collect())
            .unwrap_or_default()
    }

    /// Element count of every map and set in a listing, by name ("map NAME" / "set NAME").
    pub fn element_counts(listing: &Value) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for kind in ["map", "set"] {
            for object in objects(listing, kind) {
                let name = object["name"].as_str().unwrap_or("?");
                let count = object.get("elem").and_then(Value::as_array).map_or(0, Vec::len);
                counts.insert(format!("{kind} {name}"), count);
            }
        }
        counts
    }

    /// The rules of a listing as (chain, normalized expression) pairs, in listing order.
    pub fn rules(listing: &Value) -> Vec<(String, Value)> {
        objects(listing, "rule")
            .into_iter()
            .map(|rule| (rule["chain"].as_str().unwrap_or("?").to_owned(), normalized(&rule["expr"])))
            .collect()
    }

    /// Rules that appear more than once in the same chain.
    pub fn duplicate_rules(listing: &Value) -> Vec<(String, Value)> {
        let all = rules(listing);
        let mut seen = Vec::new();
        let mut duplicates = Vec::new();
        for rule in all {
            if seen.contains(&rule) {
                if !duplicates.contains(&rule) {
                    duplicates.push(rule);
                }
            } else {
                seen.push(rule);
            }
        }
        duplicates
    }
}

/// Python one-liners for servers and clients inside sandboxes (python3 is a test dependency).
pub mod py {
    /// A fixed-answer DNS server on `addr`:53, UDP and TCP, logging `udp NAME` / `tcp NAME` per
    /// query to `log`. Names under example.test answer A 203.0.113.7 with TTL 1234, except
    /// big.example.test: 100 A records, more than fits a UDP answer, which then comes back empty
    /// with TC set. Other names are NXDOMAIN.
    pub fn dns_upstream(addr: &str, log: &str) -> String {
        format!(
            r#"import socket,struct,threading
def name_end(d):
  i=12
  while d[i]: i+=1+d[i]
  return i+1
def answer(d,transport):
  end=name_end(d)
  qtype=struct.unpack('!H',d[end:end+2])[0]
  labels=[];i=12
  while d[i]:
    labels.append(d[i+1:i+1+d[i]].decode()); i+=1+d[i]
  name='.'.join(labels).lower()
  open('{log}','a').write(transport+' '+name+'\n')
  question=d[12:end+4]
  if not name.endswith('example.test'):
    return d[:2]+struct.pack('!HHHHH',0x8183,1,0,0,0)+question
  addrs=['203.0.113.%d'%n for n in range(1,101)] if name=='big.example.test' else ['203.0.113.7']
  if qtype!=1: addrs=[]
  rrs=b''.join(b'\xc0\x0c'+struct.pack('!HHIH',1,1,1234,4)+socket.inet_aton(a) for a in addrs)
  if transport=='udp' and 12+len(question)+len(rrs)>512:
    return d[:2]+struct.pack('!HHHHH',0x8380,1,0,0,0)+question
  return d[:2]+struct.pack('!HHHHH',0x8180,1,len(addrs),0,0)+question+rrs
def serve_udp():
  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('{addr}',53))
  while True:
    d,a=s.recvfrom(4096)
    try: s.sendto(answer(d,'udp'),a)
    except Exception: pass
def serve_tcp_client(c):
  with c:
    while True:
      n=c.recv(2)
      if len(n)<2: return
      want=struct.unpack('!H',n)[0];d=b''
      while len(d)<want:
        more=c.recv(want-len(d))
        if not more: return
        d+=more
      r=answer(d,'tcp');c.sendall(struct.pack('!H',len(r))+r)
t=socket.socket();t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);t.bind(('{addr}',53));t.listen(16)
threading.Thread(target=serve_udp,daemon=True).start()
while True:
  c,_=t.accept();threading.Thread(target=serve_tcp_client,args=(c,),daemon=True).start()
"#
        )
    }

    /// A TCP server on `addr:port` that answers each connection with "echo:" + what it read.
    pub fn tcp_echo_server(addr: &str, port: u16) -> String {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET)\n\
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(16)\n\
while True:\n  c,_=s.accept()\n  d=c.recv(1024)\n  c.sendall(b'echo:'+d)\n  c.close()\n"
        )
    }

    /// A UDP server on `addr:port` that answers each datagram with "echo:" + its payload.
    pub fn udp_echo_server(addr: &str, port: u16) -> String {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind(('{addr}',{port}))\nwhile True:\n  d,a=s.recvfrom(2048)\n  s.sendto(b'echo:'+d,a)\n"
        )
    }

    const TCP_CLIENT: &str = r#"
import socket, time
for attempt in range(50):
    try:
        c = socket.create_connection(('__ADDR__', __PORT__), timeout=2)
        c.sendall(b'__MESSAGE__')
        d = c.recv(1024)
        c.close()
        if d:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    raise SystemExit('no answer')
print(d.decode())
"#;

    /// A TCP client that sends `message` to `addr:port` and prints the answer. The whole exchange
    /// is retried for a few seconds: through a userland proxy the connect succeeds before the
    /// sandbox's server listens, and the proxy then resets the connection.
    pub fn tcp_client(addr: &str, port: u16, message: &str) -> String {
        fill(
            TCP_CLIENT,
            &[("__ADDR__", addr.to_owned()), ("__PORT__", port.to_string()), ("__MESSAGE__", message.to_owned())],
        )
    }

    /// A UDP client that sends `message` to `addr:port` (retrying) and prints the answer. Its
    /// socket is connected, as resolvers' are: a reply from any other address is not taken.
    pub fn udp_client(addr: &str, port: u16, message: &str) -> String {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(0.3)\n\
s.connect(('{addr}',{port}))\nfor i in range(20):\n  s.send(b'{message}')\n  try:\n    print(s.recv(2048).decode())\n    break\n  except OSError:\n    pass\nelse:\n  raise SystemExit('no answer')\n"
        )
    }
    fn fill(template: &str, pairs: &[(&str, String)]) -> String {
        let mut script = template.to_owned();
        for (key, value) in pairs {
            script = script.replace(key, value);
        }
        script
    }

    fn port_list(ports: &[u16]) -> String {
        format!("[{}]", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
    }

    const ADDR_ECHO_SERVER: &str = r#"
import socket, threading
ADDR = '__ADDR__'
fam = socket.AF_INET6 if ':' in ADDR else socket.AF_INET
def peer(a):
    h = a[0]
    return h[7:] if h.startswith('::ffff:') else h
def sock(kind, port):
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((ADDR, port))
    return s
def conn(c, a):
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(peer(a).encode() + b'|' + d)
    except OSError:
        pass
    c.close()
def tcp(port):
    s = sock(socket.SOCK_STREAM, port)
    s.listen(64)
    while True:
        c, a = s.accept()
        threading.Thread(target=conn, args=(c, a), daemon=True).start()
def udp(port):
    s = sock(socket.SOCK_DGRAM, port)
    while True:
        d, a = s.recvfrom(4096)
        s.sendto(peer(a).encode() + b'|' + d, a)
threads = [threading.Thread(target=f, args=(p,), daemon=True) for p in __PORTS__ for f in (tcp, udp)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"#;

    /// A server on each of `ports` of `addr`, TCP and UDP, that answers every message (each
    /// recv of a TCP connection, which it keeps open, and each datagram) with
    /// "PEER|" + the message, PEER being the source address it saw (v4-mapped addresses shown
    /// as plain IPv4). On "::" it takes both families.
    pub fn addr_echo_server(addr: &str, ports: &[u16]) -> String {
        fill(ADDR_ECHO_SERVER, &[("__ADDR__", addr.to_owned()), ("__PORTS__", port_list(ports))])
    }

    const UDP_LOG_SERVER: &str = r#"
import socket, select
socks = []
for p in __PORTS__:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', p))
    socks.append((s, p))
out = open('__PATH__', 'a')
while True:
    ready, _, _ = select.select([s for s, _ in socks], [], [])
    for s, p in socks:
        if s in ready:
            d, a = s.recvfrom(4096)
            out.write('%d %s:%d %s\n' % (p, a[0], a[1], d.decode(errors='replace')))
            out.flush()
"#;

    /// A UDP server on each of `ports` (IPv4, all addresses) that appends one line per datagram
    /// to `path`: "PORT SRCIP:SRCPORT PAYLOAD". It answers nothing.
    pub fn udp_log_server(ports: &[u16], path: &str) -> String {
        fill(UDP_LOG_SERVER, &[("__PORTS__", port_list(ports)), ("__PATH__", path.to_owned())])
    }

    const TCP_PROBE: &str = r#"
import socket
try:
    c = socket.create_connection(('__ADDR__', __PORT__), timeout=__TIMEOUT__)
    c.settimeout(__TIMEOUT__)
    c.sendall(b'__MESSAGE__')
    print(c.recv(4096).decode())
except OSError as e:
    print('FAILED: %r' % e)
"#;

    /// One TCP attempt (no retries): prints the answer, or "FAILED: ..." when the connection or
    /// the answer did not come within `timeout` seconds. Exits 0 either way.
    pub fn tcp_probe(addr: &str, port: u16, message: &str, timeout: f64) -> String {
        fill(
            TCP_PROBE,
            &[
                ("__ADDR__", addr.to_owned()),
                ("__PORT__", port.to_string()),
                ("__TIMEOUT__", timeout.to_string()),
                ("__MESSAGE__", message.to_owned()),
            ],
        )
    }

    const UDP_PROBE: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET6 if ':' in '__ADDR__' else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
deadline = time.time() + __TIMEOUT__
answer = None
while answer is None and time.time() < deadline:
    try:
        s.sendto(b'__MESSAGE__', ('__ADDR__', __PORT__))
        answer = s.recv(4096).decode()
    except OSError:
        time.sleep(0.05)
print(answer if answer is not None else 'FAILED: no answer')
"#;

    /// Sends `message` to `addr:port` over UDP every 0.2 s for up to `timeout` seconds; prints
    /// the first answer or "FAILED: no answer". Exits 0 either way.
    pub fn udp_probe(addr: &str, port: u16, message: &str, timeout: f64) -> String {
        fill(
            UDP_PROBE,
            &[
                ("__ADDR__", addr.to_owned()),
                ("__PORT__", port.to_string()),
                ("__TIMEOUT__", timeout.to_string()),
                ("__MESSAGE__", message.to_owned()),
            ],
        )
    }

    const UDP_STREAM: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', __SPORT__))
i = 0
while True:
    try:
        s.sendto(b'n%d' % i, ('__ADDR__', __PORT__))
    except OSError:
        pass
    i += 1
    time.sleep(__INTERVAL__)
"#;

    /// Sends a datagram "nI" (I counting up) from the fixed source port `source_port` to
    /// `addr:port` every `interval` seconds, forever; ICMP errors are ignored.
    pub fn udp_stream(source_port: u16, addr: &str, port: u16, interval: f64) -> String {
        fill(
            UDP_STREAM,
            &[
                ("__SPORT__", source_port.to_string()),
                ("__ADDR__", addr.to_owned()),
                ("__PORT__", port.to_string()),
                ("__INTERVAL__", interval.to_string()),
            ],
        )
    }

    const RAW_UDP: &str = r#"
import socket, struct
src, dst, via = '__SRC__', '__DST__', '__VIA__'
payload = b'__PAYLOAD__'
udp = struct.pack('!HHHH', 40999, __PORT__, 8 + len(payload), 0) + payload
def csum(b):
    t = sum(struct.unpack('!10H', b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0x1234, 0x4000, 64, 17, 0,
                  socket.inet_aton(src), socket.inet_aton(dst))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
for i in range(__COUNT__):
    s.sendto(hdr + udp, (via, 0))
print('sent')
"#;

    /// Crafts (raw socket, IP_HDRINCL) `count` UDP datagrams from `src`:40999 to `dst`:`port`
    /// carrying `payload`, and sends them to the next hop `via`: routing uses `via`, the header
    /// keeps `dst` (which may be an address no router would forward, such as 127.0.0.1).
    pub fn raw_udp(src: &str, dst: &str, port: u16, via: &str, payload: &str, count: u32) -> String {
        fill(
            RAW_UDP,
            &[
                ("__SRC__", src.to_owned()),
                ("__DST__", dst.to_owned()),
                ("__VIA__", via.to_owned()),
                ("__PORT__", port.to_string()),
                ("__PAYLOAD__", payload.to_owned()),
                ("__COUNT__", count.to_string()),
            ],
        )
    }

    const TCP_SESSION: &str = r#"
import socket, sys
c = socket.create_connection(('__ADDR__', __PORT__), timeout=5)
c.settimeout(10)
for line in sys.stdin:
    c.sendall(line.strip().encode())
    try:
        print(c.recv(4096).decode(), flush=True)
    except OSError as e:
        print('FAILED: %r' % e, flush=True)
"#;

    /// One TCP connection kept open: each line read on stdin is sent, and the answer (or
    /// "FAILED: ...") printed as a line.
    pub fn tcp_session(addr: &str, port: u16) -> String {
        fill(TCP_SESSION, &[("__ADDR__", addr.to_owned()), ("__PORT__", port.to_string())])
    }
}

/// The path of a workspace binary (`berthd`, `berth`, `berth-proxy`, ...) in the target
/// directory the tests were built into; panics when it is not built.
pub fn binary_path(name: &str) -> PathBuf {
    binary(name)
}

impl TestHost {
    /// The CLI's command line pointed at this host's daemon (`[berth, --socket, PATH]`), for
    /// scripts that run it themselves (a python client calling `berth port rm` mid-connection).
    pub fn berth_argv(&self) -> Vec<String> {
        vec![binary("berth").display().to_string(), "--socket".into(), self.socket().display().to_string()]
    }

    /// The pids (as seen inside the host) of the live processes whose name is exactly `name`.
    /// Zombies are left out: the host's init (`sleep`) never reaps the orphans it inherits,
    /// such as a process that outlived the berthd that started it and was then killed.
    pub fn pids_named(&self, name: &str) -> Vec<u32> {
        self.sh_ok("ps -e -o pid=,stat=,comm=")
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (pid, stat, comm) = (fields.next()?, fields.next()?, fields.next()?);
                (comm == name && !stat.starts_with('Z')).then(|| pid.parse().ok())?
            })
            .collect()
    }

    /// Runs a python script in the host namespace, failing the test if it fails; returns
    /// stdout, trimmed.
    pub fn python_ok(&self, script: &str) -> String {
        let out = self
            .command("python3")
            .args(["-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run python3 in the host");
        assert!(
            out.status.success(),
            "python in the host failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits up to `timeout` until something in `sandbox` listens on `port` (`proto` "tcp" or
    /// "udp"); returns whether it does.
    pub fn wait_listening(&self, sandbox: &str, port: u16, proto: &str, timeout: Duration) -> bool {
        let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
        let script = format!("ss {flag} 'sport = :{port}'");
        wait_for(timeout, || {
            let out = self.exec(sandbox, &script);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}"))).then_some(())
        })
        .is_some()
    }
}
