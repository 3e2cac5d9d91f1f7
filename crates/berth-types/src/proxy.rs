//! The control protocol between berthd and berth-proxy: JSON messages, one per packet on a
//! SOCK_SEQPACKET unix socket, with the served socket passed alongside by SCM_RIGHTS. berthd
//! binds every published host socket itself (its port reservation) and hands a copy to the
//! proxy; the proxy answers `List` with its mappings and their sockets, so a restarted berthd
//! re-syncs without disturbing established connections.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::PortProtocol;

/// One host socket the proxy serves: connections or datagrams it receives go to `backend`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyMapping {
    /// Chosen by berthd, unique per host socket (e.g. `SANDBOXID/tcp/0.0.0.0/8080`).
    pub id: String,
    pub protocol: PortProtocol,
    pub backend: SocketAddr,
}

/// berthd → proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op")]
pub enum ProxyRequest {
    /// Serve the socket passed with this message (listening for TCP, bound for UDP). An id the
    /// proxy already serves is replaced.
    Add(ProxyMapping),
    /// Stop serving: close the listener and every connection or flow of the mapping.
    Remove { id: String },
    /// Answered by one `Mapping` message per mapping, each carrying its socket, then `End`.
    List,
}

/// proxy → berthd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op")]
pub enum ProxyReply {
    Done,
    Failed { message: String },
    Mapping(ProxyMapping),
    End,
}
