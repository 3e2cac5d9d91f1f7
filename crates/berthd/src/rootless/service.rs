//! What the rootless parent does for its child in the user's namespace: it binds the host ports
//! the child's sandboxes publish (berth_core::host::RootlessHost asks) and hands the sockets
//! back with SCM_RIGHTS. A port below `net.ipv4.ip_unprivileged_port_start` is refused with
//! that sysctl's name. It runs on a thread of its own until the child closes the socket.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use berth_core::host::{bind_host_port, BindReply, BindRequest};
use berth_sys::fdpass::{recv_with_fds, send_with_fds};

/// Largest request on the socket.
const MESSAGE_BYTES: usize = 4096;

/// Serves the child's requests on `service` until the child closes it.
pub fn serve(service: OwnedFd) {
    let mut buffer = [0u8; MESSAGE_BYTES];
    loop {
        let length = match recv_with_fds(service.as_fd(), &mut buffer) {
            Ok((0, _)) => return,
            Ok((length, _)) => length,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("rootless: the child's service socket failed: {e}");
                return;
            }
        };
        let (reply, socket) = match serde_json::from_slice::<BindRequest>(&buffer[..length]) {
            Ok(request) => answer(&request),
            Err(e) => (BindReply::Failed { errno: libc::EINVAL, message: format!("bad request: {e}") }, None),
        };
        let payload = serde_json::to_vec(&reply).expect("replies serialise");
        let fds: Vec<_> = socket.iter().map(AsFd::as_fd).collect();
        if let Err(e) = send_with_fds(service.as_fd(), &payload, &fds) {
            tracing::error!("rootless: cannot answer the child: {e}");
            return;
        }
    }
}

/// Binds what the child asked for in the user's namespace.
fn answer(request: &BindRequest) -> (BindReply, Option<OwnedFd>) {
    match bind_host_port(request.protocol, request.ip, request.port, request.listen) {
        Ok(socket) => (BindReply::Ok, Some(OwnedFd::from(socket))),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let message = if errno == libc::EACCES {
                let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "1024".into());
                format!(
                    "port {} is below net.ipv4.ip_unprivileged_port_start ({start}), which a rootless berthd cannot bind: \
                     lower that sysctl or give berthd cap_net_bind_service (setcap cap_net_bind_service=+ep)",
                    request.port
                )
            } else {
                e.to_string()
            };
            (BindReply::Failed { errno, message }, None)
        }
    }
}
