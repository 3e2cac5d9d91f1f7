//! The userland proxy (`berth-proxy`), proven with real traffic from processes of the test host
//! to 127.0.0.1 and [::1]: fetches reach the sandbox over both families (IPv6 clients to an
//! IPv4-only sandbox too), half-close, UDP flows per client, a backend that is down, transfers
//! that outlive berthd (SIGTERM and SIGKILL), the proxy's own restart after kill -9, `port rm`
//! closing the listener and its connections, a 1,000-port range, one proxy process for all
//! ports, and (when berthd has the flag) `--userland-proxy=false`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_integration::{binary_path, privileged, py, wait_for, Background, TestHost};
use serde_json::Value;

/// A test host with berthd (userland proxy on, the default) and an IPv4-only network `n1`.
fn host_with_network(subnet: &str) -> TestHost {
    // The proxy is berthd's neighbour; without it every test here fails the same way.
    binary_path("berth-proxy");
    let host = TestHost::new(&[]);
    host.berth_ok(&["network", "create", "--subnet", subnet, "n1"]);
    host
}

/// The gateway of `network` as the sandbox sees it: the host's address on the bridge, which is
/// the source of the proxy's connections to the sandbox.
fn gateway(host: &TestHost, sandbox: &str, network: &str) -> String {
    host.inspect(sandbox)["NetworkSettings"]["Networks"][network]["Gateway"].as_str().expect("a Gateway").to_owned()
}

/// The proxy's own log (berthd starts it with its log in the exec root), for failure messages.
fn proxy_log(host: &TestHost) -> String {
    std::fs::read_to_string(host.dir().join("run/proxy.log")).unwrap_or_else(|_| "(no run/proxy.log)".into())
}

/// The one berth-proxy process of the host; fails the test when there is none or more than one.
fn the_proxy(host: &TestHost) -> u32 {
    let pids = host.pids_named("berth-proxy");
    assert_eq!(
        pids.len(),
        1,
        "expected exactly one berth-proxy process in the host, found {pids:?}; proxy log:\n{}",
        proxy_log(host)
    );
    pids[0]
}

fn fill(template: &str, pairs: &[(&str, String)]) -> String {
    pairs.iter().fold(template.to_owned(), |script, (key, value)| script.replace(key, value))
}

const FETCH: &str = r#"
import socket, time
addr, port, message = '__ADDR__', __PORT__, b'__MESSAGE__'
deadline = time.time() + 5
last = 'nothing tried'
while time.time() < deadline:
    try:
        c = socket.create_connection((addr, port), timeout=2)
        c.settimeout(2)
        c.sendall(message)
        answer = c.recv(4096)
        c.close()
        if answer:
            print(answer.decode())
            break
        last = 'closed without an answer'
    except OSError as e:
        last = repr(e)
    time.sleep(0.1)
else:
    print('FAILED: %s' % last)
"#;

/// From a process of the host: one TCP exchange with `addr:port`, retried for up to 5 s while the
/// connection fails or closes without an answer (the backend may still be starting). The answer,
/// or "FAILED: <last error>".
fn fetch(host: &TestHost, addr: &str, port: u16, message: &str) -> String {
    host.python_ok(&fill(
        FETCH,
        &[("__ADDR__", addr.to_owned()), ("__PORT__", port.to_string()), ("__MESSAGE__", message.to_owned())],
    ))
}

const HTTP_GET: &str = r#"
import time, urllib.request
url = '__URL__'
deadline = time.time() + 5
last = 'nothing tried'
while time.time() < deadline:
    try:
        print(urllib.request.urlopen(url, timeout=2).read().decode())
        break
    except Exception as e:
        last = repr(e)
        time.sleep(0.1)
else:
    print('FAILED: %s' % last)
"#;

