//! Batched UDP I/O on a tokio [`UdpSocket`]: many datagrams taken from, or handed to, the kernel
//! in one `recvmmsg(2)` or `sendmmsg(2)` call instead of one system call each. A server that
//! finds several datagrams queued when its socket turns readable pays one system call and one
//! trip through the event loop for all of them. It uses nix's safe wrappers; no `unsafe` here.
//!
//! [`ReceiveBatch`] owns the receive buffers (slots of a fixed capacity, allocated once and
//! reused); a datagram longer than its slot is cut by the kernel and comes out marked
//! [`Datagram::truncated`]. [`ReceiveBatch::try_recv_batch`] takes what is queued now, after the
//! caller awaited [`UdpSocket::readable`]: the batch is borrowed only while datagrams are taken
//! out, so one batch can serve many sockets of one thread. [`send_batch`] sends a list of
//! datagrams, waiting for room in the send buffer when it is full.
//!
//! A socket bound to a wildcard address answers from the address its client wrote to only if it
//! says so: [`report_destinations`] has the kernel tell, for each datagram received, which local
//! address it was sent to ([`Datagram::destination`]), and [`send_from`] sends a reply from that
//! address (IP_PKTINFO / IPV6_PKTINFO). Without them the kernel picks the source by routing,
//! and a client that sent to another of the host's addresses (a second address, 127.0.0.2)
//! drops the reply as coming from a stranger.
//!
//! The message headers nix needs are built afresh for every call: they are not `Send` (they
//! hold raw pointers) and the kernel shrinks their address lengths to the last sender's, so
//! reusing them between sockets of different families could cut addresses.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive buffers for up to `slots` datagrams of up to `datagram_capacity` bytes each, and
/// what the last [`ReceiveBatch::try_recv_batch`] put in them.
#[derive(Debug)]
pub struct ReceiveBatch {
    datagram_capacity: usize,
    /// `slots` × `datagram_capacity` bytes, one slot after the other.
    buffers: Box<[u8]>,
    /// The datagrams of the last receive, in arrival order.
    received: Vec<ReceivedDatagram>,
}

/// Where one received datagram is, and what the kernel said of it.
#[derive(Debug, Clone, Copy)]
struct ReceivedDatagram {
    slot: usize,
    length: usize,
    source: SocketAddr,
    destination: Option<IpAddr>,
    truncated: bool,
}

/// One datagram of a [`ReceiveBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Who sent it.
    pub source: SocketAddr,
    /// The local address it was sent to, when the socket reports it ([`report_destinations`]).
    pub destination: Option<IpAddr>,
    /// Its bytes; only the first slot's worth when `truncated`.
    pub payload: &'a [u8],
    /// The datagram was longer than a slot and the kernel dropped the rest (`MSG_TRUNC`).
    pub truncated: bool,
}

impl ReceiveBatch {
    /// Buffers for `slots` datagrams (at least one) of up to `datagram_capacity` bytes. The
    /// memory is allocated zeroed, so the kernel maps pages only as datagrams fill them.
    pub fn new(slots: usize, datagram_capacity: usize) -> Self {
        let slots = slots.max(1);
        Self {
            datagram_capacity,
            buffers: vec![0; slots * datagram_capacity].into_boxed_slice(),
            received: Vec::with_capacity(slots),
        }
    }

    /// Takes the datagrams queued on `socket` now, as many as there are slots, without waiting
    /// for more, and returns how many it took; the previous batch is forgotten. `WouldBlock`
    /// when none is queued (the socket's readiness is then cleared, as tokio's `try_recv`
    /// does), so the caller awaits [`UdpSocket::readable`] and tries again. A datagram whose
    /// source is not an IP address (which an IP socket never reports) is left out.
    pub fn try_recv_batch(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        socket.try_io(Interest::READABLE, || self.receive_queued(socket))
    }

