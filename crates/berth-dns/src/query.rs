//! The query path, with no I/O: the bytes of one query and the asking sandbox in, one
//! [`Decision`] out. It never panics and never loops on any input (a fuzz target and a property
//! test check this).
//!
//! The rules, in the order they apply:
//!
//! 1. Fewer than the 12 bytes of a header: [`Decision::Drop`]. A response (QR=1) is dropped
//!    too: answering responses could start a loop between two servers, or reflect traffic.
//! 2. An opcode other than QUERY: NOTIMP. Not exactly one question, or a message that does not
//!    parse: FORMERR. These replies are a header alone (id, opcode and RD echoed).
//! 3. A sandbox that is not a querier of the [`Directory`]: REFUSED. An OPT record of an EDNS
//!    version other than 0: BADVERS (RFC 6891 §6.1.3).
//! 4. A reverse name (`d.c.b.a.in-addr.arpa.`, or the 32 nibbles of an `ip6.arpa.` name) of
//!    an address that an endpoint on one of the querier's networks has: a PTR to the
//!    sandbox's name. Of another address within a subnet of one of those networks: NXDOMAIN,
//!    so private reverse lookups do not leak upstream.
//! 5. Another name: looked up, ignoring ASCII case, on the querier's networks in the order it
//!    joined them; the first network that has it answers with the addresses it maps to there
//!    (A for IPv4, AAAA for IPv6), with TTL [`LOCAL_TTL`]. A local name that has no address of
//!    the type asked, or a question of another type (MX, TXT, ANY...) or of a class other
//!    than IN (or ANY), gets NOERROR with no answers (NODATA): local names are never
//!    forwarded. These local answers have AA set.
//! 6. Anything else is not local: REFUSED if the querier may not forward (every network of it
//!    is internal, CVE-2024-29018); else [`Decision::Forward`] to the querier's own upstreams,
//!    or the daemon's when it has none, or SERVFAIL when neither has any.
//!
//! Replies echo the id, the question as asked (case included), RD and CD; RA is set when the
//! querier may forward. A query with an OPT record gets one back, advertising
//! [`EDNS_UDP_PAYLOAD_SIZE`] and with the query's DO bit. A reply that does not fit the
//! transport (UDP: 512 bytes without EDNS, else the payload size the client advertises, at
//! most [`EDNS_UDP_PAYLOAD_SIZE`]; TCP: 65,535 bytes) keeps the answers that fit, and its OPT
//! record, and has TC set.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{
    emit_message_parts, Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_proto::ProtoError;

use crate::directory::{Directory, Querier, ReverseLookup};

/// The TTL of local answers, in seconds: short, since sandboxes come and go.
pub const LOCAL_TTL: u32 = 60;

/// The UDP payload size the resolver advertises in its OPT records, and the largest reply it
/// sends over UDP whatever the client advertises: the value of DNS Flag Day 2020, which fits
/// in one packet on any usual path. The UDP listener should accept queries at least this big.
pub const EDNS_UDP_PAYLOAD_SIZE: u16 = 1232;

/// The largest UDP reply to a query without EDNS (RFC 1035 §4.2.1).
const UDP_PAYLOAD_WITHOUT_EDNS: u16 = 512;

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Relay the query, unchanged, to these upstreams in order.
    Forward(Vec<SocketAddr>),
    /// Nothing can be said (not even a header could be read): drop it.
    Drop,
}

/// Decides what to answer `request`, received over UDP, from sandbox `sandbox_id`;
/// `daemon_upstreams` are used when the sandbox has none of its own. A reply is at most as big
/// as the client can take over UDP (see the module docs), truncated with TC set if need be.
pub fn respond(directory: &Directory, sandbox_id: &str, request: &[u8], daemon_upstreams: &[SocketAddr]) -> Decision {
    decide(directory, sandbox_id, request, daemon_upstreams, Transport::Udp)
}

/// The same as [`respond`] for a query received over TCP (`request` without its two-byte
/// length prefix): the reply may be up to 65,535 bytes whatever the query's EDNS says.
pub fn respond_tcp(
    directory: &Directory,
    sandbox_id: &str,
    request: &[u8],
    daemon_upstreams: &[SocketAddr],
) -> Decision {
    decide(directory, sandbox_id, request, daemon_upstreams, Transport::Tcp)
}