#[test]
fn host_processes_fetch_from_a_sandbox_through_127_0_0_1_and_ipv6_loopback() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.80.0.0/24");
    let root = host.dir().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from the sandbox\n").unwrap();
    let www = root.to_str().unwrap();
    host.berth_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "--",
        "python3",
        "-m",
        "http.server",
        "80",
        "--bind",
        "0.0.0.0",
        "--directory",
        www,
    ]);
    assert!(
        host.wait_listening("web", 80, "tcp", Duration::from_secs(10)),
        "the http server in the sandbox did not start"
    );
    // The network has no IPv6: a client on ::1 reaches the IPv4 sandbox through the proxy only.
    assert!(host.inspect("web")["NetworkSettings"]["Networks"]["n1"]["GlobalIPv6Address"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    for url in ["http://127.0.0.1:8080/hello.txt", "http://[::1]:8080/hello.txt"] {
        let body = host.python_ok(&HTTP_GET.replace("__URL__", url));
        assert_eq!(body, "hello from the sandbox", "GET {url}; proxy log:\n{}", proxy_log(&host));
    }
    the_proxy(&host);
}

#[test]
fn loopback_tcp_and_udp_reach_an_ipv4_sandbox_from_both_families_via_the_proxy() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.81.0.0/24");
    host.serve("echo", "n1", &["8080:80", "8080:80/udp"], &py::addr_echo_server("0.0.0.0", &[80]));
    assert!(host.wait_listening("echo", 80, "tcp", Duration::from_secs(10)), "the echo server did not start");
    assert!(host.wait_listening("echo", 80, "udp", Duration::from_secs(10)), "the echo server did not start");
    // The sandbox sees the proxy's connections come from the host's address on the bridge.
    let gw = gateway(&host, "echo", "n1");
    let log = || proxy_log(&host);
    assert_eq!(fetch(&host, "127.0.0.1", 8080, "tcp4"), format!("{gw}|tcp4"), "proxy log:\n{}", log());
    assert_eq!(
        fetch(&host, "::1", 8080, "tcp6"),
        format!("{gw}|tcp6"),
        "IPv6 client → IPv4 sandbox; proxy log:\n{}",
        log()
    );
    assert_eq!(
        host.python_ok(&py::udp_probe("127.0.0.1", 8080, "udp4", 5.0)),
        format!("{gw}|udp4"),
        "proxy log:\n{}",
        log()
    );
    assert_eq!(
        host.python_ok(&py::udp_probe("::1", 8080, "udp6", 5.0)),
        format!("{gw}|udp6"),
        "IPv6 client → IPv4 sandbox; proxy log:\n{}",
        log()
    );
    the_proxy(&host);
}

const HALF_CLOSE_SERVER: &str = r#"
import hashlib, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 80))
s.listen(16)
def conn(c):
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
        n += len(d)
    # Only after the client's EOF: a reply larger than any socket buffer, then our own EOF.
    c.sendall(('%d %s\n' % (n, h.hexdigest())).encode() + b'r' * (4 << 20))
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=conn, args=(c,), daemon=True).start()
"#;

const HALF_CLOSE_CLIENT: &str = r#"
import hashlib, json, socket, time
addr = '__ADDR__'
payload = bytes(range(256)) * 4096  # 1 MiB
c = socket.create_connection((addr, 8080), timeout=5)
c.settimeout(5)
c.sendall(payload)
c.shutdown(socket.SHUT_WR)
data, error = b'', None
try:
    while True:
        d = c.recv(65536)
        if not d:
            break
        data += d
except OSError as e:
    error = repr(e)
head, _, rest = data.partition(b'\n')
print(json.dumps({'head': head.decode(errors='replace'), 'expected': '%d %s' % (len(payload), hashlib.sha256(payload).hexdigest()),
                  'rest': len(rest), 'rest_ok': rest == b'r' * (4 << 20), 'error': error}))
"#;

#[test]
fn half_close_reaches_the_backend_and_the_reply_still_comes_back() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.82.0.0/24");
    host.serve("sink", "n1", &["8080:80"], HALF_CLOSE_SERVER);
    assert!(host.wait_listening("sink", 80, "tcp", Duration::from_secs(10)), "the server did not start");
    for addr in ["127.0.0.1", "::1"] {
        let out = host.python_ok(&HALF_CLOSE_CLIENT.replace("__ADDR__", addr));
        let result: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("client printed {out:?}"));
        assert_eq!(
            result["head"], result["expected"],
            "{addr}: the backend did not see all the client sent before its shutdown(SHUT_WR): {result}; proxy log:\n{}",
            proxy_log(&host)
        );
        assert!(
            result["rest_ok"] == true && result["error"].is_null(),
            "{addr}: the reply after the half-close did not come back whole: {result}; proxy log:\n{}",
            proxy_log(&host)
        );
    }
}

const UDP_PORT_ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 53))
while True:
    d, a = s.recvfrom(4096)
    s.sendto(b'%d|' % a[1] + d, a)
"#;

