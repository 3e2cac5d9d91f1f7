//! berth-proxy: the userland proxy, one long-lived process for every published port that kernel
//! NAT cannot serve (host loopback, IPv6 clients of an IPv4-only sandbox). berthd binds each host
//! socket and passes it in over the control socket; the proxy relays TCP connections and UDP
//! datagrams to the sandbox and keeps doing so when berthd goes away. This file parses the
//! command line, prepares the process (file limit, logging, the control socket) and runs the
//! control loop; it does no relaying itself.

mod control;
mod mappings;
mod tcp;
mod udp;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use berth_types::{ProxyReply, ProxyRequest};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use crate::control::{ControlConnection, ControlListener, Incoming};
use crate::mappings::Mappings;
use crate::udp::UdpSettings;

/// berth's userland proxy: relays published ports that kernel NAT cannot serve.
#[derive(Debug, Parser)]
#[command(name = "berth-proxy", version)]
struct Args {
    /// Path of the control socket (SOCK_SEQPACKET, mode 0600) berthd connects to.
    #[arg(long)]
    control: PathBuf,
    /// Seconds without a datagram in either direction after which a UDP flow is closed.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    udp_idle_timeout: u64,
    /// Most UDP flows (client addresses) per mapping; datagrams of new clients beyond it are dropped.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    udp_max_flows: u64,
    /// Log filter (tracing syntax) used when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = run(args) {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Every relayed connection costs four pipe ends and two sockets.
    match berth_sys::limits::raise_open_file_limit() {
        Ok(limit) => tracing::debug!("open file limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    // Bound before the runtime starts its threads: binding sets the process umask for a moment.
    let control_socket = control::bind_control_socket(&args.control)?;
    tracing::info!("listening for berthd on {}", args.control.display());
    let udp = UdpSettings {
        idle_timeout: Duration::from_secs(args.udp_idle_timeout),
        max_flows: usize::try_from(args.udp_max_flows).unwrap_or(usize::MAX),
    };
    // One thread: every relay step is a syscall that returns at once, so a second worker only
    // adds cross-thread wake-ups. Measured in one bench run each, interleaved against
    // docker-proxy: UDP pps 1.76x vs 1.41x docker-proxy, p99 0.84x vs 0.91x, conn/s and bulk TCP
    // unchanged (bench/run.sh proxy, 2 cores).
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(serve_control(control_socket, Mappings::new(udp)));
    if let Err(e) = std::fs::remove_file(&args.control) {
        tracing::warn!("cannot remove control socket {}: {e}", args.control.display());
    }
    outcome
}

/// How long a reply may wait for berthd to read; a stuck peer loses its connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept of a control connection, so a persistent error does not spin.
const CONTROL_ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Serves one control connection at a time until SIGTERM or SIGINT; a new connection replaces
/// the current one (berthd restarted). Mappings keep running whatever happens to the connection.
async fn serve_control(control_socket: socket2::Socket, mut mappings: Mappings) -> anyhow::Result<()> {
    let listener = ControlListener::new(control_socket)?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut berthd: Option<ControlConnection> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => {
                    if berthd.replace(connection).is_some() {
                        tracing::info!("a new control connection replaces the previous one");
                    } else {
                        tracing::info!("control connection opened");
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot accept a control connection: {e}");
                    tokio::time::sleep(CONTROL_ACCEPT_RETRY_DELAY).await;
                }
            },
            incoming = next_incoming(berthd.as_ref()) => {
                // next_incoming only completes while there is a connection.
                let Some(connection) = berthd.as_ref() else { continue };
                let answered = match incoming {
                    Ok(Incoming::Request(request, fds)) => answer(connection, &mut mappings, request, fds).await,
                    Ok(Incoming::Malformed(message)) => {
                        tracing::warn!("{message}");
                        reply(connection, &ProxyReply::Failed { message }, None).await
                    }
                    Ok(Incoming::Closed) => {
                        tracing::info!("control connection closed; mappings keep running");
                        berthd = None;
                        continue;
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = answered {
                    tracing::warn!("dropping the control connection: {e:#}");
                    berthd = None;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping: {} mappings close with their connections", mappings.len());
    Ok(())
}

async fn next_incoming(connection: Option<&ControlConnection>) -> anyhow::Result<Incoming> {
    match connection {
        Some(connection) => Ok(connection.next_incoming().await?),
        None => std::future::pending().await,
    }
}

async fn reply(connection: &ControlConnection, message: &ProxyReply, fd: Option<BorrowedFd<'_>>) -> anyhow::Result<()> {
    tokio::time::timeout(REPLY_TIMEOUT, connection.send(message, fd))
        .await
        .with_context(|| format!("cannot reply: berthd did not read for {REPLY_TIMEOUT:?}"))?
        .context("cannot reply")
}

/// Carries out one request and sends its replies.
async fn answer(
    connection: &ControlConnection,
    mappings: &mut Mappings,
    request: ProxyRequest,
    mut fds: Vec<OwnedFd>,
) -> anyhow::Result<()> {
    match request {
        ProxyRequest::Add(mapping) => {
            let outcome = match (fds.pop(), fds.is_empty()) {
                (Some(socket), true) => mappings.add(mapping.clone(), socket).await,
                (socket, _) => Err(format!(
                    "cannot add mapping {}: it carries {} sockets, expected exactly one",
                    mapping.id,
                    fds.len() + usize::from(socket.is_some())
                )),
            };
            report(connection, outcome).await
        }
        ProxyRequest::Remove { id } => {
            discard_unexpected(&fds, "remove");
            let outcome = if mappings.remove(&id).await {
                Ok(())
            } else {
                Err(format!("cannot remove mapping {id}: the proxy does not serve it"))
            };
            report(connection, outcome).await
        }
        ProxyRequest::List => {
            discard_unexpected(&fds, "list");
            for (mapping, socket) in mappings.list() {
                reply(connection, &ProxyReply::Mapping(mapping.clone()), Some(socket.as_fd())).await?;
            }
            reply(connection, &ProxyReply::End, None).await
        }
    }
}

async fn report(connection: &ControlConnection, outcome: Result<(), String>) -> anyhow::Result<()> {
    match outcome {
        Ok(()) => reply(connection, &ProxyReply::Done, None).await,
        Err(message) => {
            tracing::warn!("{message}");
            reply(connection, &ProxyReply::Failed { message }, None).await
        }
    }
}

fn discard_unexpected(fds: &[OwnedFd], request: &str) {
    if !fds.is_empty() {
        tracing::warn!("closing {} descriptors sent with a {request} request, which takes none", fds.len());
    }
}
