//! File descriptors passed between processes over a unix SOCK_SEQPACKET socket with SCM_RIGHTS:
//! one message is one packet, with any descriptors riding along as ancillary data. It works on
//! blocking and non-blocking sockets alike (EAGAIN comes back as `WouldBlock`, so tokio's
//! `AsyncFd::try_io` can drive it), and it never parses the payload; that is the caller's
//! protocol.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// The most descriptors the kernel passes in one message (SCM_MAX_FD): a receive buffer with
/// room for this many can never truncate the descriptors of a message.
const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends `payload` as one packet with `fds` attached; the receiver gets its own copies of the
/// descriptors (the caller keeps its own). The payload must not be empty: an empty packet could
/// not be told apart from the end of the connection.
pub fn send_with_fds(socket: BorrowedFd<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if payload.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot send an empty message: it reads as end of connection",
        ));
    }
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot send {} descriptors in one message: the kernel passes at most {MAX_FDS_PER_MESSAGE}",
                fds.len()
            ),
        ));
    }
    let raw_fds: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw_fds)];
    let control: &[ControlMessage<'_>] = if raw_fds.is_empty() { &[] } else { &rights };
    let sent =
        sendmsg::<UnixAddr>(socket.as_raw_fd(), &[IoSlice::new(payload)], control, MsgFlags::MSG_NOSIGNAL, None)?;
    if sent != payload.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes of a message: the socket is not SOCK_SEQPACKET", payload.len()),
        ));
    }
    Ok(())
}

/// Receives one packet into `buffer`, returning its length and the descriptors that came with
/// it (close-on-exec). A length of zero with no descriptors means the peer closed the
/// connection. A packet larger than `buffer` is an error (its descriptors are closed).
pub fn recv_with_fds(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<UnixAddr>(socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
            for raw_fd in raw_fds {
                // SAFETY: the kernel just installed `raw_fd` in this process for this message
                // (SCM_RIGHTS); nothing else knows it, so this OwnedFd is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw_fd) });
            }
        }
    }
    if message.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received a message larger than the {}-byte buffer", iov[0].len()),
        ));
    }
    Ok((message.bytes, fds))
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use nix::unistd::pipe;

    use super::*;

    fn seqpacket_pair(flags: SockFlag) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, flags).expect("socketpair")
    }

    #[test]
    fn a_pipe_passed_along_reads_through() {
        let (sender, receiver) = seqpacket_pair(SockFlag::SOCK_CLOEXEC);
        let (pipe_read, pipe_write) = pipe().expect("pipe");
        send_with_fds(sender.as_fd(), b"here is a pipe", &[pipe_read.as_fd()]).expect("send");
        drop(pipe_read);

        let mut buffer = [0u8; 64];
        let (length, mut fds) = recv_with_fds(receiver.as_fd(), &mut buffer).expect("receive");
        assert_eq!(&buffer[..length], b"here is a pipe");
        assert_eq!(fds.len(), 1);
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "received descriptors are close-on-exec");

        File::from(pipe_write).write_all(b"through the pipe").expect("write to the pipe");
        let mut text = String::new();
        File::from(fds.remove(0)).read_to_string(&mut text).expect("read the passed pipe");
        assert_eq!(text, "through the pipe");
    }

    #[test]
    fn messages_keep_their_boundaries_and_may_carry_no_fds() {
        let (sender, receiver) = seqpacket_pair(SockFlag::SOCK_CLOEXEC);
        send_with_fds(sender.as_fd(), b"one", &[]).expect("send");
        send_with_fds(sender.as_fd(), b"two", &[]).expect("send");
        let mut buffer = [0u8; 64];
        for expected in [&b"one"[..], b"two"] {
            let (length, fds) = recv_with_fds(receiver.as_fd(), &mut buffer).expect("receive");
            assert_eq!(&buffer[..length], expected);
            assert!(fds.is_empty());
        }
    }

    #[test]
    fn an_empty_socket_would_block_and_a_closed_one_reads_empty() {
        let (sender, receiver) = seqpacket_pair(SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK);
        let mut buffer = [0u8; 64];
        let error = recv_with_fds(receiver.as_fd(), &mut buffer).expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        drop(sender);
        let (length, fds) = recv_with_fds(receiver.as_fd(), &mut buffer).expect("receive end of connection");
        assert_eq!((length, fds.len()), (0, 0));
    }

    #[test]
    fn an_oversized_message_and_an_empty_payload_are_refused() {
        let (sender, receiver) = seqpacket_pair(SockFlag::SOCK_CLOEXEC);
        assert_eq!(send_with_fds(sender.as_fd(), b"", &[]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let (pipe_read, _pipe_write) = pipe().expect("pipe");
        send_with_fds(sender.as_fd(), b"far too long for the buffer", &[pipe_read.as_fd()]).expect("send");
        let mut buffer = [0u8; 4];
        let error = recv_with_fds(receiver.as_fd(), &mut buffer).expect_err("the message is truncated");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
