//! The resolver's listeners against the real kernel: local answers over UDP and TCP, forwarding
//! to fake upstreams over UDP and TCP (truncation, timeouts, fallback, replies that do not
//! match), the per-sandbox limits, clients that stall or send garbage, closing on drop, and
//! watching resolv.conf.
//!
//! Every test body runs in a fresh network namespace (`berth_testns::in_fresh_netns`), where
//! only `lo` exists: the resolver listens on 127.0.0.11:53 and the fake upstreams on
//! 127.0.0.53:53 and 127.0.0.54:53 of that namespace, so nothing here reaches the machine's own.
//! Without root the tests skip with a message.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_dns::directory::Querier;
use berth_dns::forward::{forward_tcp, forward_udp};
use berth_dns::server::ResolverConfig;
use berth_dns::upstreams::watch_resolv_conf;
use berth_dns::{DirectoryBuilder, ResolvConf, Resolver, SandboxListener, RESOLVER_ADDRESS};
use berth_testns::in_fresh_netns;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

// ---------------------------------------------------------------------------------------------
// The resolver under test and its clients.

const SANDBOX: &str = "sandbox-a";
const LOCAL_NAME: &str = "web.";
const LOCAL_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
/// A name that is not berth's, so it is forwarded.
const REMOTE_NAME: &str = "www.example.com.";
/// What the fake upstreams answer for every name (documentation range, never contacted).
const REMOTE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)), 53);
const SECOND_UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54)), 53);
const RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(RESOLVER_ADDRESS), 53);
/// How long a client waits for anything the test expects to happen.
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs `body` on a tokio runtime in a fresh network namespace.
fn in_netns<F: Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    in_fresh_netns(test, || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(body());
    });
}

/// A directory where sandbox `SANDBOX` sees `LOCAL_NAME` and may forward.
fn directory() -> berth_dns::Directory {
    let mut builder = DirectoryBuilder::default();
    builder
        .network("net-a", "front", vec!["172.30.0.0/24".parse().expect("a subnet")])
        .endpoint("net-a", &["web", "web-alias"], &[IpAddr::V4(LOCAL_ADDRESS)])
        .querier(SANDBOX, Querier { networks: vec!["net-a".to_owned()], forward: true, upstreams: vec![] });
    builder.build()
}

/// A resolver knowing `directory()` and forwarding to `upstreams`, listening for `SANDBOX` on
/// 127.0.0.11:53.
fn start_resolver(config: ResolverConfig, upstreams: Vec<SocketAddr>) -> (Arc<Resolver>, SandboxListener) {
    let resolver = Resolver::new(config).expect("start the resolver");
    resolver.set_directory(directory());
    resolver.set_upstreams(upstreams);
    let listener = listen(&resolver);
    (resolver, listener)
}

fn listen(resolver: &Arc<Resolver>) -> SandboxListener {
    let udp = std::net::UdpSocket::bind(RESOLVER).expect("bind the resolver's UDP socket");
    udp.set_nonblocking(true).expect("non-blocking UDP");
    let tcp = std::net::TcpListener::bind(RESOLVER).expect("bind the resolver's TCP listener");
    tcp.set_nonblocking(true).expect("non-blocking TCP");
    resolver.listen(SANDBOX, udp, tcp).expect("listen")
}

fn query(id: u16, name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("a name"), record_type));
    message.to_vec().expect("encode a query")
}

fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("a well-formed reply")
}

fn a_addresses(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|record| match record.data {
            RData::A(A(address)) => Some(address),
            _ => None,
        })
        .collect()
}

/// A client's UDP socket on the namespace's loopback.
async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind a UDP client")
}

/// Sends `bytes` to the resolver over UDP and returns the reply.
async fn ask_udp(bytes: &[u8]) -> Message {
    let client = udp_client().await;
    client.send_to(bytes, RESOLVER).await.expect("send a UDP query");
    receive_udp(&client).await
}

async fn receive_udp(client: &UdpSocket) -> Message {
    let mut buffer = vec![0; 65535];
    let received = tokio::time::timeout(PATIENCE, client.recv_from(&mut buffer)).await;
    let (length, from) = received.expect("a UDP reply in time").expect("recv");
    assert_eq!(from, RESOLVER);
    decode(&buffer[..length])
}

async fn tcp_client() -> TcpStream {
    tokio::time::timeout(PATIENCE, TcpStream::connect(RESOLVER)).await.expect("connect in time").expect("connect")
}

