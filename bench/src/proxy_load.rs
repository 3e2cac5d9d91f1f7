//! proxy-load: the load client (and echo server) of the userland-proxy benchmark
//! (`bench/run.sh proxy`, see bench/proxy.sh). One binary, five modes, each printing one JSON
//! object (`serve` prints nothing and runs until killed):
//!
//! - `serve --tcp P --udp Q`: an echo server (TCP: every read written back, TCP_NODELAY; UDP:
//!   every datagram sent back), started inside a sandbox with `berth run -d`.
//! - `conn --addr A:P`: short connections per second: N concurrent workers (64) each connect,
//!   send a 64-byte request, read the 64-byte reply and close, over and over.
//! - `rr --addr A:P`: request/response latency on one kept connection (64 bytes each way, one
//!   outstanding), p50/p99.
//! - `udp --addr A:P`: UDP request/response packets per second: N concurrent sockets (16), each
//!   with one datagram outstanding; lost ones are counted and re-sent after 200 ms.
//! - `publish --socket S --sandbox NAME --spec SPEC`: publishes SPEC on a sandbox that exists
//!   (`POST /v1/sandboxes/NAME/ports`, what `berth port add` sends) timed at the API, with the RSS
//!   and open fds of berthd and of berth-proxy before and after.
//!
//! Every loop is bounded by --seconds; only what completes after --warmup counts.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth::client::{route, Client};
use berth_bench::{open_fds, percentile, status_kib, us};
use berth_types::{PortSpec, PortsChange, Version};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(name = "proxy-load")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, clap::Args)]
struct Load {
    /// Where to send the load (IP:PORT or [IPV6]:PORT).
    #[arg(long)]
    addr: SocketAddr,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Load that runs before the measurement starts and does not count.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Request and reply size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Echo server: TCP on --tcp, UDP on --udp, all addresses of both families.
    Serve {
        #[arg(long)]
        tcp: Option<u16>,
        #[arg(long)]
        udp: Option<u16>,
    },
    /// Short connections per second.
    Conn {
        #[command(flatten)]
        load: Load,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Request/response latency on one kept connection.
    Rr {
        #[command(flatten)]
        load: Load,
    },
    /// UDP request/response packets per second.
    Udp {
        #[command(flatten)]
        load: Load,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Publish a spec on a sandbox, timed, with berthd's and berth-proxy's RSS around it.
    Publish {
        /// berthd's API socket.
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        sandbox: String,
        /// A `-p` spec, such as 20000-20999:20000-20999.
        #[arg(long)]
        spec: String,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = match args.mode {
        Mode::Serve { tcp, udp } => return runtime.block_on(serve(tcp, udp)),
        Mode::Conn { load, concurrency } => runtime.block_on(conn(load, concurrency))?,
        Mode::Rr { load } => rr(&load)?,
        Mode::Udp { load, concurrency } => runtime.block_on(udp(load, concurrency))?,
        Mode::Publish { socket, sandbox, spec } => runtime.block_on(publish(&socket, &sandbox, &spec))?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

// --- serve -------------------------------------------------------------------------------------

async fn serve(tcp: Option<u16>, udp: Option<u16>) -> Result<()> {
    let mut tasks = Vec::new();
    if let Some(port) = tcp {
        let listener =
            tokio::net::TcpListener::bind(("::", port)).await.with_context(|| format!("bind tcp [::]:{port}"))?;
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        }));
    }
    if let Some(port) = udp {
        let socket =
            Arc::new(tokio::net::UdpSocket::bind(("::", port)).await.with_context(|| format!("bind udp [::]:{port}"))?);
        for _ in 0..2 {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    if let Ok((n, from)) = socket.recv_from(&mut buf).await {
                        let _ = socket.send_to(&buf[..n], from).await;
                    }
                }
            }));
        }
    }
    anyhow::ensure!(!tasks.is_empty(), "serve needs --tcp or --udp");
    for task in tasks {
        task.await?;
    }
    Ok(())
}

// --- statistics ---------------------------------------------------------------------------------

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    us(percentile(sorted, p))
}

