//! berthd's side of the userland proxy: starts the one `berth-proxy` process (or finds the one
//! that survived a berthd restart), and speaks its control protocol (berth_types::ProxyRequest)
//! over a SOCK_SEQPACKET unix socket, passing host sockets with SCM_RIGHTS. Calls block briefly
//! (the proxy answers at once); async callers wrap them in `block_in_place`. It decides nothing
//! about which sockets to serve; the publisher beside it does.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_sys::fdpass::{recv_with_fds, send_with_fds};
use berth_types::{ProxyMapping, ProxyReply, ProxyRequest};
use socket2::{Domain, SockAddr, Socket, Type};

/// How long the proxy gets to create its control socket after being started.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one answer may take before the proxy is considered stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest control message (JSON of one mapping, with room to spare).
const MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot start the userland proxy {binary}: {source}")]
    Start {
        binary: String,
        #[source]
        source: io::Error,
    },
    #[error("the userland proxy did not open its control socket {0} within 5 s")]
    NoControlSocket(String),
    #[error("cannot talk to the userland proxy: {0}")]
    Control(#[source] io::Error),
    #[error("the userland proxy refused {request}: {message}")]
    Refused { request: String, message: String },
    #[error("the userland proxy answered {0:?}, which makes no sense here")]
    Unexpected(ProxyReply),
}

type Result<T, E = ProxyError> = std::result::Result<T, E>;

/// A connection to the proxy, able to restart it.
#[derive(Debug)]
pub struct ProxyClient {
    binary: PathBuf,
    control_path: PathBuf,
    log_path: PathBuf,
    connection: Mutex<Socket>,
}

fn connect(path: &Path) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
    socket.connect(&SockAddr::unix(path)?)?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(socket)
}

impl ProxyClient {
    /// Connects to the proxy serving `<exec_root>/proxy.sock`, starting `binary` first when
    /// none answers there.
    pub fn connect_or_start(binary: &Path, exec_root: &Path) -> Result<Self> {
        let control_path = exec_root.join("proxy.sock");
        let log_path = exec_root.join("proxy.log");
        let connection = match connect(&control_path) {
            Ok(socket) => {
                tracing::info!("found the userland proxy still running; re-syncing it");
                socket
            }
            Err(_) => start(binary, &control_path, &log_path)?,
        };
        Ok(Self { binary: binary.to_owned(), control_path, log_path, connection: Mutex::new(connection) })
    }

    /// Whether the proxy is still at the other end of the control connection.
    pub fn is_alive(&self) -> bool {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let mut fds = [nix::poll::PollFd::new(connection.as_fd(), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(0) => true,
            Ok(_) => !fds[0]
                .revents()
                .is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLHUP | nix::poll::PollFlags::POLLERR)),
            Err(_) => false,
        }
    }

    /// Starts a new proxy (the old one died) and connects to it; its mapping table is empty.
    pub fn restart(&self) -> Result<()> {
        let socket = start(&self.binary, &self.control_path, &self.log_path)?;
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = socket;
        Ok(())
    }

    fn send(connection: &Socket, request: &ProxyRequest, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let payload = serde_json::to_vec(request).expect("requests serialise");
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        send_with_fds(connection.as_fd(), &payload, &fds).map_err(ProxyError::Control)
    }

    fn receive(connection: &Socket) -> Result<(ProxyReply, Vec<OwnedFd>)> {
        let mut buffer = vec![0u8; MESSAGE_BYTES];
        let (len, fds) = recv_with_fds(connection.as_fd(), &mut buffer).map_err(ProxyError::Control)?;
        if len == 0 {
            return Err(ProxyError::Control(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection",
            )));
        }
        let reply = serde_json::from_slice(&buffer[..len]).map_err(|e| ProxyError::Control(io::Error::other(e)))?;
        Ok((reply, fds))
    }

    fn expect_done(connection: &Socket, what: &str) -> Result<()> {
        match Self::receive(connection)?.0 {
            ProxyReply::Done => Ok(()),
            ProxyReply::Failed { message } => Err(ProxyError::Refused { request: what.to_owned(), message }),
            other => Err(ProxyError::Unexpected(other)),
        }
    }

    /// Has the proxy serve `socket` for `mapping` (replacing a mapping with the same id).
    pub fn add(&self, mapping: &ProxyMapping, socket: BorrowedFd<'_>) -> Result<()> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        Self::send(&connection, &ProxyRequest::Add(mapping.clone()), Some(socket))?;
        Self::expect_done(&connection, &format!("serving {}", mapping.id))
    }

    /// Stops the mapping `id`: its listener and connections close.
    pub fn remove(&self, id: &str) -> Result<()> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        Self::send(&connection, &ProxyRequest::Remove { id: id.to_owned() }, None)?;
        Self::expect_done(&connection, &format!("removing {id}"))
    }

    /// Every mapping the proxy serves, each with a copy of its socket.
    pub fn list(&self) -> Result<Vec<(ProxyMapping, OwnedFd)>> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        Self::send(&connection, &ProxyRequest::List, None)?;
        let mut mappings = Vec::new();
        loop {
            match Self::receive(&connection)? {
                (ProxyReply::Mapping(mapping), mut fds) if fds.len() == 1 => mappings.push((mapping, fds.remove(0))),
                (ProxyReply::End, _) => return Ok(mappings),
                (ProxyReply::Failed { message }, _) => {
                    return Err(ProxyError::Refused { request: "listing".into(), message })
                }
                (other, _) => return Err(ProxyError::Unexpected(other)),
            }
        }
    }
}

/// Starts the proxy in a process group of its own (so it outlives berthd and its signals) and
/// waits for its control socket.
fn start(binary: &Path, control_path: &Path, log_path: &Path) -> Result<Socket> {
    let start_error = |source| ProxyError::Start { binary: binary.display().to_string(), source };
    let log = OpenOptions::new().create(true).append(true).open(log_path).map_err(start_error)?;
    let mut child = Command::new(binary)
        .arg("--control")
        .arg(control_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(start_error)?;
    // Reap it when it ends while berthd lives; after a berthd restart init reaps it.
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(socket) = connect(control_path) {
            tracing::info!(binary = %binary.display(), "userland proxy started");
            return Ok(socket);
        }
        if Instant::now() > deadline {
            return Err(ProxyError::NoControlSocket(control_path.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
