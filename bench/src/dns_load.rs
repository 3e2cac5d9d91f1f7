//! dns-load: the load client of the DNS benchmark (`bench/run.sh dns`, see bench/dns.sh). It
//! sends one question (--name, --type) over UDP to a DNS server (--server) with --concurrency
//! queries outstanding at all times, spread over --sockets sockets (one thread each), for
//! --seconds after a --warmup, and prints one JSON object: answers per second, latency
//! percentiles, and everything that went wrong.
//!
//! An answer counts when its id is one this socket has outstanding, it is a response, its RCODE is
//! NOERROR, it is not truncated and it holds at least one answer record (unless --allow-empty);
//! the others are counted by kind (rcode, empty, truncated). A query without an answer within
//! --timeout-ms counts as a timeout and is sent again (with a new id). With --expect IP, every
//! 256th answer (and the first on each socket) is decoded in full and must hold that address.
//! `failures` in the JSON adds up every kind of failure in the window; `sent` counts every query
//! sent, warm-up included (what a forwarder without a cache relays upstream).
//!
//! `--once` asks once and prints the decoded reply (rcode, answers as text, latency) instead: the
//! benchmark's check that a server answers what it should before it is measured.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_bench::{percentile, us};
use clap::Parser;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "dns-load")]
struct Args {
    /// The DNS server (IP:PORT).
    #[arg(long)]
    server: SocketAddr,
    /// The name asked (made fully qualified).
    #[arg(long)]
    name: String,
    /// The query type (A, AAAA, PTR, ...).
    #[arg(long = "type", default_value = "A")]
    qtype: String,
    /// Queries outstanding at all times, over all sockets.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Sockets (one thread each) the queries are spread over.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Load that runs before the measurement starts and does not count.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// A query unanswered for this long is a timeout, and is sent again.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// An answer without records (NODATA) counts as answered.
    #[arg(long)]
    allow_empty: bool,
    /// Sampled answers must contain this address.
    #[arg(long)]
    expect: Option<IpAddr>,
    /// Ask once and print the decoded reply.
    #[arg(long)]
    once: bool,
}

/// The query message with id 0; each send patches bytes 0..2.
fn query_bytes(name: &str, qtype: &str) -> Result<Vec<u8>> {
    let mut fqdn = name.to_owned();
    if !fqdn.ends_with('.') {
        fqdn.push('.');
    }
    let name = Name::from_ascii(&fqdn).with_context(|| format!("query name {fqdn}"))?;
    let qtype: RecordType = qtype.to_uppercase().parse().map_err(|e| anyhow::anyhow!("query type {qtype}: {e}"))?;
    let mut message = Message::query();
    message.metadata.id = 0;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, qtype));
    Ok(message.to_vec()?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.concurrency >= 1 && args.sockets >= 1, "--concurrency and --sockets must be at least 1");
    let template = query_bytes(&args.name, &args.qtype)?;
    let report = if args.once { once(&args, &template)? } else { load(&args, &template)? };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn bind_for(server: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let socket = UdpSocket::bind(local).context("bind a UDP socket")?;
    socket.connect(server).with_context(|| format!("connect to {server}"))?;
    Ok(socket)
}

/// A pseudo-random 16-bit start for a socket's ids (no rand dependency for that).
fn random_u16(salt: usize) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(salt);
    hasher.finish() as u16
}

/// The addresses (or other data, as text) of a decoded reply's answers.
fn answer_texts(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(aaaa) => aaaa.0.to_string(),
            other => other.to_string(),
        })
        .collect()
}

// --- once ---------------------------------------------------------------------------------------

fn once(args: &Args, template: &[u8]) -> Result<serde_json::Value> {
    let socket = bind_for(args.server)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    socket.set_read_timeout(Some(timeout))?;
    let mut query = template.to_vec();
    let mut buf = vec![0u8; 65535];
    for attempt in 0..3u16 {
        let id = random_u16(usize::from(attempt));
        query[..2].copy_from_slice(&id.to_be_bytes());
        let start = Instant::now();
        socket.send(&query).with_context(|| format!("send to {}", args.server))?;
        let deadline = start + timeout;
        loop {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => return Err(e).with_context(|| format!("receive from {}", args.server)),
            };
            if n < 2 || buf[..2] != id.to_be_bytes() {
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            }
            let took = start.elapsed();
            let reply = Message::from_vec(&buf[..n]).context("decode the reply")?;
            return Ok(json!({
                "server": args.server.to_string(),
                "name": args.name,
                "type": args.qtype,
                "rcode": reply.metadata.response_code.to_string(),
                "truncated": reply.metadata.truncation,
                "authoritative": reply.metadata.authoritative,
                "recursion_available": reply.metadata.recursion_available,
                "answers": answer_texts(&reply),
                "ttls": reply.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(),
                "latency_us": us(took),
            }));
        }
    }
    bail!("no reply from {} to {} {} in 3 tries of {} ms", args.server, args.name, args.qtype, args.timeout_ms)
}

