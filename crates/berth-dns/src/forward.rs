//! Relaying a query to upstream resolvers: over UDP from a fresh socket per query (random
//! source port), or over TCP; each upstream in turn until one answers within the timeout.
//!
//! A reply is taken only if it is a response with the query's id and question; anything else
//! arriving on the UDP socket (a stale reply, a spoofing attempt that guessed the port) is
//! ignored and the wait goes on until the upstream's deadline. Replies are passed on as
//! received, byte for byte.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// Room for the largest DNS message over UDP or TCP.
pub(crate) const MAX_MESSAGE_SIZE: usize = u16::MAX as usize;

/// The header and question section of a DNS message, or None if they cannot be read.
pub(crate) fn read_header_and_questions(message: &[u8]) -> Option<(Header, Vec<Query>)> {
    let mut decoder = BinDecoder::new(message);
    let header = Header::read(&mut decoder).ok()?;
    let questions = Message::read_queries(&mut decoder, usize::from(header.counts.queries)).ok()?;
    Some((header, questions))
}

/// What a reply must echo to be taken as the reply to a query.
struct ExpectedReply {
    id: u16,
    questions: Vec<Query>,
}

impl ExpectedReply {
    fn of(query: &[u8]) -> Option<Self> {
        let (header, questions) = read_header_and_questions(query)?;
        Some(Self { id: header.id, questions })
    }

    /// Whether `reply` is a response with the query's id and the same questions (names compared
    /// without regard to case, as DNS does).
    fn matches(&self, reply: &[u8]) -> bool {
        read_header_and_questions(reply).is_some_and(|(header, questions)| {
            header.message_type == MessageType::Response && header.id == self.id && questions == self.questions
        })
    }
}

/// Sends `query` (a whole DNS message) to each of `upstreams` in turn over UDP and returns the
/// first reply whose id and question match, as received (a reply with TC set included: the client
/// then retries over TCP). None when no upstream answered in time, or when `query` has no
/// readable header and question.
pub async fn forward_udp(query: &[u8], upstreams: &[SocketAddr], timeout: Duration) -> Option<Vec<u8>> {
    let expected = expected_reply_of(query)?;
    // Filled by the kernel without being zeroed first, and handed on as the reply.
    let mut buffer = Vec::with_capacity(MAX_MESSAGE_SIZE);
    for &upstream in upstreams {
        match ask_over_udp(query, &expected, upstream, timeout, &mut buffer).await {
            Ok(true) => return Some(buffer),
            Ok(false) => tracing::debug!(%upstream, ?timeout, "no reply from upstream over UDP in time"),
            Err(error) => tracing::debug!(%upstream, %error, "forwarding over UDP failed"),
        }
    }
    None
}

/// The same over TCP (two-byte length prefix), for clients that asked over TCP. The whole
/// exchange with one upstream (connecting included) must fit in `timeout`.
pub async fn forward_tcp(query: &[u8], upstreams: &[SocketAddr], timeout: Duration) -> Option<Vec<u8>> {
    let expected = expected_reply_of(query)?;
    let Ok(length) = u16::try_from(query.len()) else {
        tracing::debug!(length = query.len(), "query too long for TCP; not forwarded");
        return None;
    };
    let mut framed_query = Vec::with_capacity(query.len() + 2);
    framed_query.extend_from_slice(&length.to_be_bytes());
    framed_query.extend_from_slice(query);
    for &upstream in upstreams {
        match tokio::time::timeout(timeout, ask_over_tcp(&framed_query, upstream)).await {
            Ok(Ok(reply)) if expected.matches(&reply) => return Some(reply),
            Ok(Ok(_)) => tracing::debug!(%upstream, "upstream's TCP reply does not match the query"),
            Ok(Err(error)) => tracing::debug!(%upstream, %error, "forwarding over TCP failed"),
            Err(_) => tracing::debug!(%upstream, ?timeout, "no reply from upstream over TCP in time"),
        }
    }
    None
}

fn expected_reply_of(query: &[u8]) -> Option<ExpectedReply> {
    let expected = ExpectedReply::of(query);
    if expected.is_none() {
        tracing::debug!("query without a readable header and question; not forwarded");
    }
    expected
}

/// One UDP exchange with `upstream`: true with the reply in `buffer`, false at the deadline.
async fn ask_over_udp(
    query: &[u8],
    expected: &ExpectedReply,
    upstream: SocketAddr,
    timeout: Duration,
    buffer: &mut Vec<u8>,
) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    loop {
        buffer.clear();
        let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_buf(buffer)).await else {
            return Ok(false);
        };
        let length = received?;
        if expected.matches(buffer) {
            return Ok(true);
        }
        tracing::debug!(%upstream, length, "ignoring a datagram that does not answer the query");
    }
}

/// One TCP exchange with `upstream`: `framed_query` already carries its length prefix.
async fn ask_over_tcp(framed_query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    stream.write_all(framed_query).await?;
    let mut length = [0; 2];
    stream.read_exact(&mut length).await?;
    let mut reply = vec![0; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn message(id: u16, message_type: MessageType, name: &str, record_type: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.message_type = message_type;
        message.add_query(Query::query(Name::from_ascii(name).expect("a name"), record_type));
        message.to_vec().expect("encode")
    }

    fn expecting_example_com() -> ExpectedReply {
        ExpectedReply::of(&message(7, MessageType::Query, "example.com.", RecordType::A)).expect("a query")
    }

    #[test]
    fn a_response_with_the_same_id_and_question_matches() {
        let expected = expecting_example_com();
        assert!(expected.matches(&message(7, MessageType::Response, "example.com.", RecordType::A)));
        assert!(expected.matches(&message(7, MessageType::Response, "ExAmPlE.CoM.", RecordType::A)));
    }

    #[test]
    fn anything_else_does_not_match() {
        let expected = expecting_example_com();
        assert!(!expected.matches(&message(8, MessageType::Response, "example.com.", RecordType::A)));
        assert!(!expected.matches(&message(7, MessageType::Response, "example.org.", RecordType::A)));
        assert!(!expected.matches(&message(7, MessageType::Response, "example.com.", RecordType::AAAA)));
        assert!(!expected.matches(&message(7, MessageType::Query, "example.com.", RecordType::A)));
        assert!(!expected.matches(&[0, 7, 0x80]));
        assert!(!expected.matches(&[]));
    }

    #[test]
    fn a_query_without_a_readable_question_is_not_forwarded() {
        assert!(ExpectedReply::of(&[0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63]).is_none());
        assert!(ExpectedReply::of(&[0, 7]).is_none());
    }
}