const UDP_TWO_CLIENTS: &str = r#"
import json, socket, threading
COUNT = 200
barrier = threading.Barrier(2)
results = {}
def client(tag):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.connect(('127.0.0.1', 5353))
    r = {'ok': 0, 'lost': 0, 'crossed': [], 'backend_ports': set()}
    barrier.wait()
    for i in range(COUNT):
        want = '%s-%d' % (tag, i)
        for attempt in range(6):
            s.send(want.encode())
            try:
                while True:
                    port, _, got = s.recv(4096).decode().partition('|')
                    if got == want:
                        break
                    if not got.startswith(tag + '-'):
                        r['crossed'].append(got)
                    # else: a late answer to one of our own earlier datagrams; read on
                r['ok'] += 1
                r['backend_ports'].add(port)
                break
            except socket.timeout:
                continue
        else:
            r['lost'] += 1
    r['backend_ports'] = sorted(r['backend_ports'])
    r['crossed'] = r['crossed'][:10]
    results[tag] = r
threads = [threading.Thread(target=client, args=(t,)) for t in ('a', 'b')]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"#;

#[test]
fn udp_through_the_proxy_answers_each_of_two_concurrent_clients() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.83.0.0/24");
    host.serve("dns", "n1", &["127.0.0.1:5353:53/udp"], UDP_PORT_ECHO);
    assert!(host.wait_listening("dns", 53, "udp", Duration::from_secs(10)), "the UDP server did not start");
    // Warm up: one answer proves the path before the two clients race.
    assert!(
        host.python_ok(&py::udp_probe("127.0.0.1", 5353, "warm", 5.0)).ends_with("|warm"),
        "proxy log:\n{}",
        proxy_log(&host)
    );
    let out = host.python_ok(UDP_TWO_CLIENTS);
    let results: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("client printed {out:?}"));
    for tag in ["a", "b"] {
        let r = &results[tag];
        assert_eq!(r["crossed"], serde_json::json!([]), "client {tag} got the other client's answers: {results}");
        assert_eq!(
            r["ok"], 200,
            "client {tag} did not get all its answers (each datagram tried up to 6 times): {results}"
        );
        // One flow per client: each client's datagrams reach the backend from one source port.
        assert_eq!(
            r["backend_ports"].as_array().map(Vec::len),
            Some(1),
            "client {tag}'s datagrams came from several proxy ports: {results}"
        );
    }
    assert_ne!(
        results["a"]["backend_ports"], results["b"]["backend_ports"],
        "the two clients share one flow to the backend: {results}"
    );
}

const BACKEND_DOWN: &str = r#"
import socket, time
t0 = time.monotonic()
try:
    c = socket.create_connection(('127.0.0.1', 8090), timeout=3)
except OSError as e:
    # The proxy's reset can beat the end of connect() itself: closed at once too.
    print('connect:%s %.3f' % (type(e).__name__, time.monotonic() - t0))
    raise SystemExit
try:
    c.sendall(b'hello')
except OSError:
    pass
c.settimeout(3)
try:
    d = c.recv(100)
    r = 'eof' if d == b'' else 'data:%r' % d
except socket.timeout:
    r = 'timeout'
except OSError as e:
    r = type(e).__name__
print('%s %.3f' % (r, time.monotonic() - t0))
"#;

#[test]
fn a_backend_that_refuses_closes_the_client_connection_at_once() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.84.0.0/24");
    // Nothing listens on 81 in the sandbox.
    host.berth_ok(&["run", "-d", "--name", "idle", "--network", "n1", "-p", "127.0.0.1:8090:81", "--", "sleep", "600"]);
    for attempt in 0..3 {
        let out = host.python_ok(BACKEND_DOWN);
        let (verdict, seconds) = out.rsplit_once(' ').unwrap_or_else(|| panic!("client printed {out:?}"));
        let seconds: f64 = seconds.parse().unwrap();
        eprintln!("attempt {attempt}: {verdict} after {seconds:.3} s");
        assert!(
            ["eof", "ConnectionResetError", "connect:ConnectionResetError"].contains(&verdict),
            "attempt {attempt}: the client connection was not closed ({verdict}, {seconds:.3} s); proxy log:\n{}",
            proxy_log(&host)
        );
        assert!(
            seconds < 0.5,
            "attempt {attempt}: the client was closed only after {seconds:.3} s (want well under 1 s)"
        );
    }
}