/// Sends `bytes` with its length prefix on `stream` and returns the reply.
async fn ask_tcp(stream: &mut TcpStream, bytes: &[u8]) -> Message {
    let mut framed = u16::try_from(bytes.len()).expect("a short query").to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.expect("send a TCP query");
    tokio::time::timeout(PATIENCE, async {
        let mut length = [0; 2];
        stream.read_exact(&mut length).await.expect("read a reply's length");
        let mut reply = vec![0; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut reply).await.expect("read a reply");
        decode(&reply)
    })
    .await
    .expect("a TCP reply in time")
}

/// Asserts that a local name is answered over UDP and, on a new connection, over TCP.
async fn assert_local_answers(id: u16) {
    let reply = ask_udp(&query(id, LOCAL_NAME, RecordType::A)).await;
    assert_eq!(reply.metadata.id, id);
    assert_eq!(a_addresses(&reply), vec![LOCAL_ADDRESS]);
    let mut stream = tcp_client().await;
    let reply = ask_tcp(&mut stream, &query(id + 1, LOCAL_NAME, RecordType::A)).await;
    assert_eq!(reply.metadata.id, id + 1);
    assert_eq!(a_addresses(&reply), vec![LOCAL_ADDRESS]);
}

/// Waits until the server closes `stream` (EOF or reset) and returns how long that took.
async fn time_until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0; 64];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await;
        match read.expect("the server closes the connection") {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => continue,
        }
    }
}

/// Asserts that the server keeps `stream` open for at least `period`.
async fn assert_stays_open(stream: &mut TcpStream, period: Duration) {
    let mut buffer = [0; 64];
    let read = tokio::time::timeout(period, stream.read(&mut buffer)).await;
    assert!(read.is_err(), "the connection was closed or written to: {read:?}");
}

// ---------------------------------------------------------------------------------------------
// Fake upstream resolvers.

/// The reply of an upstream to `query`: `REMOTE_ADDRESS` `count` times, or nothing but TC.
fn upstream_reply(query: &Message, count: usize, truncated: bool) -> Vec<u8> {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.truncation = truncated;
    reply.add_queries(query.queries.clone());
    if !truncated {
        let name = query.queries[0].name().clone();
        for _ in 0..count {
            reply.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(REMOTE_ADDRESS))));
        }
    }
    reply.to_vec().expect("encode an upstream reply")
}

/// A UDP upstream on `address` that answers every query with `REMOTE_ADDRESS` (or only TC when
/// `truncated`). Returns the socket's task; it runs until the runtime ends.
async fn udp_upstream(address: SocketAddr, truncated: bool) {
    let socket = UdpSocket::bind(address).await.expect("bind a fake UDP upstream");
    tokio::spawn(async move {
        let mut buffer = vec![0; 65535];
        loop {
            let (length, client) = socket.recv_from(&mut buffer).await.expect("recv at the upstream");
            let reply = upstream_reply(&decode(&buffer[..length]), 1, truncated);
            socket.send_to(&reply, client).await.expect("send from the upstream");
        }
    });
}

/// A TCP upstream on `address` that answers every query with `count` A records (too many for
/// 512 bytes when `count` is large).
async fn tcp_upstream(address: SocketAddr, count: usize) {
    let listener = TcpListener::bind(address).await.expect("bind a fake TCP upstream");
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept at the upstream");
            tokio::spawn(async move {
                let mut length = [0; 2];
                while stream.read_exact(&mut length).await.is_ok() {
                    let mut query = vec![0; usize::from(u16::from_be_bytes(length))];
                    stream.read_exact(&mut query).await.expect("read a query at the upstream");
                    let reply = upstream_reply(&decode(&query), count, false);
                    let mut framed = u16::try_from(reply.len()).expect("a short reply").to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    stream.write_all(&framed).await.expect("write at the upstream");
                }
            });
        }
    });
}

/// An upstream that receives queries and never answers; the socket lives as long as the value.
async fn silent_upstream(address: SocketAddr) -> UdpSocket {
    UdpSocket::bind(address).await.expect("bind a silent upstream")
}

// ---------------------------------------------------------------------------------------------
// Local answers and forwarding.