    fn receive_queued(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let mut slots: Vec<[IoSliceMut<'_>; 1]> =
            self.buffers.chunks_mut(self.datagram_capacity).map(|slot| [IoSliceMut::new(slot)]).collect();
        // Room in each slot for the one control message a socket may report (its destination).
        let control = nix::cmsg_space!(libc::in6_pktinfo);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slots.len(), Some(control));
        // MSG_DONTWAIT: never block the runtime's thread, even on a socket left blocking.
        let messages = recvmmsg(socket.as_raw_fd(), &mut headers, &mut slots, MsgFlags::MSG_DONTWAIT, None)?;
        for (slot, message) in messages.enumerate() {
            let Some(source) = message.address.as_ref().and_then(ip_address_of) else {
                continue;
            };
            let destination = message.cmsgs().ok().into_iter().flatten().find_map(|control| match control {
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr))))
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))),
                _ => None,
            });
            self.received.push(ReceivedDatagram {
                slot,
                length: message.bytes,
                source,
                destination,
                truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.received.len())
    }

    /// The datagrams of the last receive, in the order they arrived.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        self.received.iter().map(|received| self.datagram_of(received))
    }

    fn datagram_of(&self, received: &ReceivedDatagram) -> Datagram<'_> {
        let start = received.slot * self.datagram_capacity;
        Datagram {
            source: received.source,
            destination: received.destination,
            payload: &self.buffers[start..start + received.length],
            truncated: received.truncated,
        }
    }
}

fn ip_address_of(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    address.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
}

/// Has the kernel report, with each datagram `socket` receives, the local address it was sent
/// to ([`Datagram::destination`]): IP_PKTINFO on an IPv4 socket, IPV6_RECVPKTINFO on an IPv6 one.
pub fn report_destinations(socket: &UdpSocket) -> io::Result<()> {
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?,
        SocketAddr::V6(_) => setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?,
    }
    Ok(())
}

/// Sends one datagram to `destination` now, from the local address `source` when given (a
/// [`Datagram::destination`], so a reply leaves from the address its client wrote to), else
/// from the one routing picks. Never waits: a full send buffer is `WouldBlock`, which the
/// caller may take as the datagram dropped.
pub fn send_from(
    socket: &UdpSocket,
    payload: &[u8],
    destination: SocketAddr,
    source: Option<IpAddr>,
) -> io::Result<usize> {
    let payload = [IoSlice::new(payload)];
    let destination = SockaddrStorage::from(destination);
    let v4_source = match source {
        Some(IpAddr::V4(address)) => Some(libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr { s_addr: u32::from(address).to_be() },
            ipi_addr: libc::in_addr { s_addr: 0 },
        }),
        _ => None,
    };
    let v6_source = match source {
        Some(IpAddr::V6(address)) => {
            Some(libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: address.octets() }, ipi6_ifindex: 0 })
        }
        _ => None,
    };
    let control = v4_source
        .as_ref()
        .map(ControlMessage::Ipv4PacketInfo)
        .or_else(|| v6_source.as_ref().map(ControlMessage::Ipv6PacketInfo));
    Ok(sendmsg(socket.as_raw_fd(), &payload, control.as_slice(), MsgFlags::MSG_DONTWAIT, Some(&destination))?)
}

