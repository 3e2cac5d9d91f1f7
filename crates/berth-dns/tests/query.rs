//! The query path through its public API: queries built with hickory's `Message`, replies
//! parsed back, checked rule by rule against a small directory (see the module docs of
//! `berth_dns::query`); then property tests feeding random bytes and mutated queries, which
//! must never panic and must get well-formed replies.

use std::net::{IpAddr, SocketAddr};

use berth_dns::directory::Querier;
use berth_dns::query::{respond_tcp, EDNS_UDP_PAYLOAD_SIZE, LOCAL_TTL};
use berth_dns::{respond, Decision, Directory, DirectoryBuilder};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;

const QUERY_ID: u16 = 0xbe27;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn socket(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn daemon_upstreams() -> Vec<SocketAddr> {
    vec![socket("192.0.2.53:53")]
}

fn querier(networks: &[&str], forward: bool, upstreams: &[&str]) -> Querier {
    Querier {
        networks: networks.iter().map(|id| id.to_string()).collect(),
        forward,
        upstreams: upstreams.iter().map(|upstream| socket(upstream)).collect(),
    }
}

/// Three networks: "front" (dual stack) and "back", with api on both and the alias svc
/// shared by api and db on back, and an internal one. Sandbox web-sb is on front, db-sb on
/// back (with upstreams of its own), api-sb on back then front, vault-sb on the internal one.
fn directory() -> Directory {
    let mut builder = DirectoryBuilder::default();
    builder
        .network("front-id", "Front", vec!["10.1.0.0/24".parse().unwrap(), "fd01::/64".parse().unwrap()])
        .network("back-id", "back", vec!["10.2.0.0/24".parse().unwrap()])
        .network("internal-id", "internal", vec!["10.3.0.0/24".parse().unwrap()])
        .endpoint("front-id", &["web", "WWW", "0123456789ab"], &[ip("10.1.0.2"), ip("fd01::2")])
        .endpoint("front-id", &["api", "svc"], &[ip("10.1.0.3")])
        .endpoint("back-id", &["api", "svc"], &[ip("10.2.0.3")])
        .endpoint("back-id", &["db", "svc"], &[ip("10.2.0.4")])
        .endpoint("internal-id", &["vault"], &[ip("10.3.0.2")])
        .querier("web-sb", querier(&["front-id"], true, &[]))
        .querier("db-sb", querier(&["back-id"], true, &["9.9.9.9:53"]))
        .querier("api-sb", querier(&["back-id", "front-id"], true, &[]))
        .querier("vault-sb", querier(&["internal-id"], false, &[]));
    builder.build()
}

/// A query for `name` of type `record_type`, with RD set.
fn query(name: &str, record_type: RecordType) -> Message {
    let mut message = Message::new(QUERY_ID, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message
}

fn with_edns(mut message: Message, max_payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(max_payload);
    message.set_edns(edns);
    message
}

fn ask(directory: &Directory, sandbox: &str, message: &Message) -> Decision {
    respond(directory, sandbox, &message.to_vec().unwrap(), &daemon_upstreams())
}

/// The reply of `decision`, parsed; checks it answers query `QUERY_ID`.
fn parsed_reply(decision: Decision) -> Message {
    let Decision::Reply(bytes) = decision else {
        panic!("expected a reply, got {decision:?}");
    };
    let reply = Message::from_vec(&bytes).expect("the reply parses");
    assert_eq!(reply.metadata.id, QUERY_ID);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

fn ask_reply(sandbox: &str, name: &str, record_type: RecordType) -> Message {
    parsed_reply(ask(&directory(), sandbox, &query(name, record_type)))
}

fn answer_data(reply: &Message) -> Vec<RData> {
    reply.answers.iter().map(|record| record.data.clone()).collect()
}

fn a(text: &str) -> RData {
    RData::A(A(text.parse().unwrap()))
}

fn aaaa(text: &str) -> RData {
    RData::AAAA(AAAA(text.parse().unwrap()))
}

fn ptr(text: &str) -> RData {
    RData::PTR(PTR(Name::from_ascii(text).unwrap()))
}

/// Checks `reply` is a local (authoritative) answer with `data`.
fn assert_local_answer(reply: &Message, data: &[RData]) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(answer_data(reply), data);
}

/// The `ip6.arpa.` name of IPv6 address `text`.
fn ip6_arpa(text: &str) -> String {
    let address: std::net::Ipv6Addr = text.parse().unwrap();
    let nibbles: String =
        format!("{:032x}", u128::from(address)).chars().rev().flat_map(|nibble| [nibble, '.']).collect();
    format!("{nibbles}ip6.arpa.")
}

fn header_of(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()[..12].to_vec()
}

// Requests that can't be answered normally.

#[test]
fn fewer_bytes_than_a_header_are_dropped() {
    let bytes = query("web.", RecordType::A).to_vec().unwrap();
    for length in 0..12 {
        assert_eq!(respond(&directory(), "web-sb", &bytes[..length], &daemon_upstreams()), Decision::Drop);
    }
}

#[test]
fn responses_are_dropped() {
    let mut message = query("web.", RecordType::A);
    message.metadata.message_type = MessageType::Response;
    assert_eq!(ask(&directory(), "web-sb", &message), Decision::Drop);
    assert_eq!(respond(&directory(), "web-sb", &header_of(&message), &daemon_upstreams()), Decision::Drop);
}

#[test]
fn opcodes_other_than_query_are_not_implemented() {
    for op_code in [OpCode::Status, OpCode::Notify, OpCode::Update, OpCode::Unknown(1), OpCode::Unknown(15)] {
        let mut message = query("web.", RecordType::A);
        message.metadata.op_code = op_code;
        let reply = parsed_reply(respond(&directory(), "web-sb", &header_of(&message), &daemon_upstreams()));
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(reply.metadata.op_code, op_code);
        assert!(reply.metadata.recursion_desired);
        assert!(reply.metadata.recursion_available);
        assert!(reply.queries.is_empty());
    }
}

#[test]
fn queries_without_exactly_one_question_are_format_errors() {
    let mut none = query("web.", RecordType::A);
    none.queries.clear();
    let mut two = query("web.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("api.").unwrap(), RecordType::A));
    for message in [none, two] {
        let reply = parsed_reply(ask(&directory(), "web-sb", &message));
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.queries.is_empty() && reply.answers.is_empty());
    }
    // A header claiming 65,535 questions, with none after it.
    let mut header = header_of(&query("web.", RecordType::A));
    header[4..6].copy_from_slice(&[0xff, 0xff]);
    let reply = parsed_reply(respond(&directory(), "web-sb", &header, &daemon_upstreams()));
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn messages_that_do_not_parse_are_format_errors_with_their_id() {
    let bytes = query("web.", RecordType::A).to_vec().unwrap();
    let truncated_question = &bytes[..bytes.len() - 3];
    let mut with_garbage_record = bytes.clone();
    with_garbage_record[7] = 1; // one answer record, of which there is nothing
    let mut two_opt_records = with_edns(query("web.", RecordType::A), 1232);
    two_opt_records.additionals.push(Record::from(&Edns::new()));
    for request in [truncated_question, &with_garbage_record, &two_opt_records.to_vec().unwrap()] {
        let reply = parsed_reply(respond(&directory(), "web-sb", request, &daemon_upstreams()));
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.metadata.recursion_desired);
    }
}

#[test]
fn unknown_sandboxes_are_refused() {
    let reply = ask_reply("stranger", "web.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.queries, query("web.", RecordType::A).queries, "the question is echoed");
}

#[test]
fn unsupported_edns_versions_are_badvers() {
    let mut message = with_edns(query("web.", RecordType::A), 1232);
    message.edns.as_mut().unwrap().set_version(1);
    let reply = parsed_reply(ask(&directory(), "web-sb", &message));
    // 16 is both BADVERS and BADSIG: hickory reads it back as the latter.
    assert_eq!(u16::from(reply.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));
    assert!(reply.answers.is_empty());
}

// Local names.

#[test]
fn local_names_answer_authoritatively_with_the_header_echoed() {
    let reply = ask_reply("web-sb", "web.", RecordType::A);
    assert_local_answer(&reply, &[a("10.1.0.2")]);
    assert_eq!(reply.metadata.op_code, OpCode::Query);
    assert!(reply.metadata.recursion_desired && reply.metadata.recursion_available);
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.queries, query("web.", RecordType::A).queries);
    assert!(reply.answers.iter().all(|record| record.ttl == LOCAL_TTL && record.dns_class == DNSClass::IN));
    assert!(reply.edns.is_none(), "no OPT record for a query without one");

    let mut without_recursion = query("web.", RecordType::A);
    without_recursion.metadata.recursion_desired = false;
    without_recursion.metadata.checking_disabled = true;
    let reply = parsed_reply(ask(&directory(), "web-sb", &without_recursion));
    assert!(!reply.metadata.recursion_desired);
    assert!(reply.metadata.checking_disabled);
}

#[test]
fn names_match_ignoring_case_and_the_question_keeps_its_case() {
    let reply = ask_reply("web-sb", "wWw.", RecordType::A);
    assert_local_answer(&reply, &[a("10.1.0.2")]);
    let asked = Name::from_ascii("wWw.").unwrap();
    assert!(reply.queries[0].name().eq_case(&asked));
    assert!(reply.answers[0].name.eq_case(&asked));
    assert_local_answer(&ask_reply("web-sb", "0123456789AB.", RecordType::A), &[a("10.1.0.2")]);
    assert_local_answer(&ask_reply("web-sb", "WEB.FRONT.", RecordType::A), &[a("10.1.0.2")]);
}

#[test]
fn aaaa_questions_get_the_ipv6_addresses() {
    assert_local_answer(&ask_reply("web-sb", "web.", RecordType::AAAA), &[aaaa("fd01::2")]);
}

#[test]
fn local_names_without_such_records_are_nodata() {
    for (name, record_type) in [
        ("api.", RecordType::AAAA),
        ("web.", RecordType::MX),
        ("web.", RecordType::TXT),
        ("web.", RecordType::ANY),
        ("web.", RecordType::CNAME),
        ("web.", RecordType::PTR),
    ] {
        let reply = ask_reply("web-sb", name, record_type);
        assert_local_answer(&reply, &[]);
    }
    let mut chaos = query("web.", RecordType::A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_local_answer(&parsed_reply(ask(&directory(), "web-sb", &chaos)), &[]);
    let mut any_class = query("web.", RecordType::A);
    any_class.queries[0].set_query_class(DNSClass::ANY);
    assert_local_answer(&parsed_reply(ask(&directory(), "web-sb", &any_class)), &[a("10.1.0.2")]);
}

#[test]
fn a_sandbox_is_seen_at_its_address_on_the_network_shared_with_the_asker() {
    assert_local_answer(&ask_reply("web-sb", "api.", RecordType::A), &[a("10.1.0.3")]);
    assert_local_answer(&ask_reply("db-sb", "api.", RecordType::A), &[a("10.2.0.3")]);
}

#[test]
fn the_first_network_of_the_asker_that_has_the_name_answers() {
    assert_local_answer(&ask_reply("api-sb", "api.", RecordType::A), &[a("10.2.0.3")]);
    assert_local_answer(&ask_reply("api-sb", "svc.", RecordType::A), &[a("10.2.0.3"), a("10.2.0.4")]);
    assert_local_answer(&ask_reply("api-sb", "web.", RecordType::A), &[a("10.1.0.2")]);
}

#[test]
fn a_shared_alias_answers_with_every_address_on_that_network() {
    assert_local_answer(&ask_reply("db-sb", "svc.", RecordType::A), &[a("10.2.0.3"), a("10.2.0.4")]);
    assert_local_answer(&ask_reply("web-sb", "svc.", RecordType::A), &[a("10.1.0.3")]);
}

#[test]
fn names_qualified_with_a_network_name_answer_on_that_network() {
    assert_local_answer(&ask_reply("api-sb", "api.front.", RecordType::A), &[a("10.1.0.3")]);
    assert_local_answer(&ask_reply("api-sb", "api.back.", RecordType::A), &[a("10.2.0.3")]);
    // web-sb is not on back: the name is not local to it.
    assert_eq!(ask(&directory(), "web-sb", &query("db.back.", RecordType::A)), Decision::Forward(daemon_upstreams()));
}

#[test]
fn sandboxes_on_internal_networks_get_local_answers_without_recursion() {
    let reply = ask_reply("vault-sb", "vault.", RecordType::A);
    assert_local_answer(&reply, &[a("10.3.0.2")]);
    assert!(!reply.metadata.recursion_available);
}

// Reverse lookups.

#[test]
fn addresses_of_endpoints_point_to_the_sandbox_name() {
    assert_local_answer(&ask_reply("web-sb", "2.0.1.10.in-addr.arpa.", RecordType::PTR), &[ptr("web.")]);
    assert_local_answer(&ask_reply("web-sb", "3.0.1.10.IN-ADDR.ARPA.", RecordType::PTR), &[ptr("api.")]);
    assert_local_answer(&ask_reply("api-sb", "4.0.2.10.in-addr.arpa.", RecordType::PTR), &[ptr("db.")]);
    assert_local_answer(&ask_reply("web-sb", &ip6_arpa("fd01::2"), RecordType::PTR), &[ptr("web.")]);
    // Another type of question about the same name: it exists, with no such records.
    assert_local_answer(&ask_reply("web-sb", "2.0.1.10.in-addr.arpa.", RecordType::A), &[]);
}

#[test]
fn unassigned_addresses_of_the_askers_subnets_do_not_exist() {
    for name in ["99.0.1.10.in-addr.arpa.".to_string(), ip6_arpa("fd01::99"), ip6_arpa("fd01::1:0:0:2")] {
        let reply = ask_reply("web-sb", &name, RecordType::PTR);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(reply.metadata.authoritative);
        assert!(reply.answers.is_empty());
    }
    // Even on an internal network, where nothing may be forwarded.
    let reply = ask_reply("vault-sb", "9.0.3.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn other_reverse_names_are_not_local() {
    for name in [
        "8.8.8.8.in-addr.arpa.",
        "3.0.2.10.in-addr.arpa.", // api's address on back, a network web-sb is not on
        "0.1.10.in-addr.arpa.",
        "02.0.1.10.in-addr.arpa.",
        "1.2.0.1.10.in-addr.arpa.",
        "in-addr.arpa.",
        "2.0.0.0.1.0.d.f.ip6.arpa.",
        &ip6_arpa("fd02::2"),
        &ip6_arpa("fd01::2").replacen("2.", "02.", 1),
    ] {
        assert_eq!(
            ask(&directory(), "web-sb", &query(name, RecordType::PTR)),
            Decision::Forward(daemon_upstreams()),
            "{name}"
        );
    }
}

// Names that are not local.

#[test]
fn other_names_are_forwarded_to_the_sandbox_upstreams_or_else_the_daemons() {
    assert_eq!(
        ask(&directory(), "web-sb", &query("example.com.", RecordType::A)),
        Decision::Forward(daemon_upstreams())
    );
    assert_eq!(
        ask(&directory(), "db-sb", &query("example.com.", RecordType::A)),
        Decision::Forward(vec![socket("9.9.9.9:53")])
    );
    assert_eq!(
        ask(&directory(), "web-sb", &query("web.example.com.", RecordType::A)),
        Decision::Forward(daemon_upstreams())
    );
    assert_eq!(ask(&directory(), "web-sb", &query(".", RecordType::NS)), Decision::Forward(daemon_upstreams()));
}

#[test]
fn other_names_without_any_upstream_are_server_failures() {
    let bytes = query("example.com.", RecordType::A).to_vec().unwrap();
    let reply = parsed_reply(respond(&directory(), "web-sb", &bytes, &[]));
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(!reply.metadata.authoritative);
    // The sandbox's own upstreams are enough.
    assert_eq!(respond(&directory(), "db-sb", &bytes, &[]), Decision::Forward(vec![socket("9.9.9.9:53")]));
}

#[test]
fn sandboxes_that_may_not_forward_are_refused_other_names() {
    for name in ["example.com.", "web.", "8.8.8.8.in-addr.arpa."] {
        let reply = ask_reply("vault-sb", name, RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!reply.metadata.recursion_available);
        assert!(!reply.metadata.authoritative);
    }
}

// EDNS and sizes.

#[test]
fn queries_with_an_opt_record_get_one_back_with_their_do_bit() {
    let mut message = with_edns(query("web.", RecordType::A), 4096);
    let reply = parsed_reply(ask(&directory(), "web-sb", &message));
    assert_local_answer(&reply, &[a("10.1.0.2")]);
    let edns = reply.edns.expect("an OPT record");
    assert_eq!(edns.max_payload(), EDNS_UDP_PAYLOAD_SIZE);
    assert_eq!((edns.version(), edns.flags().dnssec_ok), (0, false));

    message.edns.as_mut().unwrap().set_dnssec_ok(true);
    let reply = parsed_reply(ask(&directory(), "web-sb", &message));
    assert!(reply.edns.expect("an OPT record").flags().dnssec_ok);

    let refused = reply_of_sandbox("vault-sb", with_edns(query("example.com.", RecordType::A), 1232));
    assert!(refused.edns.is_some());
}

fn reply_of_sandbox(sandbox: &str, message: Message) -> Message {
    parsed_reply(ask(&directory(), sandbox, &message))
}

/// A directory where "pool" is the alias of 100 sandboxes, each with an IPv4 and an IPv6
/// address; asked by pool-sb.
fn crowded_directory() -> Directory {
    let mut builder = DirectoryBuilder::default();
    builder.network("pool-id", "pool-net", vec![]);
    for index in 0..100u8 {
        let name = format!("member{index}");
        builder.endpoint("pool-id", &[&name, "pool"], &[ip(&format!("10.9.0.{index}")), ip(&format!("fd09::{index}"))]);
    }
    builder.querier("pool-sb", querier(&["pool-id"], true, &[]));
    builder.build()
}

/// Asks `message` over UDP, or TCP, and returns the raw reply and its parse.
fn ask_crowd(message: &Message, tcp: bool) -> (usize, Message) {
    let bytes = message.to_vec().unwrap();
    let decision = if tcp {
        respond_tcp(&crowded_directory(), "pool-sb", &bytes, &[])
    } else {
        respond(&crowded_directory(), "pool-sb", &bytes, &[])
    };
    let Decision::Reply(reply_bytes) = &decision else {
        panic!("expected a reply, got {decision:?}");
    };
    (reply_bytes.len(), parsed_reply(decision))
}

#[test]
fn udp_replies_without_edns_are_truncated_to_512_bytes() {
    let (length, reply) = ask_crowd(&query("pool.", RecordType::A), false);
    assert!(length <= 512, "{length} bytes");
    assert!(reply.metadata.truncation);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // 12 bytes of header, 10 of question, 16 per A record.
    assert_eq!(reply.answers.len(), (512 - 12 - 10) / 16);
    assert!(reply.answers.iter().all(|record| matches!(record.data, RData::A(_))));
}

#[test]
fn udp_replies_with_edns_are_truncated_to_the_payload_size_within_our_bound() {
    for (advertised, limit) in [(512, 512), (1000, 1000), (4096, usize::from(EDNS_UDP_PAYLOAD_SIZE))] {
        let (length, reply) = ask_crowd(&with_edns(query("pool.", RecordType::AAAA), advertised), false);
        assert!(length <= limit, "{length} bytes for {advertised}");
        assert!(reply.metadata.truncation);
        assert!(reply.edns.is_some(), "the OPT record stays");
        // 12 bytes of header, 10 of question, 11 of OPT record, 28 per AAAA record.
        assert_eq!(reply.answers.len(), (limit - 12 - 10 - 11) / 28, "for {advertised}");
    }
}

#[test]
fn replies_that_fit_are_not_truncated() {
    let (_, reply) = ask_crowd(&with_edns(query("member7.", RecordType::A), 512), false);
    assert!(!reply.metadata.truncation);
    assert_local_answer(&reply, &[a("10.9.0.7")]);
}

#[test]
fn tcp_replies_carry_every_answer() {
    for message in [query("pool.", RecordType::AAAA), with_edns(query("pool.", RecordType::AAAA), 512)] {
        let (_, reply) = ask_crowd(&message, true);
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 100);
    }
}

#[test]
fn tcp_replies_are_truncated_to_65535_bytes() {
    // 5,000 A records (16 bytes each while hickory compresses their name, 20 once it stops)
    // cannot fit in one message.
    let addresses: Vec<IpAddr> = (0..5000u32).map(|index| IpAddr::from((10 << 24 | index).to_be_bytes())).collect();
    let mut builder = DirectoryBuilder::default();
    builder.network("n", "net", vec![]).endpoint("n", &["huge"], &addresses).querier("s", querier(&["n"], true, &[]));
    let directory = builder.build();
    for (message, has_opt_record) in
        [(query("huge.", RecordType::A), false), (with_edns(query("huge.", RecordType::A), 4096), true)]
    {
        let decision = respond_tcp(&directory, "s", &message.to_vec().unwrap(), &[]);
        let Decision::Reply(bytes) = &decision else {
            panic!("expected a reply, got {decision:?}");
        };
        assert!(bytes.len() <= usize::from(u16::MAX));
        assert!(bytes.len() + 20 > usize::from(u16::MAX), "room was left");
        let reply = parsed_reply(decision);
        assert!(reply.metadata.truncation);
        assert_eq!(reply.edns.is_some(), has_opt_record);
        assert!(reply.answers.len() < addresses.len());
    }
}

#[test]
fn tcp_queries_follow_the_same_rules() {
    let bytes = query("example.com.", RecordType::A).to_vec().unwrap();
    assert_eq!(respond_tcp(&directory(), "db-sb", &bytes, &[]), Decision::Forward(vec![socket("9.9.9.9:53")]));
    assert_eq!(respond_tcp(&directory(), "db-sb", &bytes[..5], &[]), Decision::Drop);
}

// Any input at all.

/// Checks what `respond` and `respond_tcp` decide for `request`, whatever it is: no panic;
/// a drop only without a header or for a response; a reply that parses, with the request's
/// id, within the UDP bound over UDP.
fn check_any_request(directory: &Directory, sandbox: &str, request: &[u8]) {
    let upstreams = daemon_upstreams();
    let over_udp = respond(directory, sandbox, request, &upstreams);
    let over_tcp = respond_tcp(directory, sandbox, request, &upstreams);
    for (decision, size_limit) in [(over_udp, usize::from(EDNS_UDP_PAYLOAD_SIZE)), (over_tcp, usize::from(u16::MAX))] {
        match decision {
            Decision::Drop => assert!(request.len() < 12 || request[2] & 0x80 != 0, "dropped {request:?}"),
            Decision::Forward(upstreams) => assert!(!upstreams.is_empty()),
            Decision::Reply(bytes) => {
                assert!(bytes.len() <= size_limit);
                let reply =
                    Message::from_vec(&bytes).unwrap_or_else(|error| panic!("{error}: {bytes:?} for {request:?}"));
                assert_eq!(reply.metadata.id, u16::from_be_bytes([request[0], request[1]]));
                assert_eq!(reply.metadata.message_type, MessageType::Response);
            }
        }
    }
}

/// Valid queries to start mutating from: local, reverse and other names, with and without EDNS.
fn seed_queries() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (name, record_type) in [
        ("web.", RecordType::A),
        ("Svc.", RecordType::AAAA),
        ("api.front.", RecordType::A),
        ("2.0.1.10.in-addr.arpa.", RecordType::PTR),
        ("99.0.1.10.in-addr.arpa.", RecordType::PTR),
        (&ip6_arpa("fd01::2"), RecordType::PTR),
        ("example.com.", RecordType::MX),
    ] {
        seeds.push(query(name, record_type).to_vec().unwrap());
        let mut with_options = with_edns(query(name, record_type), 4096);
        with_options.edns.as_mut().unwrap().set_dnssec_ok(true);
        seeds.push(with_options.to_vec().unwrap());
    }
    seeds
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { index: usize, bit: u8 },
    SetByte { index: usize, value: u8 },
    Truncate { length: usize },
    Append(Vec<u8>),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Mutation::FlipBit { index, bit } if !bytes.is_empty() => {
                let index = index % bytes.len();
                bytes[index] ^= 1 << bit;
            }
            Mutation::SetByte { index, value } if !bytes.is_empty() => {
                let index = index % bytes.len();
                bytes[index] = *value;
            }
            Mutation::Truncate { length } => bytes.truncate(*length),
            Mutation::Append(garbage) => bytes.extend_from_slice(garbage),
            Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..8u8).prop_map(|(index, bit)| Mutation::FlipBit { index, bit }),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(index, value)| Mutation::SetByte { index, value }),
        1 => (0..120usize).prop_map(|length| Mutation::Truncate { length }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ]
}

fn sandbox() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("web-sb"), Just("api-sb"), Just("vault-sb"), Just("stranger")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_are_decided_without_panic(
        sandbox in sandbox(),
        request in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        check_any_request(&directory(), sandbox, &request);
    }

    #[test]
    fn random_bytes_after_a_plausible_header_are_decided_without_panic(
        sandbox in sandbox(),
        id in any::<u16>(),
        flags in any::<u8>(),
        counts in proptest::collection::vec(0..3u8, 4),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // A query (QR=0, opcode 0), with small counts: the rest must get past the header.
        let mut request = id.to_be_bytes().to_vec();
        request.extend([flags & 0b0000_0111, 0]);
        for count in counts {
            request.extend([0, count]);
        }
        request.extend(rest);
        check_any_request(&directory(), sandbox, &request);
    }

    #[test]
    fn mutated_queries_are_decided_without_panic(
        sandbox in sandbox(),
        seed in 0..14usize,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut request = seed_queries().swap_remove(seed);
        for mutation in &mutations {
            mutation.apply(&mut request);
        }
        check_any_request(&directory(), sandbox, &request);
    }
}