#[test]
fn local_names_are_answered_over_udp_and_tcp() {
    in_netns("local_names_are_answered_over_udp_and_tcp", || async {
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![]);
        assert_local_answers(100).await;

        // Several queries on one connection, and an alias.
        let mut stream = tcp_client().await;
        for id in 200..205 {
            let reply = ask_tcp(&mut stream, &query(id, "web-alias.", RecordType::A)).await;
            assert_eq!(reply.metadata.id, id);
            assert_eq!(a_addresses(&reply), vec![LOCAL_ADDRESS]);
        }
    });
}

#[test]
fn a_new_directory_is_used_at_once() {
    in_netns("a_new_directory_is_used_at_once", || async {
        let (resolver, _listener) = start_resolver(ResolverConfig::default(), vec![]);
        assert_eq!(a_addresses(&ask_udp(&query(1, LOCAL_NAME, RecordType::A)).await), vec![LOCAL_ADDRESS]);

        let moved = Ipv4Addr::new(172, 30, 0, 9);
        let mut builder = DirectoryBuilder::default();
        builder
            .network("net-a", "front", vec!["172.30.0.0/24".parse().expect("a subnet")])
            .endpoint("net-a", &["web"], &[IpAddr::V4(moved)])
            .querier(SANDBOX, Querier { networks: vec!["net-a".to_owned()], forward: true, upstreams: vec![] });
        resolver.set_directory(builder.build());
        assert_eq!(a_addresses(&ask_udp(&query(2, LOCAL_NAME, RecordType::A)).await), vec![moved]);
    });
}

#[test]
fn other_names_are_forwarded_over_udp() {
    in_netns("other_names_are_forwarded_over_udp", || async {
        udp_upstream(UPSTREAM, false).await;
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![UPSTREAM]);
        let reply = ask_udp(&query(7, REMOTE_NAME, RecordType::A)).await;
        assert_eq!(reply.metadata.id, 7);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_addresses(&reply), vec![REMOTE_ADDRESS]);
    });
}

#[test]
fn a_truncated_upstream_reply_makes_the_client_retry_over_tcp() {
    in_netns("a_truncated_upstream_reply_makes_the_client_retry_over_tcp", || async {
        udp_upstream(UPSTREAM, true).await;
        tcp_upstream(UPSTREAM, 60).await;
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![UPSTREAM]);

        let reply = ask_udp(&query(8, REMOTE_NAME, RecordType::A)).await;
        assert!(reply.metadata.truncation, "the upstream's TC is passed on");
        assert!(reply.answers.is_empty());

        let mut stream = tcp_client().await;
        let reply = ask_tcp(&mut stream, &query(9, REMOTE_NAME, RecordType::A)).await;
        assert_eq!(reply.metadata.id, 9);
        assert!(!reply.metadata.truncation);
        assert_eq!(a_addresses(&reply), vec![REMOTE_ADDRESS; 60]);
    });
}

