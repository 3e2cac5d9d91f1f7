//! The userland proxy as a publisher: berth-proxy, one process for every published port,
//! serves a copy of each reservation socket and relays what it accepts (host-loopback clients,
//! IPv6 clients of an IPv4-only sandbox, every client with `--userland-proxy-only`) to the
//! sandbox. It keeps its sockets when berthd restarts, so they are taken back from it rather
//! than bound again and its connections stay up; when it dies it is started again and handed
//! every socket. Its failures are logged, never fatal to a command: the kernel path (and the
//! reservation) stay, and keep-alive hands everything over again.

mod client;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use berth_types::{PortMapping, ProxyMapping};

pub use client::{ProxyClient, ProxyError};

use super::{Destination, PortPublisher, Publication};
use crate::error::Result;

#[derive(Debug)]
pub struct UserlandProxy {
    client: ProxyClient,
}

impl UserlandProxy {
    pub fn new(client: ProxyClient) -> Self {
        Self { client }
    }

    /// Has the proxy serve every socket of `publication` (replacing what it had for them),
    /// or stop serving those that lead nowhere.
    fn serve(&self, publication: &Publication<'_>) {
        for reservation in publication.reservations {
            for held in &reservation.sockets {
                let result = match backend(publication.destination, &reservation.mapping, held.host) {
                    Some(backend) => {
                        let mapping =
                            ProxyMapping { id: held.id.clone(), protocol: reservation.mapping.protocol, backend };
                        tokio::task::block_in_place(|| self.client.add(&mapping, held.socket.as_fd()))
                    }
                    None => tokio::task::block_in_place(|| self.client.remove(&held.id)),
                };
                if let Err(e) = result {
                    tracing::error!(sandbox = %publication.sandbox, "userland proxy: {e}");
                }
            }
        }
    }

    fn remove(&self, id: &str) {
        if let Err(e) = tokio::task::block_in_place(|| self.client.remove(id)) {
            tracing::error!("userland proxy: cannot remove mapping {id}: {e}");
        }
    }
}

/// Where the proxy sends what arrives on host socket `host` of `mapping`: the sandbox's
/// address of the socket's family when it has one, of the other family otherwise.
fn backend(destination: &Destination, mapping: &PortMapping, host: SocketAddr) -> Option<SocketAddr> {
    let of_family = |v6: bool| destination.addresses.iter().copied().find(|a: &IpAddr| a.is_ipv6() == v6);
    let address = of_family(host.is_ipv6()).or_else(|| of_family(!host.is_ipv6()))?;
    let offset = host.port() - mapping.host_ports.start;
    let port = if mapping.container_ports.count() == 1 {
        mapping.container_ports.start
    } else {
        mapping.container_ports.start + offset
    };
    Some(SocketAddr::new(address, port))
}

impl PortPublisher for UserlandProxy {
    fn accepts_connections(&self) -> bool {
        true
    }

    fn kept_sockets(&self) -> HashMap<String, OwnedFd> {
        match tokio::task::block_in_place(|| self.client.list()) {
            Ok(list) => list.into_iter().map(|(m, fd)| (m.id, fd)).collect(),
            Err(e) => {
                tracing::error!("cannot list the userland proxy's mappings: {e}");
                HashMap::new()
            }
        }
    }

    fn publish(&self, publication: &Publication<'_>) -> Result<()> {
        self.serve(publication);
        Ok(())
    }

    fn unpublish(&self, publication: &Publication<'_>) -> Result<()> {
        for held in publication.reservations.iter().flat_map(|r| &r.sockets) {
            self.remove(&held.id);
        }
        Ok(())
    }

    fn redirect(&self, _before: &Publication<'_>, after: &Publication<'_>) -> Result<()> {
        self.serve(after);
        Ok(())
    }

    fn restore(&self, all: &[Publication<'_>], unclaimed: &[String]) {
        for stale in unclaimed {
            self.remove(stale);
        }
        for publication in all {
            self.serve(publication);
        }
    }

    fn keep_alive(&self, all: &[Publication<'_>]) {
        if self.client.is_alive() {
            return;
        }
        tracing::warn!("the userland proxy died; restarting it");
        if let Err(e) = tokio::task::block_in_place(|| self.client.restart()) {
            tracing::error!("{e}");
            return;
        }
        for publication in all {
            self.serve(publication);
        }
    }
}
