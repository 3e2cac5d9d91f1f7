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
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> -> target/debug/<name>
    let path = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --workspace` first", path.display());
    path
}

/// Whether this process can make namespaces; tests skip (with a message) when it cannot.
pub fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: integration tests need root (they create namespaces)");
    false
}

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
            .args(["--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let children = format!("/proc/{0}/task/{0}/children", holder.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        let init_pid = loop {
            if let Some(pid) = std::fs::read_to_string(&children).ok().and_then(|s| s.split_whitespace().next()?.parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the throwaway host did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        let host = Self { holder, init_pid, dir, daemon: None };
        host.sh("ip link set lo up");
        host
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .expect("log file");
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
        assert!(!out.status.success(), "berth {args:?} should have failed but printed {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `berth --format json ARGS` parsed.
    pub fn berth_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--format", "json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.berth_ok(&full)).expect("json output")
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
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init_pid as i32), nix::sys::signal::Signal::SIGKILL);
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

/// Python one-liners for servers and clients inside sandboxes (python3 is a test dependency).
pub mod py {
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

    /// A TCP client that sends `message` to `addr:port`, retrying for a few seconds, and prints the answer.
    pub fn tcp_client(addr: &str, port: u16, message: &str) -> String {
        format!(
            "import socket,time\nfor i in range(50):\n  try:\n    c=socket.create_connection(('{addr}',{port}),timeout=2)\n    break\n  except OSError:\n    time.sleep(0.1)\nelse:\n  raise SystemExit('cannot connect')\n\
c.sendall(b'{message}')\nprint(c.recv(1024).decode())\n"
        )
    }

    /// A UDP client that sends `message` to `addr:port` (retrying) and prints the answer.
    pub fn udp_client(addr: &str, port: u16, message: &str) -> String {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(0.3)\n\
for i in range(20):\n  s.sendto(b'{message}',('{addr}',{port}))\n  try:\n    print(s.recv(2048).decode())\n    break\n  except OSError:\n    pass\nelse:\n  raise SystemExit('no answer')\n"
        )
    }
}