fn latency_summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let mean = if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64
    };
    json!({
        "p50_us": percentile_us(&samples, 0.50),
        "p99_us": percentile_us(&samples, 0.99),
        "p999_us": percentile_us(&samples, 0.999),
        "max_us": percentile_us(&samples, 1.0),
        "mean_us": mean,
    })
}

/// The measured window: [start + warmup, start + warmup + seconds).
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn new(load: &Load) -> Self {
        let from = Instant::now() + Duration::from_secs_f64(load.warmup);
        Self { from, until: from + Duration::from_secs_f64(load.seconds) }
    }

    fn counts(&self, at: Instant) -> bool {
        at >= self.from && at < self.until
    }

    fn seconds(&self) -> f64 {
        (self.until - self.from).as_secs_f64()
    }
}

/// What one worker saw: completions in the window, their latencies, errors and the first error.
#[derive(Default)]
struct Tally {
    done: u64,
    latencies: Vec<Duration>,
    errors: u64,
    lost: u64,
    first_error: Option<String>,
}

impl Tally {
    /// An exchange begun at `start` was answered now.
    fn answered(&mut self, window: &Window, start: Instant) {
        let end = Instant::now();
        if window.counts(end) {
            self.done += 1;
            self.latencies.push(end - start);
        }
    }

    /// An exchange failed with `error`; the worker pauses a little before the next one, so a
    /// refusing server does not turn it into a busy loop.
    async fn failed(&mut self, window: &Window, error: std::io::Error) {
        self.error(window, || error.to_string());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn error(&mut self, window: &Window, message: impl FnOnce() -> String) {
        if window.counts(Instant::now()) {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    /// Waits for every worker and adds up their tallies.
    async fn join(workers: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally> {
        let mut all = Tally::default();
        for worker in workers {
            let t = worker.await?;
            all.done += t.done;
            all.latencies.extend(t.latencies);
            all.errors += t.errors;
            all.lost += t.lost;
            all.first_error = all.first_error.or(t.first_error);
        }
        Ok(all)
    }
}

// --- conn ---------------------------------------------------------------------------------------

async fn conn(load: Load, concurrency: usize) -> Result<serde_json::Value> {
    let window = Window::new(&load);
    let request = Arc::new(vec![b'q'; load.size]);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            let addr = load.addr;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut reply = vec![0u8; request.len()];
                while Instant::now() < window.until {
                    let start = Instant::now();
                    let outcome = async {
                        let mut stream = tokio::net::TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        stream.write_all(&request).await?;
                        stream.read_exact(&mut reply).await?;
                        Ok::<_, std::io::Error>(())
                    };
                    match tokio::time::timeout(Duration::from_secs(2), outcome).await {
                        Ok(Ok(())) => tally.answered(&window, start),
                        Ok(Err(error)) => tally.failed(&window, error).await,
                        Err(_) => tally.error(&window, || "no reply within 2 s".into()),
                    }
                }
                tally
            })
        })
        .collect();
    let all = Tally::join(workers).await?;
    Ok(json!({
        "mode": "conn",
        "addr": load.addr.to_string(),
        "concurrency": concurrency,
        "seconds": window.seconds(),
        "connections": all.done,
        "conns_per_s": all.done as f64 / window.seconds(),
        "errors": all.errors,
        "first_error": all.first_error,
        "connection_latency": latency_summary(all.latencies),
    }))
}

// --- rr -----------------------------------------------------------------------------------------

fn rr(load: &Load) -> Result<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&load.addr, Duration::from_secs(2))
        .with_context(|| format!("connect {}", load.addr))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let window = Window::new(load);
    let request = vec![b'r'; load.size];
    let mut reply = vec![0u8; load.size];
    let mut samples = Vec::with_capacity(1 << 20);
    while Instant::now() < window.until {
        let start = Instant::now();
        stream.write_all(&request).context("send a request")?;
        stream.read_exact(&mut reply).context("read a reply")?;
        let end = Instant::now();
        if window.counts(end) {
            samples.push(end - start);
        }
    }
    let count = samples.len();
    Ok(json!({
        "mode": "rr",
        "addr": load.addr.to_string(),
        "seconds": window.seconds(),
        "requests": count,
        "requests_per_s": count as f64 / window.seconds(),
        "latency": latency_summary(samples),
    }))
}