const STREAM_SERVER: &str = r#"
import socket, threading, time
CHUNK, COUNT, PAUSE = 1 << 20, __COUNT__, __PAUSE__
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 80))
s.listen(16)
def conn(c):
    try:
        for i in range(COUNT):
            c.sendall(bytes([i % 251]) * CHUNK)
            time.sleep(PAUSE)
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=conn, args=(c,), daemon=True).start()
"#;

const STREAM_CLIENT: &str = r#"
import hashlib, socket, time
CHUNK, COUNT = 1 << 20, __COUNT__
c = socket.create_connection(('__ADDR__', 8080), timeout=5)
c.settimeout(15)
h, n, started, error = hashlib.sha256(), 0, False, ''
t0 = time.monotonic()
try:
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        if not started and n + len(d) >= CHUNK:
            print('started', flush=True)
            started = True
        h.update(d)
        n += len(d)
except OSError as e:
    error = repr(e)
expected = hashlib.sha256()
for i in range(COUNT):
    expected.update(bytes([i % 251]) * CHUNK)
print('bytes=%d expected=%d digest_ok=%s seconds=%.2f error=%s' % (n, COUNT * CHUNK, h.digest() == expected.digest(), time.monotonic() - t0, error or 'none'), flush=True)
"#;

/// Bytes and pacing of the long transfer: 64 MiB, one MiB every 0.1 s (about 6.5 s).
const STREAM_MIB: u32 = 64;

