//! The control socket: a SOCK_SEQPACKET unix socket where berthd sends `ProxyRequest`s, one JSON
//! message per packet, with served sockets attached by SCM_RIGHTS (berth_sys::fdpass), and reads
//! `ProxyReply`s back. This module moves messages; what a request does is decided elsewhere.
//!
//! tokio has no SEQPACKET type, and registering a raw descriptor (`AsyncFd`) is unsafe since
//! tokio 1.54. Its `UnixListener` and `UnixStream` register any unix socket, so they serve here as
//! readiness drivers only: every read and write goes through fdpass inside `try_io`, never through
//! their byte-stream methods, so packet boundaries and attached descriptors are kept.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::Context as _;
use berth_sys::fdpass::{recv_with_fds, send_with_fds};
use berth_types::{ProxyReply, ProxyRequest};
use nix::sys::stat::{umask, Mode};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

/// Room for one request; requests are a few hundred bytes of JSON.
const REQUEST_BUFFER_SIZE: usize = 64 * 1024;

/// Queued control connections beyond the one being served (berthd connects once).
const CONTROL_BACKLOG: i32 = 4;

/// Binds and listens on `path` with mode 0600, replacing a stale socket file left by an earlier
/// proxy. Call it before starting threads: it narrows the process umask while binding, so the
/// socket is never reachable by other users, not even for a moment.
pub fn bind_control_socket(path: &Path) -> anyhow::Result<Socket> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if std::os::unix::fs::FileTypeExt::is_socket(&metadata.file_type()) => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?,
        Ok(_) => {
            anyhow::bail!("cannot use {} as the control socket: a file that is not a socket is there", path.display())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect control socket path {}", path.display())),
    }
    let socket =
        Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None).context("cannot create the control socket")?;
    let address =
        SockAddr::unix(path).with_context(|| format!("cannot use {} as a unix socket path", path.display()))?;
    let previous_umask = umask(Mode::from_bits_truncate(0o177));
    let bound = socket.bind(&address);
    umask(previous_umask);
    bound.with_context(|| format!("cannot bind control socket {}", path.display()))?;
    socket.listen(CONTROL_BACKLOG).with_context(|| format!("cannot listen on control socket {}", path.display()))?;
    socket.set_nonblocking(true).context("cannot make the control socket non-blocking")?;
    Ok(socket)
}

/// The listening control socket, driven by the runtime.
pub struct ControlListener {
    listener: UnixListener,
}

impl ControlListener {
    pub fn new(socket: Socket) -> anyhow::Result<Self> {
        let listener = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
        let listener = UnixListener::from_std(listener).context("cannot register the control socket")?;
        Ok(Self { listener })
    }

    pub async fn accept(&self) -> io::Result<ControlConnection> {
        let (socket, _) = self.listener.accept().await?;
        Ok(ControlConnection { socket })
    }
}

/// What arrived on the control connection.
pub enum Incoming {
    /// A request and the descriptors sent with it.
    Request(ProxyRequest, Vec<OwnedFd>),
    /// A packet that is not a request; the text says why, for a `Failed` reply.
    Malformed(String),
    /// berthd closed the connection.
    Closed,
}

/// One connection from berthd (a SOCK_SEQPACKET socket; see the module comment).
pub struct ControlConnection {
    socket: UnixStream,
}

impl ControlConnection {
    pub async fn next_incoming(&self) -> io::Result<Incoming> {
        let mut buffer = vec![0u8; REQUEST_BUFFER_SIZE];
        let (length, fds) =
            self.socket.async_io(Interest::READABLE, || recv_with_fds(self.socket.as_fd(), &mut buffer)).await?;
        if length == 0 && fds.is_empty() {
            return Ok(Incoming::Closed);
        }
        Ok(match serde_json::from_slice::<ProxyRequest>(&buffer[..length]) {
            Ok(request) => Incoming::Request(request, fds),
            Err(e) => Incoming::Malformed(format!("cannot parse a control request: {e}")),
        })
    }

    /// Sends one reply, with `fd` attached when given.
    pub async fn send(&self, reply: &ProxyReply, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let payload = serde_json::to_vec(reply).map_err(io::Error::other)?;
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        self.socket.async_io(Interest::WRITABLE, || send_with_fds(self.socket.as_fd(), &payload, &fds)).await
    }
}
