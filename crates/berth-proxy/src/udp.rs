//! UDP relaying: datagrams arriving on a mapping's host socket are sorted into flows by client
//! address; each flow has its own UDP socket connected to the backend, so the backend's replies
//! come back on that socket and go to the right client (sent from the host socket). Flows close
//! after an idle timeout, and their number per mapping is bounded: datagrams from new clients
//! beyond the bound are dropped, with a rate-limited warning. It knows nothing about the control
//! protocol.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::log_throttle::LogThrottle;

/// Room for the largest datagram (65,507 bytes over IPv4, 65,527 over IPv6).
const DATAGRAM_BUFFER_SIZE: usize = 64 * 1024;

/// How often the same warning about a mapping may be logged.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct UdpSettings {
    /// A flow with no datagram in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// The most flows one mapping keeps.
    pub max_flows: usize,
}

impl UdpSettings {
    /// How often flows are checked for idleness: a flow lives at most this much past its timeout.
    fn sweep_interval(&self) -> Duration {
        (self.idle_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// When a flow last carried a datagram, as milliseconds since its mapping started; shared
/// between the mapping's task (client → backend) and the flow's reply task.
struct LastActive {
    epoch: Instant,
    millis: AtomicU64,
}

impl LastActive {
    fn new(epoch: Instant) -> Self {
        let last_active = Self { epoch, millis: AtomicU64::new(0) };
        last_active.touch();
        last_active
    }

    fn touch(&self) {
        self.millis.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.millis.load(Ordering::Relaxed)))
    }
}

/// One client's flow: its socket connected to the backend and the task relaying replies.
struct Flow {
    backend: Arc<UdpSocket>,
    last_active: Arc<LastActive>,
    reply_task: AbortHandle,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.reply_task.abort();
    }
}

/// Relays datagrams on `host_socket` until the task is aborted; every flow's reply task belongs
/// to this one, so aborting it closes them all.
pub async fn serve(host_socket: Arc<UdpSocket>, mapping_id: Arc<str>, backend: SocketAddr, settings: UdpSettings) {
    let epoch = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut reply_tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_SIZE];
    let mut sweep = tokio::time::interval(settings.sweep_interval());
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut table_full = LogThrottle::new(WARNING_INTERVAL);
    let mut flow_failures = LogThrottle::new(WARNING_INTERVAL);
    loop {
        tokio::select! {
            received = host_socket.recv_from(&mut buffer) => {
                let (length, client) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::debug!(mapping = %mapping_id, "cannot receive a datagram: {e}");
                        continue;
                    }
                };
                if !flows.contains_key(&client) {
                    if flows.len() >= settings.max_flows {
                        if let Some(count) = table_full.occurrence() {
                            tracing::warn!(
                                mapping = %mapping_id,
                                "udp flow table full ({} flows): dropped {count} datagrams from new clients",
                                settings.max_flows
                            );
                        }
                        continue;
                    }
                    match open_flow(&host_socket, client, backend, epoch, &mut reply_tasks).await {
                        Ok(flow) => {
                            tracing::debug!(mapping = %mapping_id, "new udp flow from {client}");
                            flows.insert(client, flow);
                        }
                        Err(e) => {
                            if let Some(count) = flow_failures.occurrence() {
                                tracing::warn!(
                                    mapping = %mapping_id,
                                    "cannot open udp flows to {backend} ({count} failures): {e}"
                                );
                            }
                            continue;
                        }
                    }
                }
                let flow = &flows[&client];
                flow.last_active.touch();
                if let Err(e) = send_now(&flow.backend, &buffer[..length], None) {
                    tracing::debug!(mapping = %mapping_id, "dropped a datagram from {client} to {backend}: {e}");
                }
            },
            _ = sweep.tick() => {
                let before = flows.len();
                flows.retain(|_, flow| flow.last_active.idle_for() < settings.idle_timeout);
                if flows.len() < before {
                    tracing::debug!(mapping = %mapping_id, "closed {} idle udp flows", before - flows.len());
                }
            },
            Some(ended) = reply_tasks.join_next_with_id(), if !reply_tasks.is_empty() => {
                // A reply task ends by itself only when its socket failed: drop that flow so the
                // client's next datagram opens a fresh one. Aborted tasks were removed already.
                if let Ok((task_id, client)) = ended {
                    if flows.get(&client).is_some_and(|flow| flow.reply_task.id() == task_id) {
                        flows.remove(&client);
                    }
                }
            },
        }
    }
}

async fn open_flow(
    host_socket: &Arc<UdpSocket>,
    client: SocketAddr,
    backend: SocketAddr,
    epoch: Instant,
    reply_tasks: &mut JoinSet<SocketAddr>,
) -> io::Result<Flow> {
    let unspecified: SocketAddr = match backend {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let backend_socket = UdpSocket::bind(unspecified).await?;
    backend_socket.connect(backend).await?;
    let backend_socket = Arc::new(backend_socket);
    let last_active = Arc::new(LastActive::new(epoch));
    let reply_task = reply_tasks.spawn(relay_replies(
        Arc::clone(&backend_socket),
        Arc::clone(host_socket),
        client,
        Arc::clone(&last_active),
    ));
    Ok(Flow { backend: backend_socket, last_active, reply_task })
}

/// Sends a datagram at once, to `target` or to the socket's connected peer. A full send buffer
/// drops the datagram (as a router would) rather than stall the other flows. This is a direct
/// non-blocking send, not tokio's `try_send`: that one fails on a socket the reactor has not
/// yet reported writable, such as a flow's brand new socket.
fn send_now(socket: &UdpSocket, datagram: &[u8], target: Option<SocketAddr>) -> io::Result<usize> {
    let socket = SockRef::from(socket);
    match target {
        Some(target) => socket.send_to(datagram, &target.into()),
        None => socket.send(datagram),
    }
}

thread_local! {
    /// One datagram buffer per runtime thread for replies, instead of 64 KiB per flow; it is
    /// only borrowed between awaits.
    static REPLY_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0u8; DATAGRAM_BUFFER_SIZE]);
}

/// Sends every datagram the backend sends on the flow's socket to `client`, from the host
/// socket. Returns the client's address when the socket fails for good.
async fn relay_replies(
    backend: Arc<UdpSocket>,
    host_socket: Arc<UdpSocket>,
    client: SocketAddr,
    last_active: Arc<LastActive>,
) -> SocketAddr {
    loop {
        if let Err(e) = backend.readable().await {
            tracing::warn!("closing the udp flow of {client}: {e}");
            return client;
        }
        let relayed = REPLY_BUFFER.with_borrow_mut(|buffer| -> io::Result<()> {
            let length = backend.try_recv(buffer)?;
            last_active.touch();
            if let Err(e) = send_now(&host_socket, &buffer[..length], Some(client)) {
                tracing::debug!("dropped a reply to {client}: {e}");
            }
            Ok(())
        });
        match relayed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The backend answered an earlier datagram with ICMP port unreachable: it is not
            // listening (yet). The flow stays; later datagrams may find it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::debug!("the backend refused a datagram from {client}");
            }
            Err(e) => {
                tracing::warn!("closing the udp flow of {client}: {e}");
                return client;
            }
        }
    }
}
