//! A sandbox's processes: only a process the API client started can be registered (never pid 0,
//! pid 1, berthd, a bystander or a process outside the sandbox), a process is known by its pid
//! *and* start time so a reused pid is never taken for it nor signalled, and a `--rm` sandbox
//! whose process never registered (its client or berthd died in between) is removed.

use std::time::{Duration, Instant};

use berth_integration::{privileged, wait_for, TestHost};
use serde_json::{json, Value};

/// Python: POST a JSON body to berthd's API on the unix socket `sock`; returns (status, body).
const PY_POST: &str = r#"
import json, socket, subprocess, sys, time
def post(sock, path, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    data = json.dumps(body).encode()
    s.sendall(("POST %s HTTP/1.1\r\nHost: berthd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (path, len(data))).encode() + data)
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()
"#;

fn pid_of(host: &TestHost, pattern: &str) -> u32 {
    wait_for(Duration::from_secs(5), || {
        host.sh_ok(&format!("pgrep -f '{pattern}' || true")).lines().next()?.trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("no process matches {pattern:?}"))
}

/// Whether `pid` runs (exists and is not a zombie) in the host's pid namespace.
fn runs(host: &TestHost, pid: u32) -> bool {
    let state = host.sh_ok(&format!("ps -o stat= -p {pid} || true"));
    !state.trim().is_empty() && !state.trim().starts_with('Z')
}

fn pids(host: &TestHost, sandbox: &str) -> Vec<u64> {
    host.inspect(sandbox)["State"]["Pids"].as_array().expect("Pids").iter().filter_map(Value::as_u64).collect()
}

#[test]
fn only_a_process_the_client_started_in_the_sandbox_can_be_registered() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    host.berth_ok(&["run", "-d", "--name", "h", "--network", "host", "--", "sleep", "600"]);
    host.berth_ok(&["run", "-d", "--name", "b", "--", "sleep", "600"]);
    let _bystander = host.spawn("sleep", &["601"]);
    let bystander = pid_of(&host, "^sleep 601$");
    let berthd = host.berth_json(&["version"])["Pid"].as_u64().expect("berthd's pid") as u32;
    let registered_before = (pids(&host, "h"), pids(&host, "b"));

    for (pid, status, expected) in [
        (0, 400, "invalid pid 0"),
        (1, 403, "cannot be registered"),
        (berthd, 403, "cannot be registered"),
        (bystander, 403, "was not started by the caller"),
        (4_000_000, 400, "no process with pid"),
    ] {
        for sandbox in ["h", "b"] {
            let (got, body) = host.api(
                "POST",
                &format!("/v1/sandboxes/{sandbox}/processes"),
                Some(&json!({"Pid": pid, "Main": true})),
            );
            let message = body["Message"].as_str().or(body["message"].as_str()).unwrap_or_default().to_owned();
            assert_eq!(got, status, "pid {pid} on {sandbox}: {body}");
            assert!(message.contains(expected), "pid {pid} on {sandbox}: {message:?}");
            assert_eq!(message.lines().count(), 1, "{message:?}");
        }
    }
    // A child of the client that does not run in the bridge sandbox's namespace.
    let script = format!(
        "{PY_POST}\nchild = subprocess.Popen(['sleep', '30'], stdout=subprocess.DEVNULL)\nprint(*post({sock:?}, '/v1/sandboxes/b/processes', {{'Pid': child.pid}}))\nchild.kill()",
        sock = host.socket().display().to_string()
    );
    let path = host.dir().join("outside.py");
    std::fs::write(&path, script).expect("write the script");
    let out = host.sh_ok(&format!("python3 {}", path.display()));
    assert!(out.starts_with("400 ") && out.contains("does not run in sandbox b"), "{out}");
    assert_eq!((pids(&host, "h"), pids(&host, "b")), registered_before, "a refused pid was registered");

    // Removing the host-mode sandbox signals its own process and nothing else of the host.
    let own = pids(&host, "h")[0] as u32;
    host.berth_ok(&["rm", "-f", "h"]);
    assert!(!runs(&host, own), "the sandbox's own process still runs");
    assert!(runs(&host, bystander), "berth rm -f of a host-mode sandbox killed a host process");
    assert!(runs(&host, 1), "the host's init was killed");
}

#[test]
fn a_reused_pid_is_neither_running_nor_signalled() {
    if !privileged() {
        return;
    }
    let host = TestHost::new(&[]);
    let (status, body) = host.api("POST", "/v1/sandboxes", Some(&json!({"Name": "h", "NetworkMode": "host"})));
    assert_eq!(status, 201, "{body}");
    // The client registers a short-lived child, reaps it, then makes the kernel hand its pid to
    // a new, unrelated process (ns_last_pid of the host's pid namespace) and prints that pid.
    let script = format!(
        r#"{PY_POST}
child = subprocess.Popen(['sleep', '0.2'])
status, body = post({sock:?}, '/v1/sandboxes/h/processes', {{'Pid': child.pid, 'Main': True}})
assert status == 204, (status, body)
child.wait()
for attempt in range(200):
    with open('/proc/sys/kernel/ns_last_pid', 'w') as f:
        f.write(str(child.pid - 1))
    imposter = subprocess.Popen(['sleep', '600'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if imposter.pid == child.pid:
        print(imposter.pid)
        sys.exit(0)
    imposter.kill()
    imposter.wait()
sys.exit('the pid was not handed out again')
"#,
        sock = host.socket().display().to_string()
    );
    let path = host.dir().join("reuse.py");
    std::fs::write(&path, script).expect("write the script");
    let pid: u32 = host.sh_ok(&format!("python3 {}", path.display())).trim().parse().expect("the reused pid");
    assert!(runs(&host, pid), "the imposter runs");

    let view = host.inspect("h");
    assert_eq!(view["State"]["Running"], false, "a reused pid made the sandbox look running: {view}");
    assert_eq!(pids(&host, "h"), Vec::<u64>::new());
    let ps = host.berth_ok(&["ps"]);
    assert!(!ps.lines().any(|l| l.contains(" h") && l.contains("Up")), "{ps}");
    host.berth_ok(&["stop", "h"]);
    host.berth_ok(&["rm", "-f", "h"]);
    assert!(runs(&host, pid), "berth stop/rm signalled a process that only reused the sandbox's pid");
    host.sh_ok(&format!("kill {pid}"));
}

#[test]
fn rm_sandboxes_whose_process_never_registered_are_removed() {
    if !privileged() {
        return;
    }
    let mut host = TestHost::new(&[]);
    // What `berth run -d --rm -p 8080:80` leaves when berthd dies between create and register.
    let (status, body) =
        host.api("POST", "/v1/sandboxes", Some(&json!({"Name": "before", "AutoRemove": true, "Ports": ["8080:80"]})));
    assert_eq!(status, 201, "{body}");
    host.kill_daemon();
    host.start_daemon(&[]);
    // ... and what a client that died after create leaves while berthd runs.
    let (status, body) = host.api("POST", "/v1/sandboxes", Some(&json!({"Name": "during", "AutoRemove": true})));
    assert_eq!(status, 201, "{body}");
    // A --rm sandbox with a live registered process, and one without --rm, stay.
    host.berth_ok(&["run", "-d", "--rm", "--name", "live", "--", "sleep", "600"]);
    let (status, body) = host.api("POST", "/v1/sandboxes", Some(&json!({"Name": "created"})));
    assert_eq!(status, 201, "{body}");

    let names = |host: &TestHost| -> Vec<String> {
        let mut names: Vec<String> = host
            .berth_json(&["ps"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let start = Instant::now();
    wait_for(Duration::from_secs(25), || (names(&host) == ["created", "live"]).then_some(()))
        .unwrap_or_else(|| panic!("abandoned --rm sandboxes are still there: {:?}", names(&host)));
    assert!(start.elapsed() > Duration::from_secs(2), "removed before the client had time to register");
    // Their addresses and host ports were freed.
    host.berth_ok(&["run", "-d", "--name", "port", "-p", "8080:80", "--", "sleep", "600"]);
    assert_eq!(host.links().iter().filter(|l| l.starts_with("bth")).count(), 3, "{:?}", host.links());
}