/// A transfer from the sandbox to a host process through 127.0.0.1:8080, read until the end; the
/// returned guard's stdout gives "started" once data flows, then the summary line.
struct Transfer {
    client: Background,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Transfer {
    fn start(host: &TestHost, addr: &str) -> Self {
        let script = fill(STREAM_CLIENT, &[("__COUNT__", STREAM_MIB.to_string()), ("__ADDR__", addr.to_owned())]);
        let child = host
            .command("python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client");
        let mut client = Background::from_child(child);
        let lines = BufReader::new(client.child().stdout.take().expect("stdout")).lines();
        let mut transfer = Self { client, lines };
        let first = transfer.next_line();
        assert_eq!(first, "started", "the transfer did not start");
        transfer
    }

    fn next_line(&mut self) -> String {
        self.lines.next().and_then(Result::ok).unwrap_or_else(|| "(the client ended without a line)".into())
    }

    /// Waits for the end of the transfer; fails the test unless every byte arrived, in order.
    fn finish(mut self, what: &str, host: &TestHost) {
        let summary = self.next_line();
        let _ = self.client.child().wait();
        let expected = u64::from(STREAM_MIB) << 20;
        assert!(
            summary.starts_with(&format!("bytes={expected} expected={expected} digest_ok=True"))
                && summary.ends_with("error=none"),
            "the proxied transfer did not survive {what}: {summary}; proxy log:\n{}",
            proxy_log(host)
        );
        eprintln!("transfer through {what}: {summary}");
    }
}

fn stream_host(subnet: &str) -> TestHost {
    let host = host_with_network(subnet);
    let server = fill(STREAM_SERVER, &[("__COUNT__", STREAM_MIB.to_string()), ("__PAUSE__", "0.1".into())]);
    host.serve("stream", "n1", &["8080:80"], &server);
    assert!(host.wait_listening("stream", 80, "tcp", Duration::from_secs(10)), "the stream server did not start");
    host
}

/// A new connection through 127.0.0.1:8080 to the stream server gets data.
const STREAM_PROBE: &str = r#"
import socket
try:
    c = socket.create_connection(('127.0.0.1', 8080), timeout=2)
    c.settimeout(2)
    print('ok' if c.recv(4096) else 'closed')
except OSError as e:
    print('FAILED: %r' % e)
"#;

const CONNECT_PROBE: &str = r#"
import socket
try:
    socket.create_connection(('__ADDR__', __PORT__), timeout=2).close()
    print('connected')
except ConnectionRefusedError:
    print('refused')
except OSError as e:
    print('FAILED: %r' % e)
"#;

fn connect_probe(host: &TestHost, addr: &str, port: u16) -> String {
    host.python_ok(&fill(CONNECT_PROBE, &[("__ADDR__", addr.to_owned()), ("__PORT__", port.to_string())]))
}

#[test]
fn a_proxied_transfer_survives_a_berthd_restart() {
    if !privileged() {
        return;
    }
    let mut host = stream_host("10.85.0.0/24");
    let proxy = the_proxy(&host);
    let v4 = Transfer::start(&host, "127.0.0.1");
    let v6 = Transfer::start(&host, "::1");
    assert!(host.stop_daemon(), "berthd did not exit cleanly on SIGTERM; log:\n{}", host.daemon_log());
    assert_eq!(host.pids_named("berth-proxy"), vec![proxy], "the proxy did not outlive berthd's SIGTERM");
    host.start_daemon(&[]);
    v4.finish("berthd's SIGTERM and restart (127.0.0.1)", &host);
    v6.finish("berthd's SIGTERM and restart (::1)", &host);
    assert_eq!(the_proxy(&host), proxy, "the restarted berthd replaced the proxy instead of re-syncing it");
    assert_eq!(
        host.python_ok(STREAM_PROBE),
        "ok",
        "a new connection after the restart; proxy log:\n{}",
        proxy_log(&host)
    );
    // The restarted berthd knows the proxy's mapping: removing it closes the listener.
    host.berth_ok(&["port", "rm", "stream", "80"]);
    assert_eq!(
        connect_probe(&host, "127.0.0.1", 8080),
        "refused",
        "127.0.0.1:8080 after `port rm` following a restart; proxy log:\n{}",
        proxy_log(&host)
    );
}

#[test]
fn a_proxied_transfer_survives_berthd_being_killed() {
    if !privileged() {
        return;
    }
    let mut host = stream_host("10.86.0.0/24");
    let proxy = the_proxy(&host);
    let transfer = Transfer::start(&host, "127.0.0.1");
    host.kill_daemon();
    assert_eq!(host.pids_named("berth-proxy"), vec![proxy], "the proxy did not outlive berthd's SIGKILL");
    // The proxy keeps serving on its own: a new connection works while berthd is down.
    assert_eq!(
        host.python_ok(STREAM_PROBE),
        "ok",
        "a new connection while berthd is down; proxy log:\n{}",
        proxy_log(&host)
    );
    host.start_daemon(&[]);
    transfer.finish("berthd's SIGKILL and restart", &host);
    assert_eq!(the_proxy(&host), proxy, "the restarted berthd replaced the proxy instead of re-syncing it");
    assert_eq!(
        host.python_ok(STREAM_PROBE),
        "ok",
        "a new connection after the restart; proxy log:\n{}",
        proxy_log(&host)
    );
}

const KILL_PROXY_AND_RECONNECT: &str = r#"
import socket, subprocess, time
subprocess.run(['pkill', '-KILL', '-x', 'berth-proxy'], check=True)
t0 = time.monotonic()
last, took = 'nothing tried', None
while time.monotonic() - t0 < 5:
    try:
        c = socket.create_connection(('127.0.0.1', 8080), timeout=0.5)
        c.settimeout(0.5)
        c.sendall(b'again')
        d = c.recv(4096)
        c.close()
        if d.endswith(b'|again'):
            took = time.monotonic() - t0
            break
        last = 'answer %r' % d
    except OSError as e:
        last = repr(e)
    time.sleep(0.01)
print('%.3f' % took if took is not None else 'FAILED: %s' % last)
"#;

#[test]
fn berthd_restarts_a_killed_proxy_and_new_connections_work_within_a_second() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.87.0.0/24");
    host.serve("echo", "n1", &["8080:80", "8080:80/udp"], &py::addr_echo_server("0.0.0.0", &[80]));
    assert!(host.wait_listening("echo", 80, "tcp", Duration::from_secs(10)), "the echo server did not start");
    assert!(host.wait_listening("echo", 80, "udp", Duration::from_secs(10)), "the echo server did not start");
    assert!(fetch(&host, "127.0.0.1", 8080, "first").ends_with("|first"), "proxy log:\n{}", proxy_log(&host));
    for round in 0..2 {
        let before = the_proxy(&host);
        let took = host.python_ok(KILL_PROXY_AND_RECONNECT);
        let seconds: f64 = took.parse().unwrap_or_else(|_| {
            panic!(
                "round {round}: no connection after the proxy was killed: {took}; berthd log:\n{}",
                host.daemon_log()
            )
        });
        eprintln!("round {round}: a new connection worked {seconds:.3} s after kill -9 of the proxy");
        assert!(
            seconds < 1.0,
            "round {round}: new connections worked again only {seconds:.3} s after the proxy was killed (want < 1 s)"
        );
        let after = wait_for(Duration::from_secs(2), || {
            let pids = host.pids_named("berth-proxy");
            (pids.len() == 1 && pids[0] != before).then_some(pids[0])
        });
        assert!(
            after.is_some(),
            "round {round}: want one new berth-proxy, have {:?} (killed {before})",
            host.pids_named("berth-proxy")
        );
        // Every mapping came back, UDP too, on both families.
        assert!(
            fetch(&host, "::1", 8080, "six").ends_with("|six"),
            "round {round}: [::1]:8080 after the proxy restart"
        );
        let udp = host.python_ok(&py::udp_probe("127.0.0.1", 8080, "udp", 3.0));
        assert!(udp.ends_with("|udp"), "round {round}: 127.0.0.1:8080/udp after the proxy restart: {udp}");
    }
}