// --- load ---------------------------------------------------------------------------------------

/// One outstanding query of a socket.
#[derive(Clone, Copy)]
enum Slot {
    Waiting {
        id: u16,
        sent: Instant,
    },
    /// The send failed; try again at this time.
    Retry {
        at: Instant,
    },
}

/// What one socket saw, in the measured window.
#[derive(Default)]
struct Tally {
    answered: u64,
    latencies: Vec<Duration>,
    /// Replies by RCODE other than NOERROR.
    rcodes: std::collections::BTreeMap<u8, u64>,
    empty: u64,
    truncated: u64,
    wrong: u64,
    checked: u64,
    timeouts: u64,
    unmatched: u64,
    errors: u64,
    sent: u64,
    first_error: Option<String>,
}

impl Tally {
    fn note(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn counts(&self, at: Instant) -> bool {
        at >= self.from && at < self.until
    }
}

fn load(args: &Args, template: &[u8]) -> Result<serde_json::Value> {
    // Every socket first, so a failure to reach the server shows before any thread starts.
    let sockets: Vec<UdpSocket> = (0..args.sockets).map(|_| bind_for(args.server)).collect::<Result<_>>()?;
    let from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let window = Window { from, until: from + Duration::from_secs_f64(args.seconds) };
    let timeout = Duration::from_millis(args.timeout_ms);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(index, socket)| {
                // The outstanding queries, spread as evenly as they go.
                let depth = args.concurrency / args.sockets + usize::from(index < args.concurrency % args.sockets);
                let window = &window;
                scope.spawn(move || run_socket(&socket, index, depth, template, window, timeout, args))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a load thread panicked")).collect()
    });

    let mut all = Tally::default();
    for t in tallies {
        all.answered += t.answered;
        all.latencies.extend(t.latencies);
        for (rcode, n) in t.rcodes {
            *all.rcodes.entry(rcode).or_default() += n;
        }
        all.empty += t.empty;
        all.truncated += t.truncated;
        all.wrong += t.wrong;
        all.checked += t.checked;
        all.timeouts += t.timeouts;
        all.unmatched += t.unmatched;
        all.errors += t.errors;
        all.sent += t.sent;
        all.first_error = all.first_error.or(t.first_error);
    }
    let seconds = (window.until - window.from).as_secs_f64();
    let rcodes: serde_json::Map<String, serde_json::Value> = all
        .rcodes
        .iter()
        .map(|(code, n)| (hickory_proto::op::ResponseCode::from(0, *code).to_string(), json!(n)))
        .collect();
    let failures = all.rcodes.values().sum::<u64>() + all.empty + all.truncated + all.wrong + all.timeouts + all.errors;
    let mut latencies = all.latencies;
    latencies.sort_unstable();
    let mean =
        if latencies.is_empty() { f64::NAN } else { us(latencies.iter().sum::<Duration>()) / latencies.len() as f64 };
    Ok(json!({
        "mode": "udp",
        "server": args.server.to_string(),
        "name": args.name,
        "type": args.qtype,
        "concurrency": args.concurrency,
        "sockets": args.sockets,
        "seconds": seconds,
        "answered": all.answered,
        "qps": all.answered as f64 / seconds,
        "failures": failures,
        "rcodes": rcodes,
        "empty": all.empty,
        "truncated": all.truncated,
        "wrong": all.wrong,
        "checked": all.checked,
        "timeouts": all.timeouts,
        "unmatched": all.unmatched,
        "errors": all.errors,
        "sent": all.sent,
        "first_error": all.first_error,
        "latency": {
            "p50_us": us(percentile(&latencies, 0.50)),
            "p90_us": us(percentile(&latencies, 0.90)),
            "p99_us": us(percentile(&latencies, 0.99)),
            "p999_us": us(percentile(&latencies, 0.999)),
            "max_us": us(percentile(&latencies, 1.0)),
            "mean_us": mean,
        },
    }))
}