/// How the query came, which bounds the size of the reply.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The largest reply that may be sent back for a query with OPT record `request_edns`.
    fn reply_size_limit(self, request_edns: Option<&Edns>) -> u16 {
        match (self, request_edns) {
            (Transport::Tcp, _) => u16::MAX,
            (Transport::Udp, None) => UDP_PAYLOAD_WITHOUT_EDNS,
            (Transport::Udp, Some(edns)) => edns.max_payload().clamp(UDP_PAYLOAD_WITHOUT_EDNS, EDNS_UDP_PAYLOAD_SIZE),
        }
    }
}

/// Applies the rules of the module docs; `transport` bounds the size of the reply.
fn decide(
    directory: &Directory,
    sandbox_id: &str,
    request: &[u8],
    daemon_upstreams: &[SocketAddr],
    transport: Transport,
) -> Decision {
    let Ok(header) = Header::read(&mut BinDecoder::new(request)) else {
        return Decision::Drop;
    };
    if header.message_type == MessageType::Response {
        return Decision::Drop;
    }
    let querier = directory.queriers.get(sandbox_id);
    let recursion_available = querier.is_some_and(|querier| querier.forward);
    if header.op_code != OpCode::Query {
        return header_only_reply(&header.metadata, ResponseCode::NotImp, recursion_available);
    }
    // Checked before parsing, which would reserve room for every question the header claims.
    if header.counts.queries != 1 {
        return header_only_reply(&header.metadata, ResponseCode::FormErr, recursion_available);
    }
    let Ok(request) = Message::from_vec(request) else {
        return header_only_reply(&header.metadata, ResponseCode::FormErr, recursion_available);
    };
    let size_limit = transport.reply_size_limit(request.edns.as_ref());
    let Some(querier) = querier else {
        return encode(reply_to(request, false, ResponseCode::Refused), size_limit);
    };
    if request.edns.as_ref().is_some_and(|edns| edns.version() != 0) {
        return encode(reply_to(request, recursion_available, ResponseCode::BADVERS), size_limit);
    }
    let Some(question) = request.queries.first() else {
        return header_only_reply(&header.metadata, ResponseCode::FormErr, recursion_available);
    };
    match look_up(directory, querier, question) {
        Outcome::Local(answers) => {
            let mut reply = reply_to(request, recursion_available, ResponseCode::NoError);
            reply.metadata.authoritative = true;
            reply.answers = answers;
            encode(reply, size_limit)
        }
        Outcome::NoSuchName => {
            let mut reply = reply_to(request, recursion_available, ResponseCode::NXDomain);
            reply.metadata.authoritative = true;
            encode(reply, size_limit)
        }
        Outcome::NotLocal if !querier.forward => {
            encode(reply_to(request, recursion_available, ResponseCode::Refused), size_limit)
        }
        Outcome::NotLocal => {
            let upstreams = if querier.upstreams.is_empty() { daemon_upstreams } else { &querier.upstreams };
            if upstreams.is_empty() {
                encode(reply_to(request, recursion_available, ResponseCode::ServFail), size_limit)
            } else {
                Decision::Forward(upstreams.to_vec())
            }
        }
    }
}

/// What the directory says of a question, for one querier.
#[derive(Debug)]
enum Outcome {
    /// The name is local: these answers, maybe none (NODATA).
    Local(Vec<Record>),
    /// A reverse name of an address in one of the querier's subnets that no endpoint has.
    NoSuchName,
    /// Not a name of berth's.
    NotLocal,
}

/// What `directory` says of `question` for `querier`: a reverse name is looked up by its
/// address, any other name by its directory key.
fn look_up(directory: &Directory, querier: &Querier, question: &Query) -> Outcome {
    let name = question.name();
    if let Some(address) = reverse_name_address(name) {
        return match directory.reverse(querier, address) {
            ReverseLookup::Sandbox(sandbox) => Outcome::Local(pointer_answers(question, sandbox)),
            ReverseLookup::Unassigned => Outcome::NoSuchName,
            ReverseLookup::Unknown => Outcome::NotLocal,
        };
    }
    let mut buffer = [0; Name::MAX_LENGTH];
    let Some(key) = directory_key(name, &mut buffer) else {
        return Outcome::NotLocal;
    };
    match directory.addresses(querier, key) {
        Some(addresses) => Outcome::Local(address_answers(question, addresses)),
        None => Outcome::NotLocal,
    }
}

/// Whether local records answer a question of class `class`: they are all of class IN.
fn asks_internet_class(class: DNSClass) -> bool {
    matches!(class, DNSClass::IN | DNSClass::ANY)
}