const REMOVE_WHILE_CONNECTED: &str = r#"
import json, socket, subprocess, time
c = socket.create_connection(('127.0.0.1', 8082), timeout=3)
c.settimeout(3)
c.sendall(b'before')
first = c.recv(4096).decode()
rm = subprocess.run(__BERTH__ + ['port', 'rm', 'web', '127.0.0.1:8082:80'], capture_output=True, text=True)
t0 = time.monotonic()
try:
    d = c.recv(4096)
    existing = 'eof' if not d else 'data %r' % d
except socket.timeout:
    existing = 'still open'
except OSError as e:
    existing = type(e).__name__
closed_after = time.monotonic() - t0
try:
    socket.create_connection(('127.0.0.1', 8082), timeout=2).close()
    new = 'connected'
except ConnectionRefusedError:
    new = 'refused'
except OSError as e:
    new = repr(e)
print(json.dumps({'first': first, 'rm': [rm.returncode, rm.stderr.strip()], 'existing': existing, 'closed_after': closed_after, 'new': new}))
"#;

#[test]
fn port_rm_closes_the_listener_and_its_connections() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.88.0.0/24");
    host.serve("web", "n1", &[], &py::addr_echo_server("0.0.0.0", &[80]));
    assert!(host.wait_listening("web", 80, "tcp", Duration::from_secs(10)), "the echo server did not start");
    host.berth_ok(&["port", "add", "web", "127.0.0.1:8082:80", "8083:80"]);
    assert!(fetch(&host, "127.0.0.1", 8082, "added").ends_with("|added"), "proxy log:\n{}", proxy_log(&host));
    let berth = serde_json::to_string(&host.berth_argv()).unwrap();
    let out = host.python_ok(&REMOVE_WHILE_CONNECTED.replace("__BERTH__", &berth));
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("client printed {out:?}"));
    assert!(result["first"].as_str().unwrap_or("").ends_with("|before"), "{result}");
    assert_eq!(result["rm"][0], 0, "berth port rm failed: {result}");
    assert!(
        result["existing"] == "eof" || result["existing"] == "ConnectionResetError",
        "the established connection was not closed by `port rm`: {result}; proxy log:\n{}",
        proxy_log(&host)
    );
    assert_eq!(result["new"], "refused", "127.0.0.1:8082 still takes connections after `port rm`: {result}");
    // The other mapping of the same container port is untouched.
    assert!(fetch(&host, "127.0.0.1", 8083, "other").ends_with("|other"), "127.0.0.1:8083 after removing 8082");
}

const MANY_PORTS: &str = r#"
import json, socket, time
results = {}
for port in __PORTS__:
    deadline, answer = time.time() + 5, None
    while answer is None and time.time() < deadline:
        try:
            c = socket.create_connection(('127.0.0.1', port), timeout=2)
            c.settimeout(2)
            c.sendall(b'p%d' % port)
            d = c.recv(4096).decode()
            c.close()
            if d:
                answer = d
                break
        except OSError as e:
            answer_error = repr(e)
        time.sleep(0.05)
    results[port] = answer or 'FAILED'
print(json.dumps(results))
"#;

