//! The table of running mappings: for each id, the mapping berthd asked for, the socket it passed
//! in and the task serving it, which owns every connection or flow of that mapping, so stopping
//! the task closes them all. It checks sockets before replacing anything, so a refused `Add`
//! leaves the table as it was; the relaying itself lives in tcp.rs and udp.rs.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use berth_sys::udp_batch::report_destinations;
use berth_types::{PortProtocol, ProxyMapping};
use nix::sys::stat::fstat;
use socket2::{SockRef, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::udp::UdpSettings;
use crate::{tcp, udp};

/// The host socket of a mapping, shared with the task that serves it.
enum ServedSocket {
    Tcp(Arc<TcpListener>),
    Udp(Arc<UdpSocket>),
}

impl AsFd for ServedSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(listener) => listener.as_fd(),
            Self::Udp(socket) => socket.as_fd(),
        }
    }
}

struct RunningMapping {
    mapping: ProxyMapping,
    socket: ServedSocket,
    task: JoinHandle<()>,
}

impl RunningMapping {
    /// Stops the task (dropping its connections and flows) and waits until it is gone, so the
    /// proxy's copy of the socket is closed when this returns.
    async fn stop(self) {
        self.task.abort();
        if let Err(e) = self.task.await {
            if e.is_panic() {
                tracing::error!(mapping = %self.mapping.id, "the task serving the mapping had panicked: {e}");
            }
        }
    }
}

pub struct Mappings {
    running: HashMap<String, RunningMapping>,
    udp: UdpSettings,
}

impl Mappings {
    pub fn new(udp: UdpSettings) -> Self {
        Self { running: HashMap::new(), udp }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Starts serving `socket` for `mapping`, replacing a mapping with the same id. Adding the
    /// very same mapping with the same socket again changes nothing and keeps its connections
    /// (a restarted berthd may re-add everything it knows).
    pub async fn add(&mut self, mapping: ProxyMapping, socket: OwnedFd) -> Result<(), String> {
        if let Some(current) = self.running.get(&mapping.id) {
            if current.mapping == mapping && same_file(current.socket.as_fd(), socket.as_fd()) {
                tracing::debug!(mapping = %mapping.id, "already served with this socket");
                return Ok(());
            }
        }
        let socket = prepare_socket(&mapping, socket).map_err(|e| format!("cannot add mapping {}: {e}", mapping.id))?;
        if let Some(previous) = self.running.remove(&mapping.id) {
            tracing::info!(mapping = %mapping.id, "replacing the mapping and closing its connections");
            previous.stop().await;
        }
        let id: Arc<str> = Arc::from(mapping.id.as_str());
        let task = match &socket {
            ServedSocket::Tcp(listener) => tokio::spawn(tcp::serve(Arc::clone(listener), id, mapping.backend)),
            ServedSocket::Udp(host_socket) => {
                tokio::spawn(udp::serve(Arc::clone(host_socket), id, mapping.backend, self.udp))
            }
        };
        tracing::info!(mapping = %mapping.id, protocol = %mapping.protocol, backend = %mapping.backend, "serving");
        self.running.insert(mapping.id.clone(), RunningMapping { mapping, socket, task });
        Ok(())
    }

    /// Stops serving `id`: its socket (the proxy's copy) and every connection or flow close.
    /// False when no such mapping runs.
    pub async fn remove(&mut self, id: &str) -> bool {
        match self.running.remove(id) {
            Some(running) => {
                running.stop().await;
                tracing::info!(mapping = %id, "removed");
                true
            }
            None => false,
        }
    }

    /// Every mapping with its socket, ordered by id.
    pub fn list(&self) -> Vec<(&ProxyMapping, BorrowedFd<'_>)> {
        let mut listed: Vec<_> =
            self.running.values().map(|running| (&running.mapping, running.socket.as_fd())).collect();
        listed.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        listed
    }
}

/// Whether two descriptors refer to the same socket (or file).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (fstat(a), fstat(b)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

/// Checks that the socket berthd passed fits the mapping's protocol and hands it to the runtime.
fn prepare_socket(mapping: &ProxyMapping, socket: OwnedFd) -> Result<ServedSocket, String> {
    let socket = Socket::from(socket);
    let kind = socket.r#type().map_err(|e| format!("cannot read the type of the passed socket: {e}"))?;
    let served = match mapping.protocol {
        PortProtocol::Tcp => {
            let listening = socket.is_listener().map_err(|e| format!("cannot inspect the passed socket: {e}"))?;
            if kind != Type::STREAM || !listening {
                return Err("the passed socket is not a listening tcp socket".into());
            }
            socket.set_nonblocking(true).map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
            tcp::tune(SockRef::from(&socket));
            let listener =
                TcpListener::from_std(socket.into()).map_err(|e| format!("cannot register the socket: {e}"))?;
            ServedSocket::Tcp(Arc::new(listener))
        }
        PortProtocol::Udp => {
            if kind != Type::DGRAM {
                return Err("the passed socket is not a udp socket".into());
            }
            socket.set_nonblocking(true).map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
            let host_socket =
                UdpSocket::from_std(socket.into()).map_err(|e| format!("cannot register the socket: {e}"))?;
            // On a wildcard address, replies must leave from the address each client wrote to.
            if host_socket.local_addr().is_ok_and(|address| address.ip().is_unspecified()) {
                report_destinations(&host_socket)
                    .map_err(|e| format!("cannot have the socket report destinations: {e}"))?;
            }
            ServedSocket::Udp(Arc::new(host_socket))
        }
        PortProtocol::Sctp => return Err("the proxy does not serve sctp; publish sctp ports through kernel nat".into()),
    };
    Ok(served)
}
