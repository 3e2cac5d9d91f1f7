//! Rootless mode, as a real ordinary user: a throwaway account (with /etc/subuid and /etc/subgid
//! ranges) runs berthd inside a throwaway host, with a private /dev/net/tun node of mode 0666
//! bind-mounted over the machine's in the host's own mount namespace (the machine's node is
//! never changed). berthd's processes run with the user's uid, the networks live in the child's
//! own network namespace and not in the host's, the CLI finds the user's socket by itself and
//! runs the user's commands in sandboxes, and what rootless mode lacks or refuses is said in
//! one line.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use berth_integration::{binary, privileged, py, wait_for, TestHost, TestUser, HOST_LAN_IP, PEER_LAN_IP};

/// A throwaway host where `user` may run berthd rootless: its binaries where the user can run
/// them, its own runtime and data directories, and (unless `tun` is false) a usable tun node.
struct RootlessHost {
    host: TestHost,
    bin: PathBuf,
    runtime_dir: PathBuf,
    data_home: PathBuf,
    uid: u32,
    gid: u32,
}

impl RootlessHost {
    fn new(user: &TestUser, tun_mode: u32) -> Self {
        let host = TestHost::without_daemon();
        let dir = host.dir().to_owned();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["berthd", "berth", "berth-proxy"] {
            std::fs::copy(binary(name), bin.join(name)).unwrap();
        }
        let (runtime_dir, data_home) = (dir.join("xdg-run"), dir.join("xdg-data"));
        for (path, mode) in [(&dir, 0o755), (&bin, 0o755), (&runtime_dir, 0o700), (&data_home, 0o700)] {
            std::fs::create_dir_all(path).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for path in [&runtime_dir, &data_home] {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
        // A node of the host's own, bind-mounted over /dev/net/tun in its mount namespace only.
        let node = dir.join("tun");
        host.sh_ok(&format!(
            "mknod {0} c 10 200 && chmod {tun_mode:o} {0} && mount --bind {0} /dev/net/tun",
            node.display()
        ));
        Self { host, bin, runtime_dir, data_home, uid: user.uid, gid: user.gid }
    }

    /// `program` (one of the copied binaries) run by the user inside the host, with the user's
    /// XDG directories.
    fn as_user(&self, program: &str) -> Command {
        let mut command = self.host.command("setpriv");
        command
            .args(["--reuid", &self.uid.to_string(), "--regid", &self.gid.to_string(), "--clear-groups", "--"])
            .arg(self.bin.join(program))
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_DATA_HOME", &self.data_home)
            .env_remove("BERTH_SOCKET");
        command
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.join("berth/berth.sock")
    }

    /// Starts berthd as the user (with `extra_args`) and waits until the CLI, also run as the
    /// user with no `--socket`, gets an answer.
    fn start_berthd(&self, extra_args: &[&str]) -> Child {
        let log = std::fs::File::create(self.host.dir().join("berthd.log")).unwrap();
        let berthd = self
            .as_user("berthd")
            .args(["--log-level", "debug"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let up = wait_for(Duration::from_secs(15), || self.berth(&["version"]).status.success().then_some(()));
        assert!(up.is_some(), "rootless berthd did not come up; log:\n{}", self.log());
        berthd
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.as_user("berth").args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(out.status.success(), "berth {args:?}: {}\nlog:\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a Python script in a new sandbox on `network`, as the user; returns its output.
    fn python_in_new_sandbox(&self, network: &str, script: &str) -> String {
        self.berth_ok(&["run", "--rm", "--network", network, "--", "python3", "-c", script]).trim().to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.host.dir().join("berthd.log")).unwrap_or_default()
    }
}

#[test]
fn a_user_runs_berthd_rootless_in_namespaces_of_its_own() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    let rootless = RootlessHost::new(&user, 0o666);
    let mut berthd = rootless.start_berthd(&[]);

    // The parent, the child and the proxy all run with the user's uid; none as root.
    let processes = rootless.host.sh_ok(&format!("ps -o comm= -u {}", user.uid));
    let count = |name: &str| processes.lines().filter(|l| l.trim() == name).count();
    assert_eq!((count("berthd"), count("berth-proxy")), (2, 1), "the user's processes:\n{processes}");
    assert!(!rootless.host.sh_ok("ps -o comm= -u 0").lines().any(|l| l.trim().starts_with("berth")));

    // The CLI (no --socket) reaches the user's daemon; networks live in the child's namespace.
    rootless.berth_ok(&["network", "create", "--subnet", "10.66.0.0/24", "n1"]);
    let listed = rootless.berth_ok(&["network", "ls"]);
    assert!(listed.contains("n1") && listed.contains("bridge"), "{listed}");
    let child = rootless.host.sh_ok(&format!("pgrep -u {} -f -- '--data-root'", user.uid));
    let child = child.trim();
    assert!(!child.is_empty() && !child.contains('\n'), "one child: {child:?}");
    let inside = rootless.host.sh_ok(&format!("nsenter -t {child} -n ip -br link"));
    assert!(inside.contains("berth0") && inside.contains("br-"), "the child's links:\n{inside}");
    let outside = rootless.host.sh_ok("ip -br link");
    assert!(!outside.contains("berth0") && !outside.contains("br-"), "the host's links:\n{outside}");
    let uid_map = rootless.host.sh_ok(&format!("cat /proc/{child}/uid_map"));
    assert!(
        uid_map.split_whitespace().take(3).collect::<Vec<_>>() == ["0", &user.uid.to_string(), "1"],
        "root of the child is the user: {uid_map}"
    );

    // The user's commands run in sandboxes, as root of the child's namespace and as the user
    // outside it, with their stdio and exit code; names resolve on a user-defined network.
    rootless.berth_ok(&["run", "-d", "--name", "a", "--network", "n1", "--", "sleep", "600"]);
    let seen = rootless.berth_ok(&["run", "--rm", "--network", "n1", "--", "sh", "-c", "id -u; getent hosts a"]);
    let mut seen = seen.lines();
    assert_eq!(seen.next(), Some("0"), "root inside");
    assert!(seen.next().is_some_and(|l| l.starts_with("10.66.0.") && l.ends_with(" a")), "a resolves on n1");
    let exec = rootless.berth(&["exec", "a", "--", "sh", "-c", "hostname; exit 3"]);
    assert_eq!(exec.status.code(), Some(3), "{}", String::from_utf8_lossy(&exec.stderr));
    let sleeper = rootless.host.sh_ok("ps -o uid=,args= -C sleep");
    let sleeper = sleeper.lines().find(|l| l.ends_with("sleep 600")).unwrap_or_default();
    assert_eq!(
        sleeper.split_whitespace().next(),
        Some(user.uid.to_string().as_str()),
        "the sandbox's process runs as the user outside: {sleeper:?}"
    );
    rootless.berth_ok(&["rm", "-f", "a"]);

    // Its files belong to the user.
    let state = rootless.data_home.join("berth/state.redb");
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), user.uid);
    assert_eq!(std::fs::metadata(rootless.socket()).unwrap().uid(), user.uid);

    // SIGTERM to the parent stops the child too, cleanly.
    // nsenter's only child is setpriv, which became berthd (pids as this process sees them).
    let parent = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", berthd.id())).unwrap();
    let parent: i32 = parent.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(parent), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(berthd.wait().unwrap().success(), "log:\n{}", rootless.log());
    let gone = wait_for(Duration::from_secs(5), || {
        let left = rootless.host.sh(&format!("pgrep -u {} berthd", user.uid));
        (!left.status.success()).then_some(())
    });
    assert!(gone.is_some(), "a berthd process outlived the parent");
    assert!(!rootless.socket().exists(), "the socket was left behind");
}

#[test]
fn root_is_refused_rootless_mode() {
    if !privileged() {
        return;
    }
    let host = TestHost::without_daemon();
    let out = host
        .command(binary("berthd"))
        .arg("--rootless")
        .arg("--data-root")
        .arg(host.dir().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not as root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!host.dir().join("data").exists(), "nothing was made");
}

#[test]
fn what_rootless_mode_lacks_is_named_in_one_line() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    // A tun node only root may open, as on this kind of machine.
    let rootless = RootlessHost::new(&user, 0o600);
    let out = rootless.as_user("berthd").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/dev/net/tun") && stderr.contains("mode 0600") && stderr.contains("chmod 0666"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // Without XDG_RUNTIME_DIR there is nowhere to put the socket.
    let rootless = RootlessHost::new(&user, 0o666);
    let out = rootless.as_user("berthd").env_remove("XDG_RUNTIME_DIR").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_user_without_subordinate_ranges_gets_its_own_uid_mapped_only() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    let ranges =
        |file: &str| std::fs::read_to_string(file).unwrap().lines().any(|l| l.starts_with(&format!("{}:", user.name)));
    for (flag, file) in [("--del-subuids", "/etc/subuid"), ("--del-subgids", "/etc/subgid")] {
        if ranges(file) {
            let range = std::fs::read_to_string(file).unwrap();
            let line = range.lines().find(|l| l.starts_with(&format!("{}:", user.name))).unwrap().to_owned();
            let fields: Vec<&str> = line.split(':').collect();
            let last = fields[1].parse::<u64>().unwrap() + fields[2].parse::<u64>().unwrap() - 1;
            let removed =
                Command::new("usermod").args([flag, &format!("{}-{last}", fields[1]), &user.name]).output().unwrap();
            assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
        }
        assert!(!ranges(file), "{file} still has a range for {}", user.name);
    }
    let rootless = RootlessHost::new(&user, 0o666);
    let mut berthd = rootless.start_berthd(&[]);
    rootless.berth_ok(&["network", "create", "--subnet", "10.67.0.0/24", "n1"]);
    let child = rootless.host.sh_ok(&format!("pgrep -u {} -f -- '--data-root'", user.uid));
    let uid_map = rootless.host.sh_ok(&format!("cat /proc/{}/uid_map", child.trim()));
    assert_eq!(uid_map.lines().count(), 1, "only the user's own uid: {uid_map}");
    assert!(rootless.log().contains("has no ranges in /etc/subuid"), "the fallback is logged:\n{}", rootless.log());
    // Dropping the host kills its processes; berthd is then reaped here.
    drop(rootless);
    berthd.wait().unwrap();
}

#[test]
fn sandboxes_reach_the_lan_through_slirp4netns_which_is_restarted_but_not_the_hosts_loopback_unless_asked() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    for host_loopback in [false, true] {
        let rootless = RootlessHost::new(&user, 0o666);
        let peer = rootless.host.add_lan_peer();
        let _lan_server = peer.spawn_python(&py::addr_echo_server("0.0.0.0", &[9300]));
        let _loopback_server = rootless.host.spawn("python3", &["-c", &py::addr_echo_server("127.0.0.1", &[9400])]);
        let mut berthd = rootless.start_berthd(if host_loopback { &["--rootless-host-loopback"] } else { &[] });
        rootless.berth_ok(&["network", "create", "--subnet", "10.68.0.0/24", "n1"]);

        // Out through slirp4netns: the LAN sees the host's own address, as from any process of
        // the user's.
        let answer = rootless.python_in_new_sandbox("n1", &py::tcp_client(PEER_LAN_IP, 9300, "out"));
        assert_eq!(answer, format!("{HOST_LAN_IP}|out"));

        // The host's 127.0.0.1 is 10.0.2.2 inside, closed unless asked for.
        let probe = rootless.python_in_new_sandbox("n1", &py::tcp_probe("10.0.2.2", 9400, "lo", 2.0));
        assert_eq!(probe.starts_with("FAILED"), !host_loopback, "host loopback {host_loopback}: {probe}");

        let slirp = rootless.host.sh_ok("ps -o uid=,pid= -C slirp4netns");
        let fields: Vec<&str> = slirp.split_whitespace().collect();
        let (owner, pid) = (fields[0], fields[1]);
        assert_eq!(owner, user.uid.to_string(), "slirp4netns runs as the user: {slirp}");

        // slirp4netns dying is noticed, and another one takes over.
        rootless.host.sh_ok(&format!("kill -KILL {pid}"));
        let replaced = wait_for(Duration::from_secs(5), || {
            let now = rootless.host.sh("ps -o pid= -C slirp4netns");
            let now = String::from_utf8_lossy(&now.stdout).trim().to_owned();
            (!now.is_empty() && now != pid).then_some(())
        });
        assert!(replaced.is_some(), "no new slirp4netns; log:\n{}", rootless.log());
        let answer = rootless.python_in_new_sandbox("n1", &py::tcp_client(PEER_LAN_IP, 9300, "again"));
        assert_eq!(answer, format!("{HOST_LAN_IP}|again"));
        drop(rootless);
        berthd.wait().unwrap();
    }
}

