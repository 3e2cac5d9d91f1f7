//! berth's embedded DNS server. Every sandbox on a user-defined network gets its own listening
//! sockets, opened by berthd inside the sandbox's namespace (on 127.0.0.11, reached through a
//! DNAT from port 53); the socket a query arrives on is therefore who asked, which no packet can
//! spoof. Names come from a [`Directory`] that berthd rebuilds from its records after every
//! change; anything not local is forwarded to upstream resolvers from berthd's own namespace.
//!
//! - [`directory`]: the names, per network, and who may see which network (pure data).
//! - [`query`]: one query in, one decision out: a local answer, forward, or refuse (pure; the
//!   fuzz target drives it).
//! - [`upstreams`]: the host's resolvers from /etc/resolv.conf, kept current.
//! - [`forward`]: relaying a query to upstreams over UDP or TCP.
//! - [`server`]: the per-sandbox UDP and TCP listeners, with their limits.

pub mod directory;
pub mod forward;
pub mod query;
pub mod server;
pub mod upstreams;

pub use directory::{Directory, DirectoryBuilder};
pub use query::{respond, respond_tcp, Decision};
pub use server::{Resolver, SandboxListener};
pub use upstreams::{parse_resolv_conf, ResolvConf};

/// The address sandboxes send their queries to, as in Docker.
pub const RESOLVER_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);
