//! The one error type of the crate: every way a subnet, range, gateway or
//! address request can be refused. It only describes failures; it must not
//! decide anything or carry state beyond what its message needs.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Why an address allocator request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {subnet} is too small: it needs room for a gateway and at least one endpoint")]
    SubnetTooSmall { subnet: IpNet },

    #[error("ip range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet { range: IpNet, subnet: IpNet },

    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet { gateway: IpAddr, subnet: IpNet },

    #[error("gateway {gateway} cannot be used: it is the {role} of subnet {subnet}")]
    GatewayReserved { gateway: IpAddr, subnet: IpNet, role: ReservedAddress },

    #[error("address {addr} is outside subnet {subnet}")]
    AddressOutsideSubnet { addr: IpAddr, subnet: IpNet },

    #[error("address {addr} cannot be assigned: it is the {role} of subnet {subnet}")]
    AddressReserved { addr: IpAddr, subnet: IpNet, role: ReservedAddress },

    #[error("address {addr} is already in use on subnet {subnet}")]
    AddressInUse { addr: IpAddr, subnet: IpNet },

    #[error("no free address left in {}", describe_scope(subnet, range.as_ref()))]
    Exhausted { subnet: IpNet, range: Option<IpNet> },

    #[error("subnet {subnet} cannot be used: it overlaps {what}")]
    UnusableSubnet { subnet: IpNet, what: &'static str },

    #[error("no free subnet left in the address pools {pools}: each overlaps a network or a host route")]
    NoFreePool { pools: String },

    #[error("invalid address pool {pool:?}: {reason}")]
    InvalidPool { pool: String, reason: String },
}

/// An address of a subnet that no endpoint or gateway may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedAddress {
    /// The all-zero host part of an IPv4 subnet.
    Network,
    /// The all-ones host part of an IPv4 subnet.
    Broadcast,
    /// The all-zero host part of an IPv6 subnet (RFC 4291 section 2.6.1).
    SubnetRouterAnycast,
}

impl fmt::Display for ReservedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Network => "network address",
            Self::Broadcast => "broadcast address",
            Self::SubnetRouterAnycast => "subnet-router anycast address",
        })
    }
}

fn describe_scope(subnet: &IpNet, range: Option<&IpNet>) -> String {
    match range {
        Some(range) => format!("ip range {range} of subnet {subnet}"),
        None => format!("subnet {subnet}"),
    }
}