/// One socket's loop: `depth` queries outstanding until the window closes.
fn run_socket(
    socket: &UdpSocket,
    index: usize,
    depth: usize,
    template: &[u8],
    window: &Window,
    timeout: Duration,
    args: &Args,
) -> Tally {
    let mut tally = Tally { latencies: Vec::with_capacity(1 << 18), ..Tally::default() };
    if depth == 0 {
        return tally;
    }
    // Short blocking reads, so timeouts and retries are looked at often enough.
    if let Err(e) = socket.set_read_timeout(Some(Duration::from_millis(5))) {
        tally.errors += 1;
        tally.note(|| format!("set_read_timeout: {e}"));
        return tally;
    }
    let mut query = template.to_vec();
    let mut next_id = random_u16(index);
    // Sends a fresh query (new id) into slot `at`.
    let mut send = |slots: &mut Vec<Slot>, at: usize, tally: &mut Tally| {
        let id = next_id;
        next_id = next_id.wrapping_add(1);
        query[..2].copy_from_slice(&id.to_be_bytes());
        let now = Instant::now();
        match socket.send(&query) {
            Ok(_) => {
                tally.sent += 1;
                slots[at] = Slot::Waiting { id, sent: now };
            }
            Err(e) => {
                if window.counts(now) {
                    tally.errors += 1;
                }
                tally.note(|| format!("send: {e}"));
                slots[at] = Slot::Retry { at: now + Duration::from_millis(1) };
            }
        }
    };
    let mut slots = vec![Slot::Retry { at: Instant::now() }; depth];
    for at in 0..depth {
        send(&mut slots, at, &mut tally);
    }
    let mut buf = vec![0u8; 65535];
    let mut last_scan = Instant::now();
    let mut replies: u64 = 0;
    loop {
        let received = socket.recv(&mut buf);
        let now = Instant::now();
        if now >= window.until {
            break;
        }
        match received {
            Ok(n) => {
                let reply = &buf[..n];
                let id = if n >= 12 { Some(u16::from_be_bytes([reply[0], reply[1]])) } else { None };
                let slot =
                    id.and_then(|id| slots.iter().position(|s| matches!(s, Slot::Waiting { id: w, .. } if *w == id)));
                let Some(at) = slot else {
                    tally.unmatched += 1;
                    continue;
                };
                let Slot::Waiting { sent, .. } = slots[at] else { unreachable!("matched a waiting slot") };
                let counts = window.counts(now);
                let qr = reply[2] & 0x80 != 0;
                let truncated = reply[2] & 0x02 != 0;
                let rcode = reply[3] & 0x0f;
                let ancount = u16::from_be_bytes([reply[6], reply[7]]);
                if !qr {
                    tally.unmatched += 1;
                    continue;
                }
                if counts {
                    if rcode != 0 {
                        *tally.rcodes.entry(rcode).or_default() += 1;
                        tally.note(|| format!("rcode {}", hickory_proto::op::ResponseCode::from(0, rcode)));
                    } else if truncated {
                        tally.truncated += 1;
                        tally.note(|| "truncated reply".into());
                    } else if ancount == 0 && !args.allow_empty {
                        tally.empty += 1;
                        tally.note(|| "NOERROR without answers".into());
                    } else if !sample_ok(args.expect, reply, replies, &mut tally) {
                        tally.wrong += 1;
                    } else {
                        tally.answered += 1;
                        tally.latencies.push(now - sent);
                    }
                }
                replies += 1;
                send(&mut slots, at, &mut tally);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                // ECONNREFUSED and the like: an ICMP error for an earlier datagram. The queries
                // stay outstanding and time out.
                if window.counts(now) {
                    tally.errors += 1;
                }
                tally.note(|| format!("receive: {e}"));
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Timeouts and retries, every 5 ms at most.
        if now.duration_since(last_scan) >= Duration::from_millis(5) {
            last_scan = now;
            for at in 0..slots.len() {
                let resend = match slots[at] {
                    Slot::Waiting { sent, .. } if now.duration_since(sent) >= timeout => {
                        if window.counts(now) {
                            tally.timeouts += 1;
                        }
                        tally.note(|| format!("no reply within {} ms", timeout.as_millis()));
                        true
                    }
                    Slot::Retry { at: when } => now >= when,
                    Slot::Waiting { .. } => false,
                };
                if resend {
                    send(&mut slots, at, &mut tally);
                }
            }
        }
    }
    tally
}

/// With --expect, whether a sampled reply holds the address (replies not sampled pass).
fn sample_ok(expect: Option<IpAddr>, reply: &[u8], seen: u64, tally: &mut Tally) -> bool {
    let Some(expect) = expect else { return true };
    if seen & 255 != 0 {
        return true;
    }
    tally.checked += 1;
    match Message::from_vec(reply) {
        Ok(message) => {
            let texts = answer_texts(&message);
            if texts.iter().any(|t| *t == expect.to_string()) {
                true
            } else {
                tally.note(|| format!("answer {texts:?}, expected {expect}"));
                false
            }
        }
        Err(e) => {
            tally.note(|| format!("reply does not decode: {e}"));
            false
        }
    }
}