/// The A or AAAA records answering `question` from the addresses of a local name; none for
/// other types and classes.
fn address_answers(question: &Query, addresses: &[IpAddr]) -> Vec<Record> {
    if !asks_internet_class(question.query_class()) {
        return Vec::new();
    }
    let rdata_of: fn(&IpAddr) -> Option<RData> = match question.query_type() {
        RecordType::A => |address| match address {
            IpAddr::V4(v4) => Some(RData::A(A(*v4))),
            IpAddr::V6(_) => None,
        },
        RecordType::AAAA => |address| match address {
            IpAddr::V4(_) => None,
            IpAddr::V6(v6) => Some(RData::AAAA(AAAA(*v6))),
        },
        _ => return Vec::new(),
    };
    addresses
        .iter()
        .filter_map(rdata_of)
        .map(|rdata| Record::from_rdata(question.name().clone(), LOCAL_TTL, rdata))
        .collect()
}

/// The PTR record answering `question` with sandbox name `sandbox`; none for other types and
/// classes, or when the sandbox's name is not a valid DNS name (an empty label, a label of
/// more than 63 bytes, more than 255 bytes in all).
fn pointer_answers(question: &Query, sandbox: &str) -> Vec<Record> {
    if question.query_type() != RecordType::PTR || !asks_internet_class(question.query_class()) {
        return Vec::new();
    }
    match Name::from_labels(sandbox.split('.').map(str::as_bytes)) {
        Ok(target) => vec![Record::from_rdata(question.name().clone(), LOCAL_TTL, RData::PTR(PTR(target)))],
        Err(_) => Vec::new(),
    }
}

/// The address a reverse name stands for: `d.c.b.a.in-addr.arpa.` with four decimal octets
/// (no sign, no leading zero), or `….ip6.arpa.` with 32 one-digit hexadecimal labels, ignoring
/// ASCII case. None for any other name, partial reverse names (zones) included.
fn reverse_name_address(name: &Name) -> Option<IpAddr> {
    let mut labels = name.iter().rev();
    if !labels.next()?.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let tree = labels.next()?;
    // From here on the labels come most significant first.
    let address = if tree.eq_ignore_ascii_case(b"in-addr") {
        let mut octets = [0; 4];
        for octet in &mut octets {
            *octet = decimal_octet(labels.next()?)?;
        }
        IpAddr::from(octets)
    } else if tree.eq_ignore_ascii_case(b"ip6") {
        let mut bits = 0u128;
        for _ in 0..32 {
            bits = bits << 4 | u128::from(hexadecimal_nibble(labels.next()?)?);
        }
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        return None;
    };
    labels.next().is_none().then_some(address)
}

/// The value of a label of one to three decimal digits without a leading zero, up to 255.
fn decimal_octet(label: &[u8]) -> Option<u8> {
    let well_formed = matches!(label.len(), 1..=3)
        && label.iter().all(u8::is_ascii_digit)
        && (label.len() == 1 || label.first() != Some(&b'0'));
    if !well_formed {
        return None;
    }
    let value = label.iter().fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'));
    u8::try_from(value).ok()
}

/// The value of a label of one hexadecimal digit, in either case.
fn hexadecimal_nibble(label: &[u8]) -> Option<u32> {
    match label {
        [digit] => char::from(*digit).to_digit(16),
        _ => None,
    }
}

/// Writes `name` the way the directory keys names (ASCII lowercase, labels joined by dots, no
/// trailing dot) into `buffer`, which holds any name hickory parses, and returns it. None when
/// the name cannot be in the directory: the root, a label holding a dot, bytes that are not
/// UTF-8.
fn directory_key<'b>(name: &Name, buffer: &'b mut [u8; Name::MAX_LENGTH]) -> Option<&'b str> {
    let mut length = 0;
    for label in name.iter() {
        if label.contains(&b'.') {
            return None;
        }
        if length > 0 {
            *buffer.get_mut(length)? = b'.';
            length += 1;
        }
        let end = length + label.len();
        for (lowercase, byte) in buffer.get_mut(length..end)?.iter_mut().zip(label) {
            *lowercase = byte.to_ascii_lowercase();
        }
        length = end;
    }
    if length == 0 {
        return None;
    }
    std::str::from_utf8(buffer.get(..length)?).ok()
}