#[test]
fn a_published_range_of_1000_ports_answers_on_127_0_0_1() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.89.0.0/24");
    // 20 distinct ports of the range, different on every run (the seed is in the messages).
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() | 1;
    let mut state = seed;
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 20 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let port = 21000 + (state % 1000) as u16;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    let started = Instant::now();
    host.serve("ranged", "n1", &["127.0.0.1:21000-21999:21000-21999"], &py::addr_echo_server("0.0.0.0", &ports));
    eprintln!("run -p with 1,000 ports took {:?} (CLI included)", started.elapsed());
    assert!(
        host.wait_listening("ranged", *ports.last().unwrap(), "tcp", Duration::from_secs(10)),
        "the echo server did not start"
    );
    let listeners = host.sh_ok("ss -Hltn 'src 127.0.0.1 and sport >= :21000 and sport <= :21999' | wc -l");
    assert_eq!(listeners.trim(), "1000", "listening sockets on 127.0.0.1:21000-21999 (seed {seed})");
    let list = format!("[{}]", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
    let out = host.python_ok(&MANY_PORTS.replace("__PORTS__", &list));
    let results: Value = serde_json::from_str(&out).unwrap();
    let gw = gateway(&host, "ranged", "n1");
    let wrong: Vec<String> = ports
        .iter()
        .filter(|port| results[port.to_string()] != format!("{gw}|p{port}").as_str())
        .map(|port| format!("{port}: {}", results[port.to_string()]))
        .collect();
    assert!(
        wrong.is_empty(),
        "ports of the range that did not answer through the proxy (seed {seed}): {wrong:?}; proxy log:\n{}",
        proxy_log(&host)
    );
    the_proxy(&host);
}

#[test]
fn one_proxy_process_serves_every_published_port() {
    if !privileged() {
        return;
    }
    let host = host_with_network("10.90.0.0/24");
    host.berth_ok(&["network", "create", "--ipv6", "--subnet", "fd00:91::/64", "--subnet", "10.91.0.0/24", "n6"]);
    assert!(host.pids_named("berth-proxy").len() <= 1, "more than one proxy before anything is published");
    for (i, network) in ["n1", "n1", "n6", "n6"].iter().enumerate() {
        let name = format!("s{i}");
        let base = 9000 + 100 * i as u16;
        let specs: Vec<String> = (0..10)
            .map(|k| format!("{}:{}", base + k, 80 + k))
            .chain((0..10).map(|k| format!("{}:{}/udp", base + 50 + k, 80 + k)))
            .chain([format!("127.0.0.1:{0}-{1}:{0}-{1}", base + 20, base + 29)])
            .collect();
        let mut args = vec!["run", "-d", "--name", &name, "--network", network];
        for spec in &specs {
            args.extend_from_slice(&["-p", spec]);
        }
        // On the dual-stack network the server takes both families.
        let script = py::addr_echo_server(
            if *network == "n6" { "::" } else { "0.0.0.0" },
            &[80, 81, 82, 83, 84, 85, 86, 87, 88, 89, base + 20, base + 29],
        );
        args.extend_from_slice(&["--", "python3", "-c", &script]);
        host.berth_ok(&args);
    }
    host.berth_ok(&["port", "add", "s0", "9990-9999:9990-9999"]);
    let proxies = host.pids_named("berth-proxy");
    assert_eq!(
        proxies.len(),
        1,
        "one berth-proxy for 4 sandboxes with 130 mappings over both families, found {proxies:?}"
    );
    // And it serves them all: a sample over sandboxes, protocols and families.
    assert!(host.wait_listening("s3", 89, "tcp", Duration::from_secs(10)));
    assert!(fetch(&host, "127.0.0.1", 9000, "s0").ends_with("|s0"));
    assert!(fetch(&host, "::1", 9209, "s2").ends_with("|s2"));
    assert!(
        fetch(&host, "127.0.0.1", 9329, "s3").ends_with("|s3"),
        "127.0.0.1:9329 (of the range 127.0.0.1:9320-9329)"
    );
    assert!(host.python_ok(&py::udp_probe("::1", 9359, "u3", 5.0)).ends_with("|u3"));
    // Removing a sandbox leaves the one proxy in place.
    host.berth_ok(&["rm", "-f", "s1"]);
    assert_eq!(host.pids_named("berth-proxy"), proxies);
    assert!(fetch(&host, "127.0.0.1", 9300, "still").ends_with("|still"));
}

