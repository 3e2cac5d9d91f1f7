//! TCP relaying: accept clients on a mapping's listening socket, connect each to the backend,
//! and copy both directions with splice(2) through a pipe, so bytes never enter user space. A
//! half-close is passed on (EOF on one side becomes shutdown(SHUT_WR) on the other), a reset is
//! passed on as a reset (SO_LINGER 0), and the pipe bounds what is in flight, so a slow reader
//! slows the writer down. A direction holds a pipe only while data is in it; idle connections
//! cost two sockets and no pipes. It knows nothing about the control protocol.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use berth_sys::log_throttle::LogThrottle;

/// How long the backend has to accept a connection before the client is reset.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after accept fails for lack of resources (descriptors, memory), so it does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Size asked for each relay pipe: room for a full socket buffer's worth per splice (measured:
/// about a third more throughput than the default 64 KiB). The kernel may refuse it (above
/// fs.pipe-max-size, or past fs.pipe-user-pages-soft without CAP_SYS_RESOURCE); the pipe then
/// keeps its default size.
const PIPE_SIZE: i32 = 1024 * 1024;

/// Accepts clients on `listener` until the task is aborted; every connection's task belongs to
/// this one, so aborting it closes them all.
pub async fn serve(listener: Arc<TcpListener>, mapping_id: Arc<str>, backend: SocketAddr) {
    let mut connections = JoinSet::new();
    let mut accept_failures = LogThrottle::new(Duration::from_secs(10));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, client_address)) => {
                    connections.spawn(relay_connection(client, client_address, backend, Arc::clone(&mapping_id)));
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    if let Some(count) = accept_failures.occurrence() {
                        tracing::warn!(mapping = %mapping_id, "cannot accept connections ({count} failures): {e}");
                    }
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = finished {
                    if e.is_panic() {
                        tracing::error!(mapping = %mapping_id, "a connection task panicked: {e}");
                    }
                }
            }
        }
    }
}

async fn relay_connection(
    client: TcpStream,
    client_address: SocketAddr,
    backend_address: SocketAddr,
    mapping_id: Arc<str>,
) {
    let backend = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend_address)).await {
        Ok(Ok(backend)) => backend,
        Ok(Err(e)) => {
            tracing::debug!(
                mapping = %mapping_id,
                "resetting client {client_address}: cannot connect to {backend_address}: {e}"
            );
            reset(&client);
            return;
        }
        Err(_) => {
            tracing::debug!(
                mapping = %mapping_id,
                "resetting client {client_address}: {backend_address} did not accept within {CONNECT_TIMEOUT:?}"
            );
            reset(&client);
            return;
        }
    };
    tune(SockRef::from(&backend));
    let mut connection = Connection { client, backend, ended_cleanly: false };
    match connection.relay().await {
        Ok((upstream, downstream)) => {
            connection.ended_cleanly = true;
            tracing::debug!(
                mapping = %mapping_id,
                "connection from {client_address} ended: {upstream} bytes to the backend, {downstream} back"
            );
        }
        Err(e) => {
            tracing::debug!(mapping = %mapping_id, "resetting both sides of the connection from {client_address}: {e}")
        }
    }
}

/// Keepalive probes start after this long without traffic, then go every KEEPALIVE_INTERVAL;
/// a peer that vanished without a FIN is noticed within about two minutes (the kernel's own
/// default would keep its connection, and two sockets here, for over two hours).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_PROBES: u32 = 4;

/// Low latency for interactive traffic, and keepalives so a vanished peer is noticed. Set on
/// each backend connection, and once on each listener: Linux copies TCP_NODELAY and the
/// keepalive settings into every socket accepted from it (tested), which saves five system calls
/// per client connection.
pub fn tune(socket: SockRef<'_>) {
    let keepalive =
        TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL).with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket.set_tcp_nodelay(true).and_then(|()| socket.set_tcp_keepalive(&keepalive)) {
        tracing::debug!("cannot set TCP_NODELAY and keepalives: {e}");
    }
}

