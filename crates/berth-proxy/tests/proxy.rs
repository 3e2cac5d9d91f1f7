//! berth-proxy as berthd drives it, against the real kernel: the built binary is started with a
//! control socket in a temporary directory, and a stand-in for berthd binds host sockets, passes
//! them in with SCM_RIGHTS and checks the traffic of TCP and UDP clients against local backends:
//! both directions, half-close, resets, Remove, List, control reconnects, UDP flows and their
//! bounds, a 200 MB transfer and ten thousand concurrent connections.
//!
//! Every test body runs in a fresh network namespace: the test re-runs its own binary under
//! `unshare --net`, and the child brings up its loopback and runs the body after checking it is
//! not in the namespace the test started in. All addresses are that namespace's 127.0.0.1, so
//! nothing here touches the machine's own namespace. Without root the tests skip with a message.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use berth_sys::fdpass::{recv_with_fds, send_with_fds};
use berth_types::{PortProtocol, ProxyMapping, ProxyReply, ProxyRequest};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

// ---------------------------------------------------------------------------------------------
// A fresh network namespace per test.

use berth_testns::in_fresh_netns;

// ---------------------------------------------------------------------------------------------
// The proxy process and a stand-in for berthd.

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("berth-proxy-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running berth-proxy, killed when dropped (and by the kernel if the test dies first).
struct Proxy {
    process: Child,
    control_path: PathBuf,
    options: Vec<String>,
    _dir: TempDir,
}

impl Proxy {
    fn start(test: &str, options: &[&str]) -> Self {
        let dir = TempDir::new(test);
        let control_path = dir.0.join("proxy.sock");
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        let process = Self::spawn(&control_path, &options);
        Self { process, control_path, options, _dir: dir }
    }

    fn spawn(control_path: &Path, options: &[String]) -> Child {
        Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(env!("CARGO_BIN_EXE_berth-proxy"))
            .arg("--control")
            .arg(control_path)
            .args(["--log-level", "debug"])
            .args(options)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start berth-proxy")
    }

    /// Kills the proxy without warning (its socket file stays behind) and starts a new one.
    fn crash_and_restart(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
        assert!(self.control_path.exists(), "a killed proxy leaves its socket file behind");
        self.process = Self::spawn(&self.control_path, &self.options);
    }

    /// A new control connection, once the proxy listens.
    fn control(&self) -> Control {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).expect("create a seqpacket socket");
            match socket.connect(&SockAddr::unix(&self.control_path).unwrap()) {
                Ok(()) => {
                    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    return Control(socket);
                }
                Err(_) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot connect to the proxy's control socket: {e}"),
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// berthd's end of a control connection.
struct Control(Socket);

fn mapping(id: &str, protocol: PortProtocol, backend: SocketAddr) -> ProxyMapping {
    ProxyMapping { id: id.into(), protocol, backend }
}

impl Control {
    fn send_raw(&self, payload: &[u8], fds: &[BorrowedFd<'_>]) {
        send_with_fds(self.0.as_fd(), payload, fds).expect("send a control message");
    }

    /// The next reply and its descriptors; None when the proxy closed the connection.
    fn receive(&self) -> Option<(ProxyReply, Vec<OwnedFd>)> {
        let mut buffer = vec![0u8; 64 * 1024];
        let (length, fds) = recv_with_fds(self.0.as_fd(), &mut buffer).expect("receive a control reply");
        if length == 0 {
            return None;
        }
        Some((serde_json::from_slice(&buffer[..length]).expect("a reply parses"), fds))
    }

    fn call(&self, request: &ProxyRequest, fds: &[BorrowedFd<'_>]) -> ProxyReply {
        self.send_raw(&serde_json::to_vec(request).unwrap(), fds);
        let (reply, fds) = self.receive().expect("the proxy replies");
        assert!(fds.is_empty(), "only Mapping replies carry sockets");
        reply
    }

    fn add(&self, id: &str, protocol: PortProtocol, backend: SocketAddr, socket: BorrowedFd<'_>) -> ProxyReply {
        self.call(&ProxyRequest::Add(mapping(id, protocol, backend)), &[socket])
    }

    fn remove(&self, id: &str) -> ProxyReply {
        self.call(&ProxyRequest::Remove { id: id.into() }, &[])
    }

    fn list(&self) -> Vec<(ProxyMapping, OwnedFd)> {
        self.send_raw(&serde_json::to_vec(&ProxyRequest::List).unwrap(), &[]);
        let mut listed = Vec::new();
        loop {
            match self.receive().expect("the proxy answers List") {
                (ProxyReply::Mapping(mapping), mut fds) => {
                    assert_eq!(fds.len(), 1, "a Mapping reply carries its socket");
                    listed.push((mapping, fds.remove(0)));
                }
                (ProxyReply::End, _) => return listed,
                (other, _) => panic!("unexpected reply to List: {other:?}"),
            }
        }
    }
}

fn assert_failed(reply: ProxyReply, mentions: &str) {
    match reply {
        ProxyReply::Failed { message } => {
            assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
            assert!(message.starts_with(char::is_lowercase), "{message:?} should start lower case");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Host sockets (berthd binds them) and backends (standing in for sandboxes).

/// A listening socket on a free port of 127.0.0.1.
fn published_tcp() -> (TcpListener, SocketAddr) {
    published_tcp_on(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A listening socket on `address`, with the backlog Go (and so docker-proxy) uses,
/// net.core.somaxconn (-1 asks for it), rather than std's 128.
fn published_tcp_on(address: SocketAddr) -> (TcpListener, SocketAddr) {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None).unwrap();
    socket.bind(&SockAddr::from(address)).expect("bind a published tcp port");
    socket.listen(-1).unwrap();
    let listener = TcpListener::from(socket);
    let address = listener.local_addr().unwrap();
    (listener, address)
}

fn published_udp() -> (UdpSocket, SocketAddr) {
    published_udp_on("127.0.0.1:0")
}

fn published_udp_on(address: &str) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind(address).expect("bind a published udp port");
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    published_tcp().1
}

/// Serves each connection of a fresh listener with `serve` on its own thread.
fn tcp_backend(serve: impl Fn(TcpStream) + Send + Sync + Copy + 'static) -> SocketAddr {
    let (listener, address) = published_tcp();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    address
}

/// Echoes every byte, and passes EOF on as its own shutdown.
fn tcp_echo_backend() -> SocketAddr {
    tcp_backend(|mut stream| {
        let mut reader = stream.try_clone().unwrap();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    })
}

/// Reads until EOF, and only then answers how many bytes arrived.
fn tcp_counting_backend() -> SocketAddr {
    tcp_backend(|mut stream| {
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        let _ = write!(stream, "received {} bytes", received.len());
    })
}

/// Greets each connection with "!", then reports how its read side ended.
fn tcp_observing_backend() -> (SocketAddr, mpsc::Receiver<Result<usize, ErrorKind>>) {
    let (listener, address) = published_tcp();
    let (report, reports) = mpsc::channel();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let report = report.clone();
            thread::spawn(move || {
                stream.write_all(b"!").unwrap();
                let mut received = Vec::new();
                let _ = report.send(stream.read_to_end(&mut received).map_err(|e| e.kind()));
            });
        }
    });
    (address, reports)
}

/// Reads one byte from each connection, then resets it.
fn tcp_resetting_backend() -> SocketAddr {
    tcp_backend(|mut stream| {
        let mut byte = [0u8];
        let _ = stream.read_exact(&mut byte);
        SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    })
}

/// Echoes each datagram, except that "who?" is answered with the sender's address.
fn udp_echo_backend() -> SocketAddr {
    let (socket, address) = published_udp();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let (length, peer) = socket.recv_from(&mut buffer).unwrap();
            if &buffer[..length] == b"who?" {
                socket.send_to(peer.to_string().as_bytes(), peer).unwrap();
            } else {
                socket.send_to(&buffer[..length], peer).unwrap();
            }
        }
    });
    address
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect through the proxy");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).expect("read the echo");
    assert_eq!(echoed, message);
}

/// The proxy closed (or reset) `stream` within a second.
fn assert_closed_promptly(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    let mut rest = [0u8; 16];
    match stream.read(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?} after {:?}", started.elapsed()),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn udp_client() -> UdpSocket {
    udp_client_on("127.0.0.1:0")
}

fn udp_client_on(address: &str) -> UdpSocket {
    let socket = UdpSocket::bind(address).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    socket
}

/// Sends `message` to `address` and returns the reply, or None if none came within `wait`.
fn udp_exchange(client: &UdpSocket, address: SocketAddr, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
    client.set_read_timeout(Some(wait)).unwrap();
    client.send_to(message, address).unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    match client.recv_from(&mut buffer) {
        Ok((length, from)) => {
            assert_eq!(from, address, "replies come from the published address");
            Some(buffer[..length].to_vec())
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("udp receive failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

#[test]
fn a_proxied_connection_has_keepalives_on_both_sockets_and_a_nodelay_listener() {
    in_fresh_netns("a_proxied_connection_has_keepalives_on_both_sockets_and_a_nodelay_listener", || {
        let proxy = Proxy::start("tcp-tuning", &[]);
        let (socket, address) = published_tcp();
        let backend = tcp_echo_backend();
        assert_eq!(proxy.control().add("tuned", PortProtocol::Tcp, backend, socket.as_fd()), ProxyReply::Done);
        // The proxy tunes the listener once; accepted clients inherit it.
        let listener = SockRef::from(&socket);
        assert!(listener.tcp_nodelay().unwrap() && listener.keepalive().unwrap());
        assert_eq!(listener.tcp_keepalive_time().unwrap(), Duration::from_secs(60));
        let mut client = connect(address);
        assert_echoes(&mut client, b"tuned?");
        // The proxy's two sockets of this connection (its side of the client's connection and
        // its connection to the backend) run keepalive timers; the test's own sockets do not.
        let listing = Command::new("ss").args(["-Htno", "state", "established"]).output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        let client_port = client.local_addr().unwrap().port();
        let proxy_side = |local: String, peer_port: Option<u16>| {
            listing.lines().find(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3
                    && fields[2] == local
                    && peer_port.is_none_or(|port| fields[3].ends_with(&format!(":{port}")))
            })
        };
        let to_client = proxy_side(address.to_string(), Some(client_port))
            .unwrap_or_else(|| panic!("no proxy socket for the client in:\n{listing}"));
        assert!(to_client.contains("timer:(keepalive"), "{to_client}");
        let to_backend = listing
            .lines()
            .find(|line| line.split_whitespace().nth(3) == Some(&backend.to_string()))
            .unwrap_or_else(|| panic!("no proxy socket to the backend in:\n{listing}"));
        assert!(to_backend.contains("timer:(keepalive"), "{to_backend}");
        let own = proxy_side(client.local_addr().unwrap().to_string(), None).unwrap();
        assert!(!own.contains("keepalive"), "the test's socket has no keepalive: {own}");
    });
}

#[test]
fn tcp_bytes_flow_both_ways_and_half_close_is_passed_on() {
    in_fresh_netns("tcp_bytes_flow_both_ways_and_half_close_is_passed_on", || {
        let proxy = Proxy::start("tcp-both-ways", &[]);
        let control = proxy.control();
        let (echo_socket, echo_address) = published_tcp();
        assert_eq!(control.add("echo", PortProtocol::Tcp, tcp_echo_backend(), echo_socket.as_fd()), ProxyReply::Done);
        let mut client = connect(echo_address);
        assert_echoes(&mut client, b"hello");
        assert_echoes(&mut client, b"and a second message");
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("the backend's EOF arrives");
        assert!(rest.is_empty());

        // IPv6 clients of an IPv4 backend: what kernel NAT cannot do.
        let (v6_socket, v6_address) = published_tcp_on("[::1]:0".parse().unwrap());
        assert_eq!(control.add("echo-v6", PortProtocol::Tcp, tcp_echo_backend(), v6_socket.as_fd()), ProxyReply::Done);
        assert_echoes(&mut connect(v6_address), b"from ::1 to 127.0.0.1");

        let (counting_socket, counting_address) = published_tcp();
        let reply = control.add("counting", PortProtocol::Tcp, tcp_counting_backend(), counting_socket.as_fd());
        assert_eq!(reply, ProxyReply::Done);
        let mut client = connect(counting_address);
        client.write_all(&vec![7u8; 100_000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("the answer after EOF");
        assert_eq!(answer, "received 100000 bytes");
    });
}

#[test]
fn tcp_resets_are_passed_on_and_a_down_backend_resets_the_client() {
    in_fresh_netns("tcp_resets_are_passed_on_and_a_down_backend_resets_the_client", || {
        let proxy = Proxy::start("tcp-resets", &[]);
        let control = proxy.control();

        let (down_socket, down_address) = published_tcp();
        assert_eq!(control.add("down", PortProtocol::Tcp, closed_port(), down_socket.as_fd()), ProxyReply::Done);
        let mut client = connect(down_address);
        client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let started = Instant::now();
        let outcome = client.read(&mut [0u8; 16]);
        assert_eq!(outcome.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "a down backend resets the client");
        assert!(started.elapsed() < Duration::from_secs(1));

        let (observed_socket, observed_address) = published_tcp();
        let (backend, reports) = tcp_observing_backend();
        assert_eq!(control.add("observed", PortProtocol::Tcp, backend, observed_socket.as_fd()), ProxyReply::Done);
        let mut client = connect(observed_address);
        let mut greeting = [0u8];
        client.read_exact(&mut greeting).expect("the backend's greeting");
        SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        let seen = reports.recv_timeout(Duration::from_secs(2)).expect("the backend reports");
        assert_eq!(seen, Err(ErrorKind::ConnectionReset), "a client's reset reaches the backend");

        let (resetting_socket, resetting_address) = published_tcp();
        let reply = control.add("resetting", PortProtocol::Tcp, tcp_resetting_backend(), resetting_socket.as_fd());
        assert_eq!(reply, ProxyReply::Done);
        let mut client = connect(resetting_address);
        client.write_all(b"x").unwrap();
        let outcome = client.read(&mut [0u8; 16]);
        assert_eq!(
            outcome.map_err(|e| e.kind()),
            Err(ErrorKind::ConnectionReset),
            "a backend's reset reaches the client"
        );
    });
}

#[test]
fn remove_closes_the_listener_and_its_connections() {
    in_fresh_netns("remove_closes_the_listener_and_its_connections", || {
        let proxy = Proxy::start("remove", &[]);
        let control = proxy.control();
        let backend = tcp_echo_backend();
        let (removed_socket, removed_address) = published_tcp();
        let (kept_socket, kept_address) = published_tcp();
        assert_eq!(control.add("removed", PortProtocol::Tcp, backend, removed_socket.as_fd()), ProxyReply::Done);
        assert_eq!(control.add("kept", PortProtocol::Tcp, backend, kept_socket.as_fd()), ProxyReply::Done);
        let mut cut = connect(removed_address);
        assert_echoes(&mut cut, b"before");
        let mut kept = connect(kept_address);
        assert_echoes(&mut kept, b"before");

        assert_eq!(control.remove("removed"), ProxyReply::Done);
        assert_failed(control.remove("removed"), "removed");
        // berthd holds its own copy of the host socket; it closes it after a Remove.
        drop(removed_socket);
        let refused = TcpStream::connect(removed_address).map_err(|e| e.kind());
        assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));
        assert_closed_promptly(&mut cut);

        assert_echoes(&mut kept, b"after");
        assert_echoes(&mut connect(kept_address), b"a new connection");
    });
}

#[test]
fn tcp_large_transfer_arrives_intact() {
    in_fresh_netns("tcp_large_transfer_arrives_intact", || {
        const BLOCK: usize = 64 * 1024;
        const BLOCKS: u64 = 3200; // 200 MiB each way
        let proxy = Proxy::start("large-transfer", &[]);
        let control = proxy.control();
        let (socket, address) = published_tcp();
        assert_eq!(control.add("bulk", PortProtocol::Tcp, tcp_echo_backend(), socket.as_fd()), ProxyReply::Done);

        // Each block: its index, then the same pseudo-random body; lost, doubled or reordered
        // bytes show up as a wrong index or body.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let body: Vec<u8> = (0..BLOCK - 8)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let client = connect(address);
        let mut writer = client.try_clone().unwrap();
        let sent_body = body.clone();
        let started = Instant::now();
        let sender = thread::spawn(move || {
            let mut block = vec![0u8; BLOCK];
            block[8..].copy_from_slice(&sent_body);
            for index in 0..BLOCKS {
                block[..8].copy_from_slice(&index.to_le_bytes());
                writer.write_all(&block).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = client;
        let mut block = vec![0u8; BLOCK];
        for index in 0..BLOCKS {
            reader.read_exact(&mut block).expect("read an echoed block");
            assert_eq!(block[..8], index.to_le_bytes(), "block {index} arrives in order");
            assert!(block[8..] == body[..], "block {index} arrives intact");
        }
        assert_eq!(reader.read(&mut block).unwrap(), 0, "EOF follows the last block");
        sender.join().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let megabytes = (BLOCKS as usize * BLOCK) as f64 / 1e6;
        eprintln!(
            "{megabytes:.0} MB each way through the proxy in {seconds:.2} s ({:.0} MB/s each way)",
            megabytes / seconds
        );
    });
}

#[test]
fn ten_thousand_concurrent_connections() {
    in_fresh_netns("ten_thousand_concurrent_connections", || {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        // This process holds both ends of every connection, the proxy its two sockets: both
        // need two descriptors per connection, so the hard limit may call for fewer.
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise this test's open file limit");
        let connections = 10_000usize.min((hard as usize).saturating_sub(1000) / 2);
        if connections < 10_000 {
            eprintln!("the open file limit ({hard}) allows {connections} connections here, not 10000");
        }

        let proxy = Proxy::start("many", &[]);
        let control = proxy.control();
        let (backend_listener, backend) = published_tcp();
        let (accepted_tx, accepted) = mpsc::channel();
        thread::spawn(move || {
            for stream in backend_listener.incoming() {
                accepted_tx.send(stream.expect("the backend accepts")).unwrap();
            }
        });
        let (socket, address) = published_tcp();
        assert_eq!(control.add("many", PortProtocol::Tcp, backend, socket.as_fd()), ProxyReply::Done);

        let started = Instant::now();
        let clients: Vec<TcpStream> = (0..connections).map(|_| TcpStream::connect(address).expect("connect")).collect();
        let mut backend_sides = Vec::new();
        for _ in 0..connections {
            backend_sides
                .push(accepted.recv_timeout(Duration::from_secs(10)).expect("every connection reaches the backend"));
        }
        for (index, mut client) in clients.iter().enumerate() {
            client.write_all(&(index as u32).to_le_bytes()).unwrap();
        }
        let mut seen = vec![false; connections];
        for stream in &mut backend_sides {
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut index = [0u8; 4];
            stream.read_exact(&mut index).expect("each connection carries its index");
            seen[u32::from_le_bytes(index) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every client's bytes arrived on its own backend connection");
        let descriptors = std::fs::read_dir(format!("/proc/{}/fd", proxy.process.id())).unwrap().count();
        eprintln!(
            "{connections} concurrent connections through the proxy in {:.2} s; the proxy holds {descriptors} descriptors",
            started.elapsed().as_secs_f64()
        );
        assert!(descriptors < connections * 2 + 1000, "idle connections hold their two sockets and no pipes");
    });
}

// ---------------------------------------------------------------------------------------------
// UDP

#[test]
fn udp_clients_get_their_own_replies() {
    in_fresh_netns("udp_clients_get_their_own_replies", || {
        let proxy = Proxy::start("udp-clients", &[]);
        let control = proxy.control();
        let (socket, address) = published_udp();
        assert_eq!(control.add("dns", PortProtocol::Udp, udp_echo_backend(), socket.as_fd()), ProxyReply::Done);

        let clients: Vec<_> = (0..2)
            .map(|client| {
                thread::spawn(move || {
                    let socket = udp_client();
                    for round in 0..50 {
                        let message = format!("client {client} round {round}");
                        let reply = udp_exchange(&socket, address, message.as_bytes(), Duration::from_secs(2));
                        assert_eq!(reply.as_deref(), Some(message.as_bytes()), "each client gets its own replies");
                    }
                    let backend_view =
                        udp_exchange(&socket, address, b"who?", Duration::from_secs(2)).expect("a reply");
                    String::from_utf8(backend_view).unwrap()
                })
            })
            .collect();
        let flow_addresses: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert_ne!(flow_addresses[0], flow_addresses[1], "each client has its own flow to the backend");

        let (v6_socket, v6_address) = published_udp_on("[::1]:0");
        assert_eq!(control.add("dns-v6", PortProtocol::Udp, udp_echo_backend(), v6_socket.as_fd()), ProxyReply::Done);
        let client = udp_client_on("[::1]:0");
        let reply = udp_exchange(&client, v6_address, b"from ::1 to 127.0.0.1", Duration::from_secs(2));
        assert_eq!(reply.as_deref(), Some(&b"from ::1 to 127.0.0.1"[..]));

        let largest = vec![0xa5u8; 65_507];
        let client = udp_client();
        let reply = udp_exchange(&client, address, &largest, Duration::from_secs(2));
        assert_eq!(reply.as_deref(), Some(&largest[..]), "the largest IPv4 datagram goes through");
    });
}

#[test]
fn udp_replies_on_a_wildcard_socket_leave_from_the_address_the_client_wrote_to() {
    in_fresh_netns("udp_replies_on_a_wildcard_socket_leave_from_the_address_the_client_wrote_to", || {
        let proxy = Proxy::start("udp-wildcard", &[]);
        let control = proxy.control();
        berth_testns::add_local_ipv6("2001:db8::2");
        let v6_wildcard = Socket::new(Domain::IPV6, Type::DGRAM, None).unwrap();
        v6_wildcard.set_only_v6(true).unwrap();
        v6_wildcard.bind(&SockAddr::from("[::]:0".parse::<SocketAddr>().unwrap())).unwrap();
        let v6_wildcard: UdpSocket = v6_wildcard.into();
        let (v4_wildcard, _) = published_udp_on("0.0.0.0:0");
        let backend = udp_echo_backend();
        for (id, socket, client_bind, written_to) in [
            // All of 127/8 is the host's, but routing would answer 127.0.0.2's client from 127.0.0.1.
            ("wild-v4", &v4_wildcard, "127.0.0.1:0", "127.0.0.2"),
            ("wild-v6", &v6_wildcard, "[::1]:0", "2001:db8::2"),
        ] {
            assert_eq!(control.add(id, PortProtocol::Udp, backend, socket.as_fd()), ProxyReply::Done);
            let target = SocketAddr::new(written_to.parse().unwrap(), socket.local_addr().unwrap().port());
            // A connected client takes datagrams from `target` only.
            let client = udp_client_on(client_bind);
            client.connect(target).unwrap();
            client.send(b"from whom?").unwrap();
            let mut buffer = [0u8; 64];
            let length = client.recv(&mut buffer).unwrap_or_else(|e| panic!("{id}: no reply from {target}: {e}"));
            assert_eq!(&buffer[..length], b"from whom?");
        }
    });
}

#[test]
fn udp_flows_expire_and_are_bounded() {
    in_fresh_netns("udp_flows_expire_and_are_bounded", || {
        let proxy = Proxy::start("udp-bounds", &["--udp-idle-timeout", "1", "--udp-max-flows", "1"]);
        let control = proxy.control();
        let (socket, address) = published_udp();
        assert_eq!(control.add("bounded", PortProtocol::Udp, udp_echo_backend(), socket.as_fd()), ProxyReply::Done);
        let first = udp_client();
        let second = udp_client();
        let wait = Duration::from_millis(300);

        let first_flow = udp_exchange(&first, address, b"who?", wait).expect("the first client gets a flow");
        assert_eq!(udp_exchange(&second, address, b"hello", wait), None, "the table is full");
        assert_eq!(udp_exchange(&first, address, b"who?", wait), Some(first_flow.clone()), "a flow keeps its socket");

        // The first flow idles past its 1 s timeout; then the second client gets its place.
        let deadline = Instant::now() + Duration::from_secs(5);
        while udp_exchange(&second, address, b"who?", wait).is_none() {
            assert!(Instant::now() < deadline, "the idle flow never expired to free its place");
        }
        assert_eq!(udp_exchange(&first, address, b"hello", wait), None, "the table is full again");
    });
}

// ---------------------------------------------------------------------------------------------
// The control connection

#[test]
fn serving_survives_control_reconnects_and_list_returns_working_sockets() {
    in_fresh_netns("serving_survives_control_reconnects_and_list_returns_working_sockets", || {
        let proxy = Proxy::start("reconnects", &[]);
        let tcp_backend = tcp_echo_backend();
        let udp_backend = udp_echo_backend();
        let (web_socket, web_address) = published_tcp();
        let (dns_socket, dns_address) = published_udp();
        let first = proxy.control();
        assert_eq!(first.add("web", PortProtocol::Tcp, tcp_backend, web_socket.as_fd()), ProxyReply::Done);
        assert_eq!(first.add("dns", PortProtocol::Udp, udp_backend, dns_socket.as_fd()), ProxyReply::Done);
        let mut established = connect(web_address);
        assert_echoes(&mut established, b"before berthd went away");

        // berthd exits: its control connection and its copies of the host sockets close.
        drop(first);
        drop(web_socket);
        drop(dns_socket);
        thread::sleep(Duration::from_millis(100));
        assert_echoes(&mut established, b"while berthd is away");
        assert_echoes(&mut connect(web_address), b"a new connection");
        let client = udp_client();
        assert_eq!(udp_exchange(&client, dns_address, b"ping", Duration::from_secs(2)).as_deref(), Some(&b"ping"[..]));

        // berthd is back: List gives back the mappings and working copies of their sockets.
        let second = proxy.control();
        let listed = second.list();
        let summary: Vec<_> = listed.iter().map(|(m, _)| (m.id.as_str(), m.protocol, m.backend)).collect();
        assert_eq!(summary, [("dns", PortProtocol::Udp, udp_backend), ("web", PortProtocol::Tcp, tcp_backend)]);
        let bound: Vec<SocketAddr> =
            listed.iter().map(|(_, fd)| SockRef::from(fd).local_addr().unwrap().as_socket().unwrap()).collect();
        assert_eq!(bound, [dns_address, web_address]);
        let web_copy = &listed[1].1;
        assert!(SockRef::from(web_copy).is_listener().unwrap());

        // Adding the very same mapping and socket again leaves its connections alone.
        assert_eq!(second.add("web", PortProtocol::Tcp, tcp_backend, web_copy.as_fd()), ProxyReply::Done);
        assert_echoes(&mut established, b"after the re-add");

        // A newer connection replaces the current one.
        let third = proxy.control();
        assert!(second.receive().is_none(), "the replaced control connection is closed");
        assert_eq!(third.remove("web"), ProxyReply::Done);
        drop(listed);
        assert_closed_promptly(&mut established);
        let refused = TcpStream::connect(web_address).map_err(|e| e.kind());
        assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));
    });
}

#[test]
fn add_refuses_what_it_cannot_serve_and_keeps_what_runs() {
    in_fresh_netns("add_refuses_what_it_cannot_serve_and_keeps_what_runs", || {
        let proxy = Proxy::start("refusals", &[]);
        let control = proxy.control();
        let backend = tcp_echo_backend();
        let (web_socket, web_address) = published_tcp();
        assert_eq!(control.add("web", PortProtocol::Tcp, backend, web_socket.as_fd()), ProxyReply::Done);
        let mut established = connect(web_address);
        assert_echoes(&mut established, b"hello");

        let (udp_socket, _) = published_udp();
        assert_failed(control.add("web", PortProtocol::Tcp, backend, udp_socket.as_fd()), "web");
        let (tcp_listener, _) = published_tcp();
        assert_failed(control.add("web-udp", PortProtocol::Udp, backend, tcp_listener.as_fd()), "udp");
        let not_listening = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        not_listening.bind(&SockAddr::from("127.0.0.1:0".parse::<SocketAddr>().unwrap())).unwrap();
        assert_failed(control.add("idle", PortProtocol::Tcp, backend, not_listening.as_fd()), "listening");
        assert_failed(control.add("stream", PortProtocol::Sctp, backend, tcp_listener.as_fd()), "sctp");
        assert_failed(control.call(&ProxyRequest::Add(mapping("bare", PortProtocol::Tcp, backend)), &[]), "bare");
        control.send_raw(b"{\"Op\":\"Explode\"}", &[]);
        assert!(matches!(control.receive(), Some((ProxyReply::Failed { .. }, _))));

        // The refused replacement left the running mapping and its connection alone.
        assert_echoes(&mut established, b"still here");
        let listed = control.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, mapping("web", PortProtocol::Tcp, backend));
    });
}

#[test]
fn a_restart_replaces_a_stale_socket_and_sigterm_stops_quietly() {
    in_fresh_netns("a_restart_replaces_a_stale_socket_and_sigterm_stops_quietly", || {
        let mut proxy = Proxy::start("restart", &[]);
        drop(proxy.control());
        proxy.crash_and_restart();
        let control = proxy.control();
        let (socket, address) = published_tcp();
        assert_eq!(control.add("web", PortProtocol::Tcp, tcp_echo_backend(), socket.as_fd()), ProxyReply::Done);
        assert_echoes(&mut connect(address), b"hello");

        kill(Pid::from_raw(proxy.process.id() as i32), Signal::SIGTERM).unwrap();
        let status = proxy.process.wait().unwrap();
        assert!(status.success(), "the proxy exits cleanly on SIGTERM: {status}");
        assert!(!proxy.control_path.exists(), "the control socket is removed");
        let mut stdout = String::new();
        proxy.process.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        assert_eq!(stdout, "", "the proxy prints nothing on stdout");
    });
}
