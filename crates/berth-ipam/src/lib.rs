//! berth's IP address management: chooses subnets for new networks and
//! hands out the addresses of each subnet. It is pure bookkeeping on values
//! the caller passes in; it must not do I/O, read host state or persist
//! anything.

#![deny(unsafe_code)]

mod error;
mod pool;
mod subnets;

pub use error::{IpamError, ReservedAddress};
pub use pool::AddressPool;
pub use subnets::{check_usable_subnet, default_v4_pools, default_v6_pool, next_free_subnet, overlaps, SubnetPool};
