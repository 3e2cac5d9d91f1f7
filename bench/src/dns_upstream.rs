//! dns-upstream: the fake "internet" resolver of the DNS benchmark (`bench/run.sh dns`, see
//! bench/dns.sh). It runs in a LAN peer namespace and answers every question itself, at once and
//! always the same way, so that the forwarded-name figures measure the forwarders (berthd,
//! aardvark-dns) and not a resolver:
//!
//! - A: one record, --a (203.0.113.7), TTL --ttl (300);
//! - AAAA: one record, --aaaa (2001:db8::7), same TTL;
//! - any other type: NOERROR with no answer; anything that does not parse as a query: FORMERR
//!   when the header can be read, nothing otherwise.
//!
//! UDP and TCP (2-byte length prefix, several queries per connection) on --listen (any number of
//! addresses, port included). UDP runs --threads loops per address on one socket (the kernel hands
//! each datagram to one of them); TCP one thread per connection. With --stats FILE it rewrites
//! FILE every 100 ms with the queries answered so far (`{"udp": N, "tcp": N}`), so the benchmark
//! can tell how many of the client's questions reached the upstream (a forwarder that caches
//! sends fewer).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

#[derive(Debug, Parser)]
#[command(name = "dns-upstream")]
struct Args {
    /// Address and port to answer on, UDP and TCP (repeatable).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// The address of every A answer.
    #[arg(long, default_value = "203.0.113.7")]
    a: Ipv4Addr,
    /// The address of every AAAA answer.
    #[arg(long, default_value = "2001:db8::7")]
    aaaa: Ipv6Addr,
    /// TTL of the answers.
    #[arg(long, default_value_t = 300)]
    ttl: u32,
    /// UDP loops per address (the number of cores when not given).
    #[arg(long)]
    threads: Option<usize>,
    /// Rewrite this file every 100 ms with the counts of queries answered.
    #[arg(long)]
    stats: Option<PathBuf>,
}

#[derive(Debug)]
struct Answers {
    a: Ipv4Addr,
    aaaa: Ipv6Addr,
    ttl: u32,
}

impl Answers {
    /// The reply to one query message, or None when not even its header can be read.
    fn reply(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => {
                // A header at least: FORMERR with the same id.
                if query.len() < 12 {
                    return None;
                }
                let id = u16::from_be_bytes([query[0], query[1]]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        if request.metadata.op_code != OpCode::Query || request.queries.len() != 1 {
            response.metadata.response_code = ResponseCode::NotImp;
            return response.to_vec().ok();
        }
        let question = request.queries[0].clone();
        let data = match question.query_type {
            RecordType::A => Some(RData::A(A(self.a))),
            RecordType::AAAA => Some(RData::AAAA(AAAA(self.aaaa))),
            _ => None,
        };
        if let Some(data) = data {
            response.add_answer(Record::from_rdata(question.name.clone(), self.ttl, data));
        }
        response.add_query(question);
        response.to_vec().ok()
    }
}

#[derive(Debug, Default)]
struct Counts {
    udp: AtomicU64,
    tcp: AtomicU64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let answers = Arc::new(Answers { a: args.a, aaaa: args.aaaa, ttl: args.ttl });
    let counts = Arc::new(Counts::default());
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let mut handles = Vec::new();
    for addr in &args.listen {
        let udp = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
        for _ in 0..threads {
            let socket = udp.try_clone()?;
            let (answers, counts) = (answers.clone(), counts.clone());
            handles.push(std::thread::spawn(move || serve_udp(&socket, &answers, &counts)));
        }
        let tcp = TcpListener::bind(addr).with_context(|| format!("bind tcp {addr}"))?;
        let (answers, counts) = (answers.clone(), counts.clone());
        handles.push(std::thread::spawn(move || {
            for stream in tcp.incoming().flatten() {
                let (answers, counts) = (answers.clone(), counts.clone());
                std::thread::spawn(move || serve_tcp(stream, &answers, &counts));
            }
        }));
    }
    if let Some(path) = args.stats {
        let counts = counts.clone();
        handles.push(std::thread::spawn(move || loop {
            let text = format!(
                "{{\"udp\": {}, \"tcp\": {}}}\n",
                counts.udp.load(Ordering::Relaxed),
                counts.tcp.load(Ordering::Relaxed)
            );
            // Written aside and renamed, so a reader never sees half a file.
            let aside = path.with_extension("tmp");
            if std::fs::write(&aside, text).is_ok() {
                let _ = std::fs::rename(&aside, &path);
            }
            std::thread::sleep(Duration::from_millis(100));
        }));
    }
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

fn serve_udp(socket: &UdpSocket, answers: &Answers, counts: &Counts) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        if let Some(reply) = answers.reply(&buf[..n]) {
            if socket.send_to(&reply, from).is_ok() {
                counts.udp.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn serve_tcp(mut stream: TcpStream, answers: &Answers, counts: &Counts) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut len = [0u8; 2];
    let mut buf = vec![0u8; 65535];
    loop {
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if stream.read_exact(&mut buf[..n]).is_err() {
            return;
        }
        let Some(reply) = answers.reply(&buf[..n]) else { return };
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
        counts.tcp.fetch_add(1, Ordering::Relaxed);
    }
}