/// Makes the coming close send a reset instead of a FIN.
fn reset(stream: &TcpStream) {
    if let Err(e) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!("cannot set SO_LINGER 0 to reset a connection: {e}");
    }
}

/// A client and its backend connection. Unless the relay ended cleanly (both sides finished
/// with a FIN), both sides are reset when it is dropped: after an error, and when the mapping is
/// removed and its task aborted, so neither peer mistakes a cut connection for a complete one.
struct Connection {
    client: TcpStream,
    backend: TcpStream,
    ended_cleanly: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.ended_cleanly {
            reset(&self.client);
            reset(&self.backend);
        }
    }
}

impl Connection {
    /// Copies both directions until both have ended; returns the bytes sent each way. The first
    /// error (a reset on either side) ends both directions.
    async fn relay(&self) -> io::Result<(u64, u64)> {
        tokio::try_join!(copy(&self.client, &self.backend), copy(&self.backend, &self.client))
    }
}

/// Empty pipes kept for reuse: taking one is cheaper than creating it (pipe2 and two fcntl).
static IDLE_PIPES: Mutex<Vec<SplicePipe>> = Mutex::new(Vec::new());

/// The most empty pipes kept; more are closed when given back.
const IDLE_PIPES_KEPT: usize = 256;

/// Copies `from` to `to` until `from` reaches EOF, then shuts down writing on `to` (passing the
/// half-close on). Returns the bytes copied.
///
/// Each round waits until `from` is readable, takes an empty pipe, moves what `from` has into
/// it and drains it completely into `to` before giving it back. As the pipe is empty when a read
/// starts, a read that would block means `from` is empty, never that the pipe is full (which
/// would clear `from`'s readiness while data waits in it, and stall).
async fn copy(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut copied = 0u64;
    loop {
        from.readable().await?;
        let pipe = SplicePipe::take()?;
        let filled = match pipe.fill(from) {
            Ok(filled) => filled,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                pipe.give_back();
                continue;
            }
            Err(e) => {
                pipe.give_back();
                return Err(e);
            }
        };
        if filled == 0 {
            pipe.give_back();
            SockRef::from(to).shutdown(Shutdown::Write)?;
            return Ok(copied);
        }
        // Dropped (closed) rather than given back if this fails or the task is aborted: it may
        // still hold data.
        pipe.drain(to, filled).await?;
        pipe.give_back();
        copied += filled as u64;
    }
}

/// A pipe between two sockets; see `copy`.
struct SplicePipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    capacity: usize,
}

impl SplicePipe {
    /// An idle pipe, or a new one.
    fn take() -> io::Result<Self> {
        let idle = IDLE_PIPES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match idle {
            Some(pipe) => Ok(pipe),
            None => Self::new(),
        }
    }

    /// Keeps this pipe, which must be empty, for the next round of some connection.
    fn give_back(self) {
        let mut idle = IDLE_PIPES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_PIPES_KEPT {
            idle.push(self);
        }
    }

    fn new() -> io::Result<Self> {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // The default size stays when the larger one is refused; see PIPE_SIZE.
        let _ = fcntl(&write_end, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        let capacity = fcntl(&write_end, FcntlArg::F_GETPIPE_SZ)?;
        Ok(Self { read_end, write_end, capacity: usize::try_from(capacity).unwrap_or(PIPE_SIZE as usize) })
    }

    /// Moves what `from` has (up to the pipe's capacity) into the empty pipe; 0 means EOF.
    fn fill(&self, from: &TcpStream) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        from.try_io(Interest::READABLE, || splice_once(from, &self.write_end, self.capacity, flags))
    }

    /// Moves `pending` bytes from the pipe into `to`, waiting while its send buffer is full.
    async fn drain(&self, to: &TcpStream, mut pending: usize) -> io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        while pending > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice_once(&self.read_end, to, pending, flags)) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the peer accepted no more bytes")),
                Ok(moved) => pending -= moved,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn splice_once(from: impl AsFd, to: impl AsFd, length: usize, flags: SpliceFFlags) -> io::Result<usize> {
    Ok(splice(from, None, to, None, length, flags)?)
}