#[test]
fn a_silent_upstream_means_servfail_after_the_timeout() {
    in_netns("a_silent_upstream_means_servfail_after_the_timeout", || async {
        let _upstream = silent_upstream(UPSTREAM).await;
        let timeout = Duration::from_millis(300);
        let config = ResolverConfig { upstream_timeout: timeout, ..ResolverConfig::default() };
        let (_resolver, _listener) = start_resolver(config, vec![UPSTREAM]);

        let started = Instant::now();
        let reply = ask_udp(&query(10, REMOTE_NAME, RecordType::A)).await;
        let waited = started.elapsed();
        assert_eq!(reply.metadata.id, 10);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(reply.queries.len(), 1);
        assert!(waited >= timeout - Duration::from_millis(20), "SERVFAIL after {waited:?}, before the timeout");
        assert!(waited < timeout + Duration::from_secs(1), "SERVFAIL only after {waited:?}");

        let started = Instant::now();
        let mut stream = tcp_client().await;
        let reply = ask_tcp(&mut stream, &query(11, REMOTE_NAME, RecordType::A)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let waited = started.elapsed();
        assert!(waited < timeout + Duration::from_secs(1), "SERVFAIL over TCP after {waited:?}");
    });
}

#[test]
fn the_next_upstream_is_tried_when_one_is_silent() {
    in_netns("the_next_upstream_is_tried_when_one_is_silent", || async {
        let _silent = silent_upstream(UPSTREAM).await;
        udp_upstream(SECOND_UPSTREAM, false).await;
        let config = ResolverConfig { upstream_timeout: Duration::from_millis(300), ..ResolverConfig::default() };
        let (_resolver, _listener) = start_resolver(config, vec![UPSTREAM, SECOND_UPSTREAM]);
        let reply = ask_udp(&query(12, REMOTE_NAME, RecordType::A)).await;
        assert_eq!(a_addresses(&reply), vec![REMOTE_ADDRESS]);
    });
}

#[test]
fn forwarding_ignores_datagrams_that_do_not_answer_the_query() {
    in_netns("forwarding_ignores_datagrams_that_do_not_answer_the_query", || async {
        // An upstream that first sends what a spoofer or a stale exchange would: a wrong id, a
        // wrong question, the query itself, garbage; and only then the reply.
        let socket = UdpSocket::bind(UPSTREAM).await.expect("bind the upstream");
        tokio::spawn(async move {
            let mut buffer = vec![0; 65535];
            let (length, client) = socket.recv_from(&mut buffer).await.expect("recv at the upstream");
            let query = decode(&buffer[..length]);
            let mut wrong_id = query.clone();
            wrong_id.metadata.id = query.metadata.id.wrapping_add(1);
            let mut wrong_question = query.clone();
            wrong_question.queries[0] = Query::query(Name::from_ascii("evil.example.").expect("a name"), RecordType::A);
            for decoy in [
                upstream_reply(&wrong_id, 1, false),
                upstream_reply(&wrong_question, 1, false),
                buffer[..length].to_vec(),
                vec![0xff; 40],
            ] {
                socket.send_to(&decoy, client).await.expect("send a decoy");
            }
            // The decoys reach the resolver before the real reply: one socket, in order.
            let mut reply = decode(&upstream_reply(&query, 1, false));
            reply.answers[0].ttl = 4242;
            socket.send_to(&reply.to_vec().expect("encode"), client).await.expect("send the reply");
        });

        let reply = forward_udp(&query(13, REMOTE_NAME, RecordType::A), &[UPSTREAM], Duration::from_secs(2))
            .await
            .expect("the real reply");
        let reply = decode(&reply);
        assert_eq!(reply.metadata.id, 13);
        assert_eq!(reply.answers[0].ttl, 4242);
    });
}

#[test]
fn forwarding_gives_up_when_no_upstream_answers() {
    in_netns("forwarding_gives_up_when_no_upstream_answers", || async {
        // 127.0.0.53 has nothing bound (refused at once), 127.0.0.54 is silent.
        let _silent = silent_upstream(SECOND_UPSTREAM).await;
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let reply = forward_udp(&query(14, REMOTE_NAME, RecordType::A), &[UPSTREAM, SECOND_UPSTREAM], timeout).await;
        assert_eq!(reply, None);
        assert!(started.elapsed() < Duration::from_secs(1), "gave up only after {:?}", started.elapsed());
        let reply = forward_tcp(&query(15, REMOTE_NAME, RecordType::A), &[UPSTREAM], timeout).await;
        assert_eq!(reply, None);
    });
}

// ---------------------------------------------------------------------------------------------
// Limits and hostile clients.

#[test]
fn too_many_forwards_get_servfail_at_once_and_local_answers_go_on() {
    in_netns("too_many_forwards_get_servfail_at_once_and_local_answers_go_on", || async {
        let upstream = silent_upstream(UPSTREAM).await;
        let config = ResolverConfig {
            upstream_timeout: Duration::from_secs(3),
            max_forwards_per_sandbox: 2,
            ..ResolverConfig::default()
        };
        let (_resolver, _listener) = start_resolver(config, vec![UPSTREAM]);

        let waiting = udp_client().await;
        for id in [20, 21] {
            waiting.send_to(&query(id, REMOTE_NAME, RecordType::A), RESOLVER).await.expect("send");
        }
        // Both are in flight once the upstream has them.
        let mut buffer = [0; 512];
        for _ in 0..2 {
            tokio::time::timeout(PATIENCE, upstream.recv_from(&mut buffer)).await.expect("a forward").expect("recv");
        }

        let started = Instant::now();
        let reply = ask_udp(&query(22, REMOTE_NAME, RecordType::A)).await;
        assert_eq!(reply.metadata.id, 22);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_secs(1), "SERVFAIL only after {:?}", started.elapsed());

        let started = Instant::now();
        assert_local_answers(23).await;
        assert!(started.elapsed() < Duration::from_secs(1), "local answers took {:?}", started.elapsed());

        // The two forwards in flight end with SERVFAIL after the upstream timeout.
        for _ in 0..2 {
            assert_eq!(receive_udp(&waiting).await.metadata.response_code, ResponseCode::ServFail);
        }
    });
}

