//! The resolver shared by all sandboxes and the listeners of each sandbox.
//!
//! Each sandbox has one UDP socket and one TCP listener, served by two tasks. The UDP task
//! takes the queries queued on its socket in one batch (`recvmmsg`), answers local names
//! inline, sends those answers in one batch (`sendmmsg`), and never waits for an upstream:
//! every forwarded query gets a task of its own, at most [`ResolverConfig::max_forwards_per_sandbox`]
//! at a time, so a sandbox flooding names that must be forwarded delays neither its own local
//! answers nor anyone else's. The TCP task accepts at most
//! [`ResolverConfig::max_tcp_connections_per_sandbox`] connections, each served by a task that
//! answers its queries in order and drops a client that stalls for
//! [`ResolverConfig::tcp_idle_timeout`]. The forward and connection tasks belong to the task that
//! spawned them ([`JoinSet`]), so dropping the [`SandboxListener`] stops all of them.
//!
//! All listeners run on one thread of the resolver's own, a single-threaded tokio runtime:
//! profiled under load, most of a query's cost was waking threads and switching between them,
//! which a multi-threaded runtime adds to (a task moving between workers); one thread answers
//! far more queries than sandboxes send. The thread ends when the resolver is dropped. Being
//! one thread, it has one set of UDP receive buffers that every listener uses in turn, instead
//! of 64 KiB per sandbox.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use berth_sys::udp_batch::{send_batch, Datagram, ReceiveBatch};
use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use berth_sys::log_throttle::LogThrottle;

use crate::directory::Directory;
use crate::forward::{forward_tcp, forward_udp, read_header_and_questions, MAX_MESSAGE_SIZE};
use crate::query::{respond, respond_tcp, Decision};

/// How often the same limit of one sandbox may be warned about.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// How long a listener pauses after its socket reported an error (out of descriptors or
/// memory), so a lasting error does not spin the task.
const SOCKET_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How many queued queries a UDP listener takes from its socket in one system call.
const RECEIVE_BATCH_SLOTS: usize = 32;

/// Room for each query of a batch: the largest UDP datagram, so every query is received whole,
/// as before batching. The slots are shared by every listener (see [`RECEIVE_BATCH`]), so this
/// costs 2 MiB of address space once, not per sandbox, and only the pages that datagrams
/// filled are resident (a slot's first page for a usual query). A datagram longer than this
/// cannot arrive over UDP; should one ever be cut, it is dropped.
const RECEIVE_BATCH_SLOT_SIZE: usize = MAX_MESSAGE_SIZE;

thread_local! {
    /// The receive buffers of every UDP listener. All listeners run on the resolver's one
    /// thread, and each borrows the batch only between its socket turning readable and its
    /// queries being decided (never across an await), so one batch serves them all.
    static RECEIVE_BATCH: RefCell<ReceiveBatch> =
        RefCell::new(ReceiveBatch::new(RECEIVE_BATCH_SLOTS, RECEIVE_BATCH_SLOT_SIZE));
}

/// Limits and timeouts of the resolver.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How long one upstream gets to answer before the next is tried. Default 2 s: a client's
    /// own resolver usually retries after 5 s, by which time two upstreams have been tried.
    pub upstream_timeout: Duration,
    /// A TCP client that sends nothing (or half a message), or does not read its replies, for
    /// this long is dropped. Default 5 s.
    pub tcp_idle_timeout: Duration,
    /// Concurrent TCP connections per sandbox; more are closed at once. Default 64.
    pub max_tcp_connections_per_sandbox: usize,
    /// Queries forwarded over UDP in flight per sandbox; more get SERVFAIL at once. Default 256.
    /// (Queries over TCP are forwarded one at a time per connection, so bounded by the
    /// connection limit.)
    pub max_forwards_per_sandbox: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(5),
            max_tcp_connections_per_sandbox: 64,
            max_forwards_per_sandbox: 256,
        }
    }
}

/// What queries are answered from; each part is replaced whole by its setter.
#[derive(Debug, Default)]
struct Knowledge {
    directory: Directory,
    daemon_upstreams: Vec<SocketAddr>,
}

