//! Notifications that something in nftables changed in this network namespace: a
//! NETLINK_NETFILTER socket joined to the NFNLGRP_NFTABLES group, read on the tokio runtime.
//!
//! It only says *that* something changed (any table, including berth's own writes); it does not
//! decode messages, debounce, or re-apply anything — the daemon debounces and then asks
//! [`crate::Firewall::matches`].

use std::io;

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::FirewallError;

/// The nfnetlink multicast group of nf_tables changes (`NFNLGRP_NFTABLES`).
const NFNLGRP_NFTABLES: u32 = 7;

/// Room for one datagram of nf_tables notifications; a longer one is cut, which is fine: only
/// its arrival matters.
const DATAGRAM_BYTES: usize = 64 * 1024;

/// Starts watching nftables in the calling thread's network namespace (the socket stays in the
/// namespace it was opened in) and returns a receiver that yields `()` after each received
/// notification datagram, or after the kernel dropped notifications because the socket
/// overflowed. The channel holds one pending `()`, so bursts coalesce while nobody reads;
/// callers still debounce. Must be called within a tokio runtime. The receiver ends (`None`)
/// when the socket fails; the watch stops when the receiver is dropped.
pub fn watch_changes() -> Result<mpsc::Receiver<()>, FirewallError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(FirewallError::Watch(io::Error::other("watch_changes must be called within a tokio runtime")));
    }
    let mut socket = TokioSocket::new(NETLINK_NETFILTER).map_err(FirewallError::Watch)?;
    socket.socket_mut().bind_auto().map_err(FirewallError::Watch)?;
    socket.socket_mut().add_membership(NFNLGRP_NFTABLES).map_err(FirewallError::Watch)?;
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(forward_notifications(socket, sender));
    Ok(receiver)
}

async fn forward_notifications(socket: TokioSocket, sender: mpsc::Sender<()>) {
    let mut buffer = Vec::with_capacity(DATAGRAM_BYTES);
    loop {
        buffer.clear();
        match socket.recv(&mut buffer).await {
            Ok(()) => {}
            // Notifications were lost: something changed, which is all the caller needs.
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => debug!("nftables notifications overflowed"),
            Err(error) => {
                warn!(%error, "stopped watching nftables changes");
                return;
            }
        }
        if let Err(mpsc::error::TrySendError::Closed(())) = sender.try_send(()) {
            return;
        }
    }
}

