//! Fuzzes berth's DNS query path: the first input byte picks the asking sandbox (one that may
//! forward, one that may not, one on two networks, an unknown one) and the transport (UDP or
//! TCP); the rest is the request. `respond` must not panic, and any reply must parse as a DNS
//! response with the request's id, within the size the transport allows.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use berth_dns::directory::Querier;
use berth_dns::query::{respond_tcp, EDNS_UDP_PAYLOAD_SIZE};
use berth_dns::{respond, Decision, Directory, DirectoryBuilder};
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;

const SANDBOXES: [&str; 4] = ["web-sb", "api-sb", "vault-sb", "stranger"];

static DIRECTORY: LazyLock<Directory> = LazyLock::new(|| {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let querier = |networks: &[&str], forward: bool| Querier {
        networks: networks.iter().map(|id| id.to_string()).collect(),
        forward,
        upstreams: Vec::new(),
    };
    let mut builder = DirectoryBuilder::default();
    builder
        .network(
            "front-id",
            "front",
            vec!["10.1.0.0/24".parse().unwrap(), "fd01::/64".parse().unwrap()],
        )
        .network("back-id", "back", vec!["10.2.0.0/24".parse().unwrap()])
        .network(
            "internal-id",
            "internal",
            vec!["10.3.0.0/24".parse().unwrap()],
        )
        .endpoint(
            "front-id",
            &["web", "www", "0123456789ab"],
            &[ip("10.1.0.2"), ip("fd01::2")],
        )
        .endpoint("front-id", &["api", "svc"], &[ip("10.1.0.3")])
        .endpoint("back-id", &["api", "svc"], &[ip("10.2.0.3")])
        .endpoint("back-id", &["db", "svc"], &[ip("10.2.0.4")])
        .endpoint("internal-id", &["vault"], &[ip("10.3.0.2")])
        .querier("web-sb", querier(&["front-id"], true))
        .querier("api-sb", querier(&["back-id", "front-id"], true))
        .querier("vault-sb", querier(&["internal-id"], false));
    for index in 0..60u8 {
        let name = format!("member{index}");
        builder.endpoint(
            "back-id",
            &[&name, "pool"],
            &[ip(&format!("10.2.0.{}", 100 + index))],
        );
    }
    builder.build()
});

static DAEMON_UPSTREAMS: LazyLock<Vec<SocketAddr>> =
    LazyLock::new(|| vec!["192.0.2.53:53".parse().unwrap()]);

fuzz_target!(|input: &[u8]| {
    let Some((&selector, request)) = input.split_first() else {
        return;
    };
    let sandbox = SANDBOXES[usize::from(selector) % SANDBOXES.len()];
    let over_tcp = selector & 0x80 != 0;
    let (decision, size_limit) = if over_tcp {
        (
            respond_tcp(&DIRECTORY, sandbox, request, &DAEMON_UPSTREAMS),
            usize::from(u16::MAX),
        )
    } else {
        (
            respond(&DIRECTORY, sandbox, request, &DAEMON_UPSTREAMS),
            usize::from(EDNS_UDP_PAYLOAD_SIZE),
        )
    };
    match decision {
        Decision::Drop => assert!(
            request.len() < 12 || request[2] & 0x80 != 0,
            "dropped a query"
        ),
        Decision::Forward(upstreams) => assert!(!upstreams.is_empty()),
        Decision::Reply(bytes) => {
            assert!(
                bytes.len() <= size_limit,
                "a reply of {} bytes",
                bytes.len()
            );
            let reply = Message::from_vec(&bytes).expect("replies parse");
            assert_eq!(
                reply.metadata.id,
                u16::from_be_bytes([request[0], request[1]])
            );
            assert_eq!(reply.metadata.message_type, MessageType::Response);
        }
    }
});