#[test]
fn too_many_tcp_connections_are_closed_at_once() {
    in_netns("too_many_tcp_connections_are_closed_at_once", || async {
        let config = ResolverConfig { max_tcp_connections_per_sandbox: 2, ..ResolverConfig::default() };
        let (_resolver, _listener) = start_resolver(config, vec![]);

        let first = tcp_client().await;
        let mut second = tcp_client().await;
        // An answer on the second proves the server has taken both (it accepts in order).
        assert_eq!(
            a_addresses(&ask_tcp(&mut second, &query(29, LOCAL_NAME, RecordType::A)).await),
            vec![LOCAL_ADDRESS]
        );
        let mut third = tcp_client().await;
        assert!(time_until_closed(&mut third).await < Duration::from_secs(1));
        assert_stays_open(&mut second, Duration::from_millis(200)).await;

        // Once the server has seen the first close, a new connection is served again.
        drop(first);
        let deadline = Instant::now() + PATIENCE;
        let mut fourth = loop {
            let mut candidate = tcp_client().await;
            let mut buffer = [0; 64];
            match tokio::time::timeout(Duration::from_millis(200), candidate.read(&mut buffer)).await {
                Err(_) => break candidate,
                Ok(_) => assert!(Instant::now() < deadline, "no connection is served after the first closed"),
            }
        };
        let reply = ask_tcp(&mut fourth, &query(30, LOCAL_NAME, RecordType::A)).await;
        assert_eq!(a_addresses(&reply), vec![LOCAL_ADDRESS]);
    });
}

#[test]
fn a_stalled_tcp_client_blocks_nobody_and_is_dropped_after_the_idle_timeout() {
    in_netns("a_stalled_tcp_client_blocks_nobody_and_is_dropped_after_the_idle_timeout", || async {
        let idle = Duration::from_secs(1);
        let config = ResolverConfig { tcp_idle_timeout: idle, ..ResolverConfig::default() };
        let (_resolver, _listener) = start_resolver(config, vec![]);

        // One byte of a length, then nothing.
        let mut stalled = tcp_client().await;
        stalled.write_all(&[0]).await.expect("send one byte");
        let started = Instant::now();

        // Half a message: a length of 40 and 10 bytes, then nothing.
        let mut half = tcp_client().await;
        let mut bytes = vec![0, 40];
        bytes.extend_from_slice(&query(40, LOCAL_NAME, RecordType::A)[..10]);
        half.write_all(&bytes).await.expect("send half a message");

        assert_local_answers(41).await;
        assert!(started.elapsed() < idle, "the answers came only after the stalled clients were dropped");

        let closed_after = started.elapsed() + time_until_closed(&mut stalled).await;
        assert!(closed_after >= idle - Duration::from_millis(50), "dropped after {closed_after:?}, before the timeout");
        assert!(closed_after < idle + Duration::from_secs(1), "dropped only after {closed_after:?}");
        time_until_closed(&mut half).await;
    });
}

#[test]
fn a_tcp_client_closing_inside_a_message_ends_its_connection() {
    in_netns("a_tcp_client_closing_inside_a_message_ends_its_connection", || async {
        // The idle timeout is long: the connection must end on EOF, not on the timeout.
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![]);
        for partial in [vec![0], vec![0, 40, 1, 2, 3], vec![0xff, 0xff, 0, 0]] {
            let mut stream = tcp_client().await;
            stream.write_all(&partial).await.expect("send part of a message");
            stream.shutdown().await.expect("half-close");
            assert!(time_until_closed(&mut stream).await < Duration::from_secs(1));
        }
        assert_local_answers(50).await;
    });
}