#[test]
fn published_ports_listen_in_the_users_namespace_and_reach_the_sandbox() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    let rootless = RootlessHost::new(&user, 0o666);
    let peer = rootless.host.add_lan_peer();
    let mut berthd = rootless.start_berthd(&[]);
    rootless.berth_ok(&["network", "create", "--subnet", "10.69.0.0/24", "n1"]);
    let server = py::addr_echo_server("0.0.0.0", &[80]);
    rootless.berth_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "-p",
        "8080:80/udp",
        "--",
        "python3",
        "-c",
        &server,
    ]);

    // The ports listen in the host's (the user's) namespace, held by the user's processes.
    let listening = rootless.host.sh_ok("ss -Hltnp 'sport = :8080'");
    assert!(listening.contains("berth"), "8080/tcp is not held by berth: {listening}");

    // A LAN client reaches the sandbox over TCP and UDP (the sandbox sees the network's
    // gateway, as a rootful berthd's proxied clients).
    let answer = wait_for(Duration::from_secs(10), || {
        let out = peer.python(&py::tcp_client(HOST_LAN_IP, 8080, "in"));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    assert_eq!(answer.as_deref(), Some("10.69.0.1|in"), "log:\n{}", rootless.log());
    assert_eq!(peer.python_ok(&py::udp_client(HOST_LAN_IP, 8080, "datagram")).trim(), "10.69.0.1|datagram");

    // Unpublishing closes the host's port.
    rootless.berth_ok(&["port", "rm", "web", "8080:80"]);
    assert!(rootless.host.sh_ok("ss -Hltn 'sport = :8080'").trim().is_empty(), "8080/tcp still listens");

    // A privileged port is refused in one line that names the sysctl.
    let refused = rootless.berth(&["run", "--rm", "--network", "n1", "-p", "80:80", "--", "true"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && message.contains("net.ipv4.ip_unprivileged_port_start"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");

    drop(rootless);
    berthd.wait().unwrap();
}

#[test]
fn behind_systemd_resolveds_stub_sandboxes_ask_its_real_upstreams_through_slirp4netns() {
    if !privileged() {
        return;
    }
    let user = TestUser::new();
    let rootless = RootlessHost::new(&user, 0o666);
    let peer = rootless.host.add_lan_peer();
    let log = rootless.host.dir().join("dns.log");
    let _dns = peer.spawn_python(&py::dns_upstream("0.0.0.0", &log.display().to_string()));
    // The host's resolv.conf names only the stub, as with systemd-resolved; its list of real
    // upstreams names the LAN's server. /run is a tmpfs of the throwaway host's own.
    rootless.host.write_resolv_conf("nameserver 127.0.0.53\n");
    rootless.host.sh_ok(&format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/resolve && echo 'nameserver {PEER_LAN_IP}' >/run/systemd/resolve/resolv.conf"
    ));
    let mut berthd = rootless.start_berthd(&[]);
    rootless.berth_ok(&["network", "create", "--subnet", "10.70.0.0/24", "n1"]);
    let answer = rootless.berth_ok(&["run", "--rm", "--network", "n1", "--", "getent", "hosts", "www.example.test"]);
    assert!(answer.starts_with("203.0.113.7"), "{answer}; log:\n{}", rootless.log());
    drop(rootless);
    berthd.wait().unwrap();
}