/// The state every listener shares: the current directory and the daemon's upstreams.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    knowledge: RwLock<Knowledge>,
    /// The resolver's own runtime, on the thread that serves every listener.
    runtime: tokio::runtime::Handle,
    /// Dropped with the resolver, which ends that thread.
    _stop_runtime: tokio::sync::oneshot::Sender<()>,
}

impl Resolver {
    /// A resolver with its serving thread started.
    pub fn new(config: ResolverConfig) -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| with_context(error, "cannot build the resolver's runtime"))?;
        let handle = runtime.handle().clone();
        let (stop_runtime, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("berth-dns".into())
            .spawn(move || runtime.block_on(async move { stopped.await.unwrap_or_default() }))
            .map_err(|error| with_context(error, "cannot start the resolver's thread"))?;
        Ok(Arc::new(Self { config, knowledge: RwLock::default(), runtime: handle, _stop_runtime: stop_runtime }))
    }

    /// Swaps in a new directory; queries already being answered finish with the old one.
    pub fn set_directory(&self, directory: Directory) {
        let previous = {
            let mut knowledge = self.knowledge.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut knowledge.directory, directory)
        };
        // Freed here, outside the lock, so queries don't wait for it.
        drop(previous);
    }

    /// Sets the daemon's upstreams (the host's resolvers, or berthd's `--dns`).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        let mut knowledge = self.knowledge.write().unwrap_or_else(PoisonError::into_inner);
        knowledge.daemon_upstreams = upstreams;
    }

    /// Serves queries of sandbox `sandbox_id` arriving on `udp` and `tcp` (bound non-blocking
    /// sockets, typically opened inside the sandbox's namespace) on the resolver's thread.
    pub fn listen(
        self: &Arc<Self>,
        sandbox_id: &str,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> std::io::Result<SandboxListener> {
        let _in_runtime = self.runtime.enter();
        let udp = UdpSocket::from_std(udp).map_err(|error| with_context(error, "cannot serve the UDP socket"))?;
        let tcp = TcpListener::from_std(tcp).map_err(|error| with_context(error, "cannot serve the TCP listener"))?;
        let sandbox_id: Arc<str> = Arc::from(sandbox_id);
        tracing::debug!(
            sandbox = %sandbox_id, udp = ?udp.local_addr().ok(), tcp = ?tcp.local_addr().ok(), "serving DNS"
        );
        Ok(SandboxListener {
            udp_task: self.runtime.spawn(Arc::clone(self).serve_udp(Arc::clone(&sandbox_id), udp)),
            tcp_task: self.runtime.spawn(Arc::clone(self).serve_tcp(sandbox_id, tcp)),
        })
    }

    /// What to do with `query` from `sandbox_id`, with what the resolver knows now;
    /// `respond_for_transport` is [`respond`] or [`respond_tcp`], after how the query came.
    fn decide(
        &self,
        respond_for_transport: impl FnOnce(&Directory, &str, &[u8], &[SocketAddr]) -> Decision,
        sandbox_id: &str,
        query: &[u8],
    ) -> Decision {
        let knowledge = self.knowledge.read().unwrap_or_else(PoisonError::into_inner);
        respond_for_transport(&knowledge.directory, sandbox_id, query, &knowledge.daemon_upstreams)
    }

    /// The UDP loop of one sandbox; it owns the tasks of the queries it forwards. Each turn
    /// takes every query queued (up to [`RECEIVE_BATCH_SLOTS`]), decides them all, and sends the
    /// replies it has at once in one batch.
    async fn serve_udp(self: Arc<Self>, sandbox_id: Arc<str>, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut forwards = JoinSet::new();
        let mut limit_warning = LogThrottle::new(LIMIT_WARNING_INTERVAL);
        let mut replies = Vec::new();
        loop {
            let received = match socket.readable().await {
                Ok(()) => RECEIVE_BATCH.with_borrow_mut(|batch| {
                    batch.try_recv_batch(&socket)?;
                    for query in batch.iter() {
                        self.answer_udp_query(
                            &sandbox_id,
                            &socket,
                            query,
                            &mut forwards,
                            &mut limit_warning,
                            &mut replies,
                        );
                    }
                    Ok(())
                }),
                Err(error) => Err(error),
            };
            match received {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => {
                    tracing::debug!(sandbox = %sandbox_id, %error, "receiving on the UDP socket failed");
                    tokio::time::sleep(SOCKET_ERROR_PAUSE).await;
                    continue;
                }
            }
            if let Err(error) = send_batch(&socket, &replies).await {
                tracing::debug!(sandbox = %sandbox_id, %error, "cannot send UDP replies");
            }
            replies.clear();
        }
    }

    /// Decides one query received over UDP: its reply (a local answer, or SERVFAIL when too many
    /// queries are being forwarded) joins `replies`, or a task of `forwards` relays it upstream
    /// and sends the reply itself. A query longer than a receive slot is dropped (see
    /// [`RECEIVE_BATCH_SLOT_SIZE`]).
    fn answer_udp_query(
        &self,
        sandbox_id: &str,
        socket: &Arc<UdpSocket>,
        query: Datagram<'_>,
        forwards: &mut JoinSet<()>,
        limit_warning: &mut LogThrottle,
        replies: &mut Vec<(Vec<u8>, SocketAddr)>,
    ) {
        let client = query.source;
        let length = query.payload.len();
        if query.truncated {
            tracing::debug!(sandbox = %sandbox_id, %client, "dropped a UDP query longer than {length} bytes");
            return;
        }
        let upstreams = match self.decide(respond, sandbox_id, query.payload) {
            Decision::Reply(reply) => {
                replies.push((reply, client));
                return;
            }
            Decision::Drop => {
                tracing::debug!(sandbox = %sandbox_id, %client, length, "dropped an unreadable UDP query");
                return;
            }
            Decision::Forward(upstreams) => upstreams,
        };
        while forwards.try_join_next().is_some() {}
        if forwards.len() >= self.config.max_forwards_per_sandbox {
            if let Some(occurrences) = limit_warning.occurrence() {
                tracing::warn!(
                    sandbox = %sandbox_id,
                    limit = self.config.max_forwards_per_sandbox,
                    occurrences,
                    "too many forwarded queries in flight; answering SERVFAIL"
                );
            }
            if let Some(reply) = server_failure(query.payload) {
                replies.push((reply, client));
            }
            return;
        }
        let query = query.payload.to_vec();
        let socket = Arc::downgrade(socket);
        let timeout = self.config.upstream_timeout;
        forwards.spawn(async move {
            let reply = match forward_udp(&query, &upstreams, timeout).await {
                Some(reply) => reply,
                None => match server_failure(&query) {
                    Some(reply) => reply,
                    None => return,
                },
            };
            // The listener may have stopped meanwhile; then the reply has nowhere to go.
            if let Some(socket) = socket.upgrade() {
                send_udp_reply(&socket, &reply, client).await;
            }
        });
    }

    /// The TCP accept loop of one sandbox; it owns the tasks of its connections.
    async fn serve_tcp(self: Arc<Self>, sandbox_id: Arc<str>, listener: TcpListener) {
        let mut connections = JoinSet::new();
        let mut limit_warning = LogThrottle::new(LIMIT_WARNING_INTERVAL);
        loop {
            let (stream, client) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(sandbox = %sandbox_id, %error, "accepting a TCP connection failed");
                    tokio::time::sleep(SOCKET_ERROR_PAUSE).await;
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            if connections.len() >= self.config.max_tcp_connections_per_sandbox {
                if let Some(occurrences) = limit_warning.occurrence() {
                    tracing::warn!(
                        sandbox = %sandbox_id,
                        limit = self.config.max_tcp_connections_per_sandbox,
                        occurrences,
                        "too many TCP connections; closing new ones"
                    );
                }
                drop(stream);
                continue;
            }
            connections.spawn(Arc::clone(&self).serve_tcp_connection(Arc::clone(&sandbox_id), stream, client));
        }
    }

    /// Answers the queries of one TCP connection in order, until the client closes it, stalls,
    /// or sends something that is not a query.
    async fn serve_tcp_connection(self: Arc<Self>, sandbox_id: Arc<str>, mut stream: TcpStream, client: SocketAddr) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(sandbox = %sandbox_id, %client, %error, "cannot set TCP_NODELAY");
        }
        let idle_timeout = self.config.tcp_idle_timeout;
        let mut query = Vec::new();
        let mut framed_reply = Vec::new();
        loop {
            let mut length = [0; 2];
            if let Err(reason) = read_within(idle_timeout, &mut stream, &mut length).await {
                tracing::debug!(sandbox = %sandbox_id, %client, reason, "TCP connection ends");
                return;
            }
            let length = usize::from(u16::from_be_bytes(length));
            if length == 0 {
                tracing::debug!(sandbox = %sandbox_id, %client, "zero-length TCP message; closing");
                return;
            }
            query.resize(length, 0);
            if let Err(reason) = read_within(idle_timeout, &mut stream, &mut query).await {
                tracing::debug!(sandbox = %sandbox_id, %client, reason, length, "TCP connection ends inside a message");
                return;
            }
            let reply = match self.decide(respond_tcp, &sandbox_id, &query) {
                Decision::Reply(reply) => reply,
                Decision::Drop => {
                    tracing::debug!(sandbox = %sandbox_id, %client, length, "unreadable TCP query; closing");
                    return;
                }
                Decision::Forward(upstreams) => {
                    match forward_tcp(&query, &upstreams, self.config.upstream_timeout).await {
                        Some(reply) => reply,
                        None => match server_failure(&query) {
                            Some(reply) => reply,
                            None => return,
                        },
                    }
                }
            };
            let Ok(reply_length) = u16::try_from(reply.len()) else {
                let length = reply.len();
                tracing::debug!(sandbox = %sandbox_id, %client, length, "reply too long for TCP; closing");
                return;
            };
            framed_reply.clear();
            framed_reply.extend_from_slice(&reply_length.to_be_bytes());
            framed_reply.extend_from_slice(&reply);
            match tokio::time::timeout(idle_timeout, stream.write_all(&framed_reply)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(sandbox = %sandbox_id, %client, %error, "cannot write a TCP reply");
                    return;
                }
                Err(_) => {
                    tracing::debug!(sandbox = %sandbox_id, %client, "TCP client does not read its replies; closing");
                    return;
                }
            }
        }
    }
}