/// Sends every datagram of `datagrams` (payload, destination) from `socket`, in order, in as
/// few `sendmmsg` calls as the kernel allows: when the send buffer is full it waits until the
/// socket is writable and goes on where it stopped. A datagram the kernel refuses (no route,
/// too big, a firewall's EPERM) is skipped and the others are still sent; the error then says
/// how many were refused and why the first was.
pub async fn send_batch<P: AsRef<[u8]>>(socket: &UdpSocket, datagrams: &[(P, SocketAddr)]) -> io::Result<()> {
    let payloads: Vec<[IoSlice<'_>; 1]> =
        datagrams.iter().map(|(payload, _)| [IoSlice::new(payload.as_ref())]).collect();
    let destinations: Vec<Option<SockaddrStorage>> =
        datagrams.iter().map(|&(_, destination)| Some(SockaddrStorage::from(destination))).collect();
    let mut next = 0;
    let mut refused = 0;
    let mut first_refusal = None;
    while next < datagrams.len() {
        let sent =
            socket.async_io(Interest::WRITABLE, || send_now(socket, &payloads[next..], &destinations[next..])).await;
        match sent {
            Ok(count) => next += count,
            Err(error) => {
                refused += 1;
                first_refusal.get_or_insert((datagrams[next].1, error));
                next += 1;
            }
        }
    }
    match first_refusal {
        None => Ok(()),
        Some((destination, error)) => Err(io::Error::new(
            error.kind(),
            format!("{refused} of {} datagrams not sent; the first, to {destination}: {error}", datagrams.len()),
        )),
    }
}

/// One `sendmmsg` call: how many of the datagrams the kernel took (at least one), or why it took
/// none.
fn send_now(
    socket: &UdpSocket,
    payloads: &[[IoSlice<'_>; 1]],
    destinations: &[Option<SockaddrStorage>],
) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(payloads.len(), None);
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, payloads, destinations, [], MsgFlags::MSG_DONTWAIT)?;
    Ok(sent.count())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn in_netns(test: &str, body: impl std::future::Future<Output = ()>) {
        berth_testns::in_fresh_netns(test, || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(body);
        });
    }

    async fn bound_socket() -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind a UDP socket on lo")
    }

    async fn bound_pair() -> (UdpSocket, UdpSocket, SocketAddr, SocketAddr) {
        let server = bound_socket().await;
        let client = bound_socket().await;
        let server_address = server.local_addr().expect("the server's address");
        let client_address = client.local_addr().expect("the client's address");
        (server, client, server_address, client_address)
    }

    /// Waits for the socket to turn readable and receives what is queued.
    async fn receive(batch: &mut ReceiveBatch, socket: &UdpSocket) -> usize {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                socket.readable().await.expect("readiness");
                match batch.try_recv_batch(socket) {
                    Ok(count) => return count,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(error) => panic!("receiving failed: {error}"),
                }
            }
        })
        .await
        .expect("datagrams within 5 s")
    }

    #[test]
    fn queued_datagrams_come_in_one_batch_with_their_sources() {
        in_netns("udp_batch::tests::queued_datagrams_come_in_one_batch_with_their_sources", async {
            let (server, client, server_address, client_address) = bound_pair().await;
            let other_client = bound_socket().await;
            let other_address = other_client.local_addr().expect("an address");
            client.send_to(b"one", server_address).await.expect("send");
            other_client.send_to(b"two", server_address).await.expect("send");
            client.send_to(b"", server_address).await.expect("send");
            let mut batch = ReceiveBatch::new(8, 64);
            assert_eq!(receive(&mut batch, &server).await, 3);
            let received: Vec<_> = batch.iter().map(|d| (d.source, d.payload.to_vec(), d.truncated)).collect();
            assert_eq!(
                received,
                [
                    (client_address, b"one".to_vec(), false),
                    (other_address, b"two".to_vec(), false),
                    (client_address, Vec::new(), false)
                ]
            );
            // Nothing more is queued: the next try says so instead of waiting.
            let error = batch.try_recv_batch(&server).expect_err("nothing queued");
            assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        });
    }

    #[test]
    fn a_batch_takes_at_most_its_slots_and_leaves_the_rest_queued() {
        in_netns("udp_batch::tests::a_batch_takes_at_most_its_slots_and_leaves_the_rest_queued", async {
            let (server, client, server_address, _) = bound_pair().await;
            for index in 0..5u8 {
                client.send_to(&[index], server_address).await.expect("send");
            }
            let mut batch = ReceiveBatch::new(2, 16);
            let mut payloads = Vec::new();
            while payloads.len() < 5 {
                let count = receive(&mut batch, &server).await;
                assert!((1..=2).contains(&count), "took {count} datagrams with 2 slots");
                payloads.extend(batch.iter().map(|d| d.payload[0]));
            }
            assert_eq!(payloads, [0, 1, 2, 3, 4]);
        });
    }

    #[test]
    fn a_datagram_longer_than_its_slot_is_cut_and_marked() {
        in_netns("udp_batch::tests::a_datagram_longer_than_its_slot_is_cut_and_marked", async {
            let (server, client, server_address, _) = bound_pair().await;
            let long: Vec<u8> = (0..100u8).collect();
            client.send_to(&long, server_address).await.expect("send");
            client.send_to(&long[..10], server_address).await.expect("send");
            let mut batch = ReceiveBatch::new(4, 10);
            assert_eq!(receive(&mut batch, &server).await, 2);
            let received: Vec<_> = batch.iter().map(|d| (d.payload, d.truncated)).collect();
            assert_eq!(received, [(&long[..10], true), (&long[..10], false)]);
        });
    }

    #[test]
    fn the_largest_datagram_comes_whole_in_a_slot_big_enough() {
        in_netns("udp_batch::tests::the_largest_datagram_comes_whole_in_a_slot_big_enough", async {
            let (server, client, server_address, _) = bound_pair().await;
            let largest = vec![0xa5; 65_507];
            client.send_to(&largest, server_address).await.expect("send");
            client.send_to(b"small", server_address).await.expect("send");
            let mut batch = ReceiveBatch::new(2, 64 * 1024);
            let mut received = Vec::new();
            while received.len() < 2 {
                receive(&mut batch, &server).await;
                received.extend(batch.iter().map(|d| (d.payload.to_vec(), d.truncated)));
            }
            assert_eq!(received, [(largest, false), (b"small".to_vec(), false)]);
        });
    }

    #[test]
    fn send_batch_delivers_every_datagram_to_its_destination_in_order() {
        in_netns("udp_batch::tests::send_batch_delivers_every_datagram_to_its_destination_in_order", async {
            let sender = bound_socket().await;
            let first = bound_socket().await;
            let second = bound_socket().await;
            let first_address = first.local_addr().expect("an address");
            let second_address = second.local_addr().expect("an address");
            let datagrams =
                [(b"a".to_vec(), first_address), (b"b".to_vec(), second_address), (b"c".to_vec(), first_address)];
            send_batch(&sender, &datagrams).await.expect("send the batch");
            let mut batch = ReceiveBatch::new(4, 16);
            let mut to_first = Vec::new();
            while to_first.len() < 2 {
                receive(&mut batch, &first).await;
                to_first.extend(batch.iter().map(|d| d.payload.to_vec()));
            }
            assert_eq!(to_first, [b"a".to_vec(), b"c".to_vec()]);
            assert_eq!(receive(&mut batch, &second).await, 1);
            assert_eq!(batch.iter().map(|d| d.payload).collect::<Vec<_>>(), [b"b"]);
        });
    }

    /// A client connected to `to` (so it takes datagrams from that address only) gets a reply
    /// from a wildcard-bound server only when the server sends it from the address the client
    /// wrote to, which the server learned from the datagram.
    async fn replies_come_from_the_address_written_to(
        wildcard: SocketAddr,
        client_bind: SocketAddr,
        written_to: IpAddr,
    ) {
        let server = UdpSocket::bind(wildcard).await.expect("bind the wildcard server");
        let port = server.local_addr().expect("an address").port();
        let client = UdpSocket::bind(client_bind).await.expect("bind the client");
        client.connect((written_to, port)).await.expect("connect the client");
        let client_address = client.local_addr().expect("an address");
        let mut batch = ReceiveBatch::new(4, 64);

        // Not asked to report: no destination, and a reply from the routing's choice is lost.
        client.send(b"first").await.expect("send");
        receive(&mut batch, &server).await;
        assert_eq!(batch.iter().map(|d| (d.source, d.destination)).collect::<Vec<_>>(), [(client_address, None)]);
        send_from(&server, b"routed", client_address, None).expect("send the routed reply");
        let mut buffer = [0u8; 16];
        let lost = tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buffer)).await;
        assert!(lost.is_err(), "the connected client took a reply from another address: {lost:?}");

        report_destinations(&server).expect("report destinations");
        client.send(b"second").await.expect("send");
        receive(&mut batch, &server).await;
        let datagram = batch.iter().next().expect("a datagram");
        assert_eq!((datagram.source, datagram.destination), (client_address, Some(written_to)));
        send_from(&server, b"answer", client_address, datagram.destination).expect("send the reply");
        let length = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buffer))
            .await
            .expect("the reply within 5 s")
            .expect("receive");
        assert_eq!(&buffer[..length], b"answer");
    }

    #[test]
    fn a_wildcard_socket_learns_each_datagrams_destination_and_replies_from_it() {
        in_netns("udp_batch::tests::a_wildcard_socket_learns_each_datagrams_destination_and_replies_from_it", async {
            // 127.0.0.2 is the host's too (all of 127/8 is local), but routing answers from
            // 127.0.0.1; on IPv6 a second address on lo does the same.
            let any4: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
            let loopback4: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
            replies_come_from_the_address_written_to(any4, loopback4, Ipv4Addr::new(127, 0, 0, 2).into()).await;
            berth_testns::add_local_ipv6("2001:db8::2");
            let any6: SocketAddr = (Ipv6Addr::UNSPECIFIED, 0).into();
            let loopback6: SocketAddr = (Ipv6Addr::LOCALHOST, 0).into();
            replies_come_from_the_address_written_to(any6, loopback6, "2001:db8::2".parse().unwrap()).await;
        });
    }

    /// Runs a command of the test's namespace set-up (words separated by spaces).
    fn run(command_line: &str) {
        let mut words = command_line.split(' ');
        let program = words.next().expect("a program");
        let status = std::process::Command::new(program).args(words).status().expect("run a set-up command");
        assert!(status.success(), "{command_line} failed");
    }

    /// The packets `interface` of the test's namespace has received (/proc/self/net/dev is the
    /// reading process's namespace; /sys/class/net would be the machine's).
    fn packets_received_by(interface: &str) -> u64 {
        let table = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
        let counters = table
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(interface)?.strip_prefix(':'))
            .expect("the interface's line");
        // Received bytes, then packets.
        counters.split_whitespace().nth(1).expect("a packet count").parse().expect("a number")
    }

    #[test]
    fn send_batch_waits_for_room_and_sends_them_all() {
        in_netns("udp_batch::tests::send_batch_waits_for_room_and_sends_them_all", async {
            // In the test's own namespace: a veth pair whose sending side drains at 10 Mbit/s
            // (tbf), toward a neighbour with a static MAC; IPv6 off so nothing else is sent.
            // A sender with the smallest send buffer then fills it after a couple of datagrams
            // (they wait in the qdisc), so sendmmsg stops part way and the rest must wait.
            run("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
            run("ip link add batch0 type veth peer name batch1");
            run("ip addr add 10.77.0.1/24 dev batch0");
            run("ip link set batch0 up");
            run("ip link set batch1 up");
            run("ip neigh add 10.77.0.2 lladdr 02:00:00:00:77:02 dev batch0 nud permanent");
            run("tc qdisc add dev batch0 root tbf rate 10mbit burst 10kb limit 1mb");
            let sender = UdpSocket::bind((Ipv4Addr::new(10, 77, 0, 1), 0)).await.expect("bind on batch0");
            nix::sys::socket::setsockopt(&sender, nix::sys::socket::sockopt::SndBuf, &0).expect("shrink SO_SNDBUF");
            const COUNT: u64 = 200;
            let destination: SocketAddr = (Ipv4Addr::new(10, 77, 0, 2), 9).into();
            let datagrams: Vec<(Vec<u8>, SocketAddr)> = (0..COUNT).map(|_| (vec![0x5a; 1000], destination)).collect();
            let before = packets_received_by("batch1");
            let started = std::time::Instant::now();
            tokio::time::timeout(Duration::from_secs(10), send_batch(&sender, &datagrams))
                .await
                .expect("sent within 10 s")
                .expect("send the batch");
            // 200 kB at 10 Mbit/s, less the 10 kB burst: about 150 ms of waiting for room.
            let elapsed = started.elapsed();
            assert!(elapsed >= Duration::from_millis(100), "sent in {elapsed:?}: it never had to wait");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while packets_received_by("batch1") - before < COUNT && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(packets_received_by("batch1") - before, COUNT);
        });
    }

    #[test]
    fn send_batch_skips_a_refused_datagram_and_sends_the_others() {
        in_netns("udp_batch::tests::send_batch_skips_a_refused_datagram_and_sends_the_others", async {
            let (receiver, sender, receiver_address, _) = bound_pair().await;
            // The test's namespace has no route but lo's: the kernel refuses that one at once.
            let unreachable: SocketAddr = (Ipv4Addr::new(192, 0, 2, 1), 53).into();
            let datagrams = [(&b"first"[..], receiver_address), (b"lost", unreachable), (b"last", receiver_address)];
            let error = send_batch(&sender, &datagrams).await.expect_err("one datagram refused");
            let message = error.to_string();
            assert!(message.contains("1 of 3 datagrams not sent") && message.contains("192.0.2.1:53"), "{message}");
            let mut batch = ReceiveBatch::new(4, 16);
            let mut received = Vec::new();
            while received.len() < 2 {
                receive(&mut batch, &receiver).await;
                received.extend(batch.iter().map(|d| d.payload.to_vec()));
            }
            assert_eq!(received, [b"first".to_vec(), b"last".to_vec()]);
        });
    }
}
