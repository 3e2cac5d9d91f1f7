//! The serde model of berth: what the store keeps (records) and what the API speaks (views).
//!
//! Records are berth's own truth, persisted by berth-store and read by the daemon; views are the
//! JSON shapes of the HTTP API and follow Docker's field names so a Docker-compatible layer can be
//! thin. This crate does no I/O and holds no logic beyond naming rules and conversions.

mod api;
mod bridge_options;
mod docker;
mod mac;
mod names;
mod network_mode;
mod ports;
mod proxy;
mod records;

pub use api::*;
pub use bridge_options::*;
pub use docker::*;
pub use mac::*;
pub use names::*;
pub use network_mode::*;
pub use ports::*;
pub use proxy::*;
pub use records::*;