/// One sandbox's UDP and TCP listeners; dropping it stops them (and closes the sockets, as soon
/// as the runtime has cancelled the tasks), together with the queries they are forwarding and
/// their TCP connections.
#[derive(Debug)]
pub struct SandboxListener {
    udp_task: JoinHandle<()>,
    tcp_task: JoinHandle<()>,
}

impl Drop for SandboxListener {
    fn drop(&mut self) {
        self.udp_task.abort();
        self.tcp_task.abort();
    }
}

fn with_context(error: std::io::Error, context: &str) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{context}: {error}"))
}

/// Fills `buffer` from `stream` within `timeout`; the reason it could not otherwise.
async fn read_within(timeout: Duration, stream: &mut TcpStream, buffer: &mut [u8]) -> Result<(), &'static str> {
    match tokio::time::timeout(timeout, stream.read_exact(buffer)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err("closed by the client"),
        Ok(Err(_)) => Err("read failed"),
        Err(_) => Err("idle timeout"),
    }
}

async fn send_udp_reply(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(reply, client).await {
        tracing::debug!(%client, %error, "cannot send a UDP reply");
    }
}

/// SERVFAIL for `query`: its id, opcode, RD flag and question; None if not even its header can
/// be read.
fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    let (header, questions) = read_header_and_questions(query)?;
    let mut reply = Message::error_msg(header.id, header.op_code, ResponseCode::ServFail);
    reply.metadata.recursion_desired = header.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(questions);
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    #[test]
    fn server_failure_echoes_id_question_and_recursion_desired() {
        let mut query = Message::query();
        query.metadata.id = 0x4242;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii("example.com.").expect("a name"), RecordType::AAAA));
        let reply = server_failure(&query.to_vec().expect("encode")).expect("a SERVFAIL");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.metadata.op_code, OpCode::Query);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert!(reply.metadata.recursion_desired);
        assert_eq!(reply.queries, query.queries);
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn server_failure_needs_a_header() {
        assert_eq!(server_failure(&[0x12, 0x34, 0x01]), None);
        assert_eq!(server_failure(&[]), None);
    }
}