#[test]
fn zero_length_and_huge_tcp_messages_do_not_stop_answers() {
    in_netns("zero_length_and_huge_tcp_messages_do_not_stop_answers", || async {
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![]);

        let mut zero = tcp_client().await;
        zero.write_all(&[0, 0]).await.expect("send a zero length");
        assert!(time_until_closed(&mut zero).await < Duration::from_secs(1));

        // The largest message TCP can frame, all garbage; whatever the answer, nothing stops.
        let mut huge = tcp_client().await;
        let mut bytes = vec![0xff, 0xff];
        bytes.extend(std::iter::repeat_n(0xa5, 65535));
        huge.write_all(&bytes).await.expect("send a huge message");
        let mut drain = vec![0; 70000];
        let _ = tokio::time::timeout(Duration::from_millis(500), huge.read(&mut drain)).await;

        // A header alone: nothing can be answered, the connection ends.
        let mut header_only = tcp_client().await;
        header_only.write_all(&[0, 3, 0x12, 0x34, 0x01]).await.expect("send three bytes");
        assert!(time_until_closed(&mut header_only).await < Duration::from_secs(1));

        assert_local_answers(60).await;
    });
}

#[test]
fn garbage_datagrams_do_not_stop_answers() {
    in_netns("garbage_datagrams_do_not_stop_answers", || async {
        let (_resolver, _listener) = start_resolver(ResolverConfig::default(), vec![]);
        let client = udp_client().await;
        // Empty, shorter than a header, a header alone, a response, the largest datagram.
        let mut garbage: Vec<Vec<u8>> =
            vec![vec![], vec![0], vec![0; 11], vec![0; 12], vec![0xff; 12], vec![0xa5; 65507]];
        let mut truncated = query(70, LOCAL_NAME, RecordType::A);
        truncated.truncate(truncated.len() - 3);
        garbage.push(truncated);
        let mut state: u32 = 0x1234_5678;
        for length in [13, 100, 512, 4096] {
            garbage.push(
                (0..length)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (state >> 24) as u8
                    })
                    .collect(),
            );
        }
        for datagram in &garbage {
            client.send_to(datagram, RESOLVER).await.expect("send garbage");
        }
        assert_local_answers(71).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Lifetime.

#[test]
fn dropping_the_listener_closes_its_sockets_and_connections() {
    in_netns("dropping_the_listener_closes_its_sockets_and_connections", || async {
        let (resolver, listener) = start_resolver(ResolverConfig::default(), vec![]);
        let mut connection = tcp_client().await;
        assert_stays_open(&mut connection, Duration::from_millis(100)).await;

        drop(listener);
        assert!(time_until_closed(&mut connection).await < Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let udp = std::net::UdpSocket::bind(RESOLVER);
            let tcp = std::net::TcpListener::bind(RESOLVER);
            if udp.is_ok() && tcp.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the sockets are still bound: {udp:?} {tcp:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The same address can serve again.
        let _listener = listen(&resolver);
        assert_local_answers(80).await;
    });
}

// ---------------------------------------------------------------------------------------------
// resolv.conf.

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn next(changes: &mut tokio::sync::mpsc::UnboundedReceiver<ResolvConf>) -> ResolvConf {
    tokio::time::timeout(PATIENCE, changes.recv()).await.expect("a change in time").expect("the watcher runs")
}

#[test]
fn watching_resolv_conf_reports_changes() {
    in_netns("watching_resolv_conf_reports_changes", || async {
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_nanos();
        let name = format!("berth-dns-resolv-{}-{unique}.conf", std::process::id());
        let file = TempFile(std::env::temp_dir().join(name));
        std::fs::write(&file.0, "nameserver 192.0.2.1\n").expect("write resolv.conf");

        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel::<ResolvConf>();
        let watcher = watch_resolv_conf(file.0.clone(), Duration::from_millis(50), move |conf| {
            let _ = sender.send(conf);
        });
        let server = |address: &str| SocketAddr::new(address.parse().expect("an address"), 53);

        assert_eq!(next(&mut changes).await.nameservers, vec![server("192.0.2.1")]);

        // A change that parses the same is no change.
        std::fs::write(&file.0, "# edited\nnameserver 192.0.2.1\n").expect("rewrite resolv.conf");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(changes.try_recv().is_err(), "a comment is not a change");

        std::fs::write(&file.0, "nameserver 192.0.2.2\nsearch example.com\n").expect("rewrite resolv.conf");
        let conf = next(&mut changes).await;
        assert_eq!(conf.nameservers, vec![server("192.0.2.2")]);
        assert_eq!(conf.search, vec!["example.com"]);

        std::fs::remove_file(&file.0).expect("remove resolv.conf");
        assert_eq!(next(&mut changes).await, ResolvConf::default());

        watcher.abort();
    });
}