#[test]
fn without_the_userland_proxy_loopback_goes_through_dnat_and_stays_off_the_lan() {
    if !privileged() {
        return;
    }
    let (host, peer) = TestHost::with_lan_peer(&["--userland-proxy=false"]);
    host.berth_ok(&["network", "create", "--subnet", "10.92.0.0/24", "n1"]);
    let log = host.dir().join("udp.log");
    std::fs::write(&log, "").unwrap();
    host.serve("echo", "n1", &["127.0.0.1:8080:80"], &py::addr_echo_server("0.0.0.0", &[80]));
    host.serve(
        "dns",
        "n1",
        &["127.0.0.1:5300:53/udp", "5301:54/udp"],
        &py::udp_log_server(&[53, 54], log.to_str().unwrap()),
    );
    assert!(host.wait_listening("echo", 80, "tcp", Duration::from_secs(10)));
    assert!(host.pids_named("berth-proxy").is_empty(), "a berth-proxy runs although --userland-proxy=false");
    // Loopback DNAT needs route_localnet on berth's bridges, and only there.
    assert_eq!(host.sh_ok("cat /proc/sys/net/ipv4/conf/berth0/route_localnet").trim(), "1");
    assert_eq!(host.sh_ok("cat /proc/sys/net/ipv4/conf/all/route_localnet").trim(), "0");
    // Host processes still reach 127.0.0.1:PORT, through the kernel.
    let answer = fetch(&host, "127.0.0.1", 8080, "dnat");
    assert!(answer.ends_with("|dnat"), "127.0.0.1:8080 without the proxy: {answer}");
    // A LAN neighbour's crafted datagram to 127.0.0.1:5300 is dropped (the guard), while the same
    // crafting to the host's address on 5301 arrives (the control).
    peer.assert_crafted_loopback_dropped(5300, 5301, || std::fs::read_to_string(&log).unwrap_or_default());
}

#[test]
fn userland_proxy_only_serves_every_address_without_kernel_dnat() {
    if !privileged() {
        return;
    }
    binary_path("berth-proxy");
    let (host, peer) = TestHost::with_lan_peer(&["--userland-proxy-only"]);
    host.berth_ok(&["network", "create", "--subnet", "10.86.0.0/24", "n1"]);
    host.serve("web", "n1", &["8080:80", "8080:80/udp"], &py::addr_echo_server("0.0.0.0", &[80]));
    assert!(host.wait_listening("web", 80, "tcp", Duration::from_secs(10)), "the echo server did not start");
    assert!(host.wait_listening("web", 80, "udp", Duration::from_secs(10)), "the echo server did not start");
    let proxy_source = gateway(&host, "web", "n1");
    // From the LAN, TCP and UDP reach the sandbox through the proxy: the sandbox sees the
    // proxy's address on the bridge, not the peer's (with kernel DNAT it would see 192.0.2.2).
    let tcp = peer.python_ok(&py::tcp_client(berth_integration::HOST_LAN_IP, 8080, "lan-tcp"));
    assert_eq!(tcp, format!("{proxy_source}|lan-tcp"), "proxy log:\n{}", proxy_log(&host));
    let udp = peer.python_ok(&py::udp_client(berth_integration::HOST_LAN_IP, 8080, "lan-udp"));
    assert_eq!(udp, format!("{proxy_source}|lan-udp"));
    // The host's second address: the reply leaves from the address the client wrote to (the
    // client's socket is connected and would drop it from 192.0.2.1, which routing would pick).
    host.sh_ok("ip addr add 192.0.2.10/24 dev lan0");
    let udp = peer.python_ok(&py::udp_client("192.0.2.10", 8080, "second-address"));
    assert_eq!(udp, format!("{proxy_source}|second-address"));
    // Loopback too, as always.
    assert_eq!(fetch(&host, "127.0.0.1", 8080, "loop"), format!("{proxy_source}|loop"));
    // berth's table has no DNAT element for the mapping; masquerade and isolation stay.
    let table = host.berth_table();
    let elements: usize = berth_integration::nft::element_counts(&table)
        .iter()
        .filter(|(name, _)| name.starts_with("dnat_"))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(elements, 0, "DNAT map elements with --userland-proxy-only: {table}");
    // The mode needs the proxy: berthd refuses to start without it, in one line.
    let lonely = TestHost::without_daemon();
    let started = lonely
        .command(binary_path("berthd"))
        .args(["--userland-proxy=false", "--userland-proxy-only", "--socket"])
        .arg(lonely.socket())
        .arg("--data-root")
        .arg(lonely.dir().join("data"))
        .arg("--exec-root")
        .arg(lonely.dir().join("run"))
        .output()
        .unwrap();
    assert!(!started.status.success());
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("--userland-proxy-only needs the userland proxy"), "{stderr}");
    assert!(!lonely.socket().exists());
}
