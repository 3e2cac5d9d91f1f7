//! The daemon's error: what went wrong, in one lower-case line, and which HTTP status it maps to
//! (400 bad input, 403 refused whatever the state, 404 unknown, 405 wrong method, 409 conflict,
//! 501 what berth does not do, 503 swarm routes, 500 everything else).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// Never allowed, whatever the state: a pre-defined network's name, a process that is not
    /// the caller's.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A route that exists, asked with a method it does not take.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotImplemented(String),
    /// What the node cannot serve in its current role: swarm routes on a node outside a swarm.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

macro_rules! internal_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Internal(error_chain(&e))
            }
        }
    )*};
}

internal_from!(
    berth_store::StoreError,
    crate::ports::ProxyError,
    berth_netlink::NetlinkError,
    berth_sys::netns::NetnsError,
    berth_firewall::FirewallError,
    std::io::Error
);

impl From<berth_ipam::IpamError> for Error {
    fn from(e: berth_ipam::IpamError) -> Self {
        use berth_ipam::IpamError::{AddressInUse, Exhausted, NoFreePool};
        match e {
            AddressInUse { .. } | Exhausted { .. } | NoFreePool { .. } => Error::Conflict(e.to_string()),
            _ => Error::BadRequest(e.to_string()),
        }
    }
}

impl From<berth_drivers::DriverError> for Error {
    fn from(e: berth_drivers::DriverError) -> Self {
        match e {
            berth_drivers::DriverError::Conflict(_) => Error::Conflict(e.to_string()),
            berth_drivers::DriverError::BadRequest(_) | berth_drivers::DriverError::UnknownDriver(_) => {
                Error::BadRequest(e.to_string())
            }
            _ => Error::Internal(error_chain(&e)),
        }
    }
}