/// Turns a parsed request into its reply with `response_code` and no records: the request's
/// id, opcode, question, RD and CD (RFC 6895 §2), RA as given; and when the request had an OPT
/// record, one of ours (RFC 6891 §6.1.1) advertising [`EDNS_UDP_PAYLOAD_SIZE`], with the
/// request's DO bit (RFC 3225 §3).
fn reply_to(mut request: Message, recursion_available: bool, response_code: ResponseCode) -> Message {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = recursion_available;
    metadata.response_code = response_code;
    request.metadata = metadata;
    request.answers.clear();
    request.authorities.clear();
    request.additionals.clear();
    request.signature = None;
    request.edns = request.edns.map(|request_edns| {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_PAYLOAD_SIZE).set_dnssec_ok(request_edns.flags().dnssec_ok);
        edns
    });
    request
}

/// A reply made of a header alone, for a request whose question cannot be used: the request's
/// id, opcode and RD echoed, QR set, RA as given, every count zero.
fn header_only_reply(request: &Metadata, response_code: ResponseCode, recursion_available: bool) -> Decision {
    const QR: u8 = 0b1000_0000;
    const RD: u8 = 0b0000_0001;
    const RA: u8 = 0b1000_0000;
    let [id_high, id_low] = request.id.to_be_bytes();
    let opcode = (u8::from(request.op_code) & 0b1111) << 3;
    let flags_high = QR | opcode | if request.recursion_desired { RD } else { 0 };
    let flags_low = if recursion_available { RA } else { 0 } | response_code.low();
    Decision::Reply(vec![id_high, id_low, flags_high, flags_low, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// Encodes `reply` in at most `size_limit` bytes: whole if it fits, else truncated. Should
/// hickory fail to encode it (which no reply built here should make it do), the client gets a
/// header alone with SERVFAIL.
fn encode(mut reply: Message, size_limit: u16) -> Decision {
    let encoded = match reply.to_vec() {
        Ok(bytes) if is_whole_within(&bytes, size_limit) => Ok(bytes),
        Ok(_) => truncated_to_fit(&mut reply, size_limit),
        Err(error) => Err(error),
    };
    match encoded {
        Ok(bytes) => Decision::Reply(bytes),
        Err(_) => header_only_reply(&reply.metadata, ResponseCode::ServFail, reply.metadata.recursion_available),
    }
}

/// Whether encoded reply `bytes` fits in `size_limit` bytes with all its records: replies are
/// built without TC, so TC set means hickory left out the records that would have passed
/// 65,535 bytes.
fn is_whole_within(bytes: &[u8], size_limit: u16) -> bool {
    const TC: u8 = 0b0000_0010;
    bytes.len() <= usize::from(size_limit) && bytes.get(2).is_some_and(|flags| flags & TC == 0)
}

/// Encodes `reply` with as many of its answers as fit in `size_limit` bytes next to its OPT
/// record, and TC set. As RFC 2181 §9 allows, the answers that fit stay: a client that wants
/// them all asks again over TCP, and one that cannot (old musl) still gets some.
fn truncated_to_fit(reply: &mut Message, size_limit: u16) -> Result<Vec<u8>, ProtoError> {
    let opt_record_length = match &reply.edns {
        Some(edns) => Record::from(edns).to_bytes()?.len(),
        None => 0,
    };
    let room_for_the_rest = size_limit.saturating_sub(u16::try_from(opt_record_length).unwrap_or(u16::MAX));
    let mut scratch = Vec::new();
    let mut encoder = BinEncoder::new(&mut scratch);
    encoder.set_max_size(room_for_the_rest);
    let fitting = emit_message_parts(
        &reply.metadata,
        &mut reply.queries.iter(),
        &mut reply.answers.iter(),
        &mut reply.authorities.iter(),
        &mut reply.additionals.iter(),
        None,
        None,
        &mut encoder,
    )?;
    reply.answers.truncate(usize::from(fitting.counts.answers));
    reply.metadata.truncation = true;
    reply.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name of the dot-separated labels of `text`, taken as raw bytes (so `+4` is a label).
    fn name(text: &str) -> Name {
        Name::from_labels(text.split('.').filter(|label| !label.is_empty()).map(str::as_bytes)).unwrap()
    }

    fn reverse(text: &str) -> Option<IpAddr> {
        reverse_name_address(&name(text))
    }

    #[test]
    fn reverse_names_of_ipv4_addresses() {
        assert_eq!(reverse("4.3.2.1.in-addr.arpa."), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(reverse("255.0.10.172.IN-ADDR.Arpa."), Some("172.10.0.255".parse().unwrap()));
        for malformed in [
            "3.2.1.in-addr.arpa.",
            "5.4.3.2.1.in-addr.arpa.",
            "256.3.2.1.in-addr.arpa.",
            "04.3.2.1.in-addr.arpa.",
            "+4.3.2.1.in-addr.arpa.",
            "x.3.2.1.in-addr.arpa.",
            "1000.3.2.1.in-addr.arpa.",
            "4.3.2.1.in-addr.arpa.com.",
            "4.3.2.1.in-adr.arpa.",
            "in-addr.arpa.",
            "arpa.",
            ".",
        ] {
            assert_eq!(reverse(malformed), None, "{malformed}");
        }
        let with_a_dot_in_a_label = Name::from_labels([&b"4.3"[..], b"2", b"1", b"0", b"in-addr", b"arpa"]).unwrap();
        assert_eq!(reverse_name_address(&with_a_dot_in_a_label), None);
    }

    #[test]
    fn reverse_names_of_ipv6_addresses() {
        let nibbles = "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4";
        assert_eq!(reverse(&format!("{nibbles}.ip6.arpa.")), Some("4321:0:1:2:3:4:567:89ab".parse().unwrap()));
        assert_eq!(
            reverse(&format!("{}.IP6.ARPA.", nibbles.to_uppercase())),
            Some("4321:0:1:2:3:4:567:89ab".parse().unwrap())
        );
        assert_eq!(reverse(&format!("{}.ip6.arpa.", &nibbles[2..])), None, "31 nibbles");
        assert_eq!(reverse(&format!("0.{nibbles}.ip6.arpa.")), None, "33 nibbles");
        assert_eq!(reverse(&format!("g.{}.ip6.arpa.", &nibbles[2..])), None);
        assert_eq!(reverse(&format!("00.{}.ip6.arpa.", &nibbles[2..])), None);
    }

    #[test]
    fn directory_keys_are_lowercase_without_the_trailing_dot() {
        let mut buffer = [0; Name::MAX_LENGTH];
        assert_eq!(directory_key(&name("Web.FrontEnd."), &mut buffer), Some("web.frontend"));
        assert_eq!(directory_key(&name("web"), &mut buffer), Some("web"));
        assert_eq!(directory_key(&Name::root(), &mut buffer), None);
        let dotted_label = Name::from_labels([&b"a.b"[..]]).unwrap();
        assert_eq!(directory_key(&dotted_label, &mut buffer), None);
        let binary_label = Name::from_labels([&[0xff, b'A'][..]]).unwrap();
        assert_eq!(directory_key(&binary_label, &mut buffer), None);
        let longest = Name::from_labels(["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)]).unwrap();
        assert_eq!(directory_key(&longest, &mut buffer).map(str::len), Some(253));
    }

    #[test]
    fn udp_replies_are_limited_by_the_client_payload_within_bounds() {
        let mut edns = Edns::new();
        assert_eq!(Transport::Udp.reply_size_limit(None), 512);
        assert_eq!(Transport::Udp.reply_size_limit(Some(&edns)), 512);
        edns.set_max_payload(1000);
        assert_eq!(Transport::Udp.reply_size_limit(Some(&edns)), 1000);
        edns.set_max_payload(4096);
        assert_eq!(Transport::Udp.reply_size_limit(Some(&edns)), EDNS_UDP_PAYLOAD_SIZE);
        assert_eq!(Transport::Tcp.reply_size_limit(None), u16::MAX);
    }

    #[test]
    fn pointers_to_names_that_are_not_dns_names_are_nodata() {
        let question = Query::query(name("2.0.0.10.in-addr.arpa."), RecordType::PTR);
        assert_eq!(pointer_answers(&question, "a..b"), Vec::new());
        assert_eq!(pointer_answers(&question, &"x".repeat(64)), Vec::new());
        assert_eq!(pointer_answers(&question, "ok.name").len(), 1);
    }

    #[test]
    fn truncation_keeps_what_fits_and_the_opt_record() {
        let mut reply = Message::response(7, OpCode::Query);
        reply.add_query(Query::query(name("many.example."), RecordType::A));
        for last in 0..200u8 {
            reply.add_answer(Record::from_rdata(
                name("many.example."),
                LOCAL_TTL,
                RData::A(A([10, 0, 0, last].into())),
            ));
        }
        reply.set_edns(Edns::new());
        let Decision::Reply(bytes) = encode(reply, 700) else { panic!("no reply") };
        assert!(bytes.len() <= 700, "{} bytes", bytes.len());
        let parsed = Message::from_vec(&bytes).unwrap();
        assert!(parsed.metadata.truncation);
        assert!(parsed.edns.is_some());
        // 12 (header) + 18 (question) + 11 (OPT) + 16 per compressed A record.
        assert_eq!(parsed.answers.len(), (700 - 12 - 18 - 11) / 16);
    }
}