// --- udp ----------------------------------------------------------------------------------------

async fn udp(load: Load, concurrency: usize) -> Result<serde_json::Value> {
    let window = Window::new(&load);
    let size = load.size.max(8);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let addr = load.addr;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let local: SocketAddr =
                    if addr.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
                let socket = match tokio::net::UdpSocket::bind(local).await {
                    Ok(socket) => socket,
                    Err(error) => {
                        tally.first_error = Some(error.to_string());
                        return tally;
                    }
                };
                if let Err(error) = socket.connect(addr).await {
                    tally.first_error = Some(error.to_string());
                    return tally;
                }
                let mut request = vec![b'u'; size];
                let mut reply = vec![0u8; 64 * 1024];
                let mut seq: u64 = 0;
                while Instant::now() < window.until {
                    seq += 1;
                    request[..8].copy_from_slice(&seq.to_be_bytes());
                    let start = Instant::now();
                    if let Err(error) = socket.send(&request).await {
                        tally.failed(&window, error).await;
                        continue;
                    }
                    // Read until this datagram's answer; late answers to earlier ones are skipped.
                    let answered = tokio::time::timeout(Duration::from_millis(200), async {
                        loop {
                            match socket.recv(&mut reply).await {
                                Ok(n) if n >= 8 && reply[..8] == seq.to_be_bytes() => return Ok(()),
                                Ok(_) => continue,
                                Err(error) => return Err(error),
                            }
                        }
                    })
                    .await;
                    match answered {
                        Ok(Ok(())) => tally.answered(&window, start),
                        Ok(Err(error)) => tally.failed(&window, error).await,
                        Err(_) => {
                            if window.counts(Instant::now()) {
                                tally.lost += 1;
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let all = Tally::join(workers).await?;
    Ok(json!({
        "mode": "udp",
        "addr": load.addr.to_string(),
        "concurrency": concurrency,
        "seconds": window.seconds(),
        "answered": all.done,
        "pps": all.done as f64 / window.seconds(),
        "lost": all.lost,
        "errors": all.errors,
        "first_error": all.first_error,
        "latency": latency_summary(all.latencies),
    }))
}

// --- publish ------------------------------------------------------------------------------------

/// The live processes named `name` (zombies left out).
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            comm.trim() == name && !zombie
        })
        .collect()
}

fn snapshot(berthd: u32) -> serde_json::Value {
    let proxies = pids_named("berth-proxy");
    let proxy_rss: u64 = proxies.iter().filter_map(|pid| status_kib(*pid, "VmRSS:")).sum();
    let berthd_rss = status_kib(berthd, "VmRSS:").unwrap_or(0);
    json!({
        "berthd_rss_kib": berthd_rss,
        "berthd_fds": open_fds(berthd),
        "proxy_pids": proxies,
        "proxy_rss_kib": proxy_rss,
        "proxy_fds": proxies.iter().map(|pid| open_fds(*pid)).sum::<usize>(),
        "total_rss_kib": berthd_rss + proxy_rss,
    })
}

async fn publish(socket: &std::path::Path, sandbox: &str, spec: &str) -> Result<serde_json::Value> {
    let client = Client::new(socket);
    let version: Version = serde_json::from_value(client.get(&route(&["version"])).await?)?;
    let before = snapshot(version.pid);
    let change = PortsChange { ports: vec![PortSpec::parse(spec).map_err(anyhow::Error::msg)?] };
    let start = Instant::now();
    let answer = client.post(&route(&["sandboxes", sandbox, "ports"]), &change).await;
    let took = start.elapsed();
    let failure = answer.err().map(|e| e.to_string());
    // The answer comes once the proxy has the sockets; a moment for anything lazy to settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = snapshot(version.pid);
    Ok(json!({
        "mode": "publish",
        "spec": spec,
        "seconds": took.as_secs_f64(),
        "failure": failure,
        "before": before,
        "after": after,
    }))
}
