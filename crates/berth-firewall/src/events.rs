//! Notifications that something in nftables changed in this network namespace: a
//! NETLINK_NETFILTER socket joined to the NFNLGRP_NFTABLES group, read on the tokio runtime.
//!
//! It says *that* something changed that berth did not change itself: a datagram whose
//! messages all come from berth's own `nft` runs (see `own_writes`) is not passed on. It does not
//! decode further, debounce, or re-apply anything — the daemon debounces and then asks
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
            Ok(()) if from_berth_only(&buffer) => continue,
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

/// Whether every netlink message in `datagram` was caused by one of berth's own `nft` runs:
/// each header's port id (bytes 12..16, host order) names the socket that made the change.
fn from_berth_only(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    let mut seen = false;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let portid = u32::from_ne_bytes(rest[12..16].try_into().expect("4 bytes"));
        if !crate::own_writes::is_own(portid) {
            return false;
        }
        seen = true;
        let aligned = (len + 3) & !3;
        if len < 16 || aligned > rest.len() {
            break;
        }
        rest = &rest[aligned..];
    }
    seen
}

#[cfg(test)]
mod datagram_tests {
    use super::*;

    fn header(portid: u32) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&20u32.to_ne_bytes());
        message.extend_from_slice(&0x0a10u16.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&portid.to_ne_bytes());
        message.extend_from_slice(&[0; 4]);
        message
    }

    #[test]
    fn only_datagrams_wholly_from_berth_are_dropped() {
        crate::own_writes::note_writer(3_000_001);
        let mut ours = header(3_000_001);
        ours.extend(header(3_000_001));
        assert!(from_berth_only(&ours));
        let mut mixed = header(3_000_001);
        mixed.extend(header(3_000_002));
        assert!(!from_berth_only(&mixed));
        assert!(!from_berth_only(&header(0)));
        assert!(!from_berth_only(&[]));
    }
}
