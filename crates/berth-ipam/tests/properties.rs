//! Property tests of the public API: address pools checked against a simple
//! model, pool choice and prefix overlap checked against brute force. They
//! only use the crate's public interface and must not depend on its internals.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_ipam::{default_v4_pools, next_free_subnet, overlaps, AddressPool, IpamError, SubnetPool};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// The integer value of an address.
fn value(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(addr) => u32::from(addr).into(),
        IpAddr::V6(addr) => addr.into(),
    }
}

/// The address of `net`'s family at `offset` from its first address,
/// wrapping around the address space.
fn at(net: IpNet, offset: i128) -> IpAddr {
    let base = value(net.network());
    match net {
        IpNet::V4(_) => {
            let offset = offset.rem_euclid(1 << 32) as u32;
            IpAddr::V4(Ipv4Addr::from((base as u32).wrapping_add(offset)))
        }
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(base.wrapping_add(offset as u128))),
    }
}

/// Number of addresses in `net`.
fn size(net: IpNet) -> u128 {
    1 << (net.max_prefix_len() - net.prefix_len())
}

/// Every address of `net`, for small prefixes only.
fn addresses(net: IpNet) -> impl Iterator<Item = IpAddr> {
    (0..size(net)).map(move |offset| at(net, offset as i128))
}

/// The reserved addresses of `subnet`: network and broadcast for v4, the
/// subnet-router anycast address for v6.
fn reserved(subnet: IpNet) -> Vec<IpAddr> {
    match subnet {
        IpNet::V4(_) => vec![subnet.network(), subnet.broadcast()],
        IpNet::V6(_) => vec![subnet.network()],
    }
}

/// Inputs for `AddressPool::new` that it accepts.
#[derive(Debug, Clone)]
struct PoolSpec {
    subnet: IpNet,
    range: Option<IpNet>,
    gateway: Option<IpAddr>,
}

impl PoolSpec {
    fn build(&self) -> AddressPool {
        AddressPool::new(self.subnet, self.range, self.gateway).expect("valid pool spec")
    }

    /// Where dynamic allocations come from.
    fn dynamic(&self) -> IpNet {
        self.range.unwrap_or(self.subnet).trunc()
    }
}

/// A valid pool of the family `v6` with a prefix length in `prefix_lens`,
/// maybe with a range and an explicit gateway. Host bits of the subnet are
/// left set at random to check they are ignored.
fn pool_spec(v6: bool, prefix_lens: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = PoolSpec> {
    (any::<u128>(), prefix_lens)
        .prop_flat_map(move |(raw, prefix_len)| {
            let subnet = if v6 {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(raw), prefix_len).unwrap())
            } else {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(raw as u32), prefix_len).unwrap())
            };
            let max = subnet.max_prefix_len();
            let range = proptest::option::of((any::<u128>(), prefix_len..=max).prop_map(move |(host, len)| {
                let host = host % size(subnet.trunc());
                IpNet::new(at(subnet.trunc(), host as i128), len).unwrap()
            }));
            let gateway = proptest::option::of(any::<u128>().prop_map(move |host| {
                let subnet = subnet.trunc();
                // Any host but the reserved first and (v4) last address.
                let usable = size(subnet) - if v6 { 1 } else { 2 };
                at(subnet, (1 + host % usable) as i128)
            }));
            (Just(subnet), range, gateway)
        })
        .prop_map(|(subnet, range, gateway)| PoolSpec { subnet, range, gateway })
}

/// A small valid pool of either family, small enough to enumerate.
fn small_pool_spec() -> impl Strategy<Value = PoolSpec> {
    prop_oneof![pool_spec(false, 24..=30), pool_spec(true, 120..=126)]
}

/// Allocates dynamically until the pool fails, returning what it handed out
/// and the error.
fn drain(pool: &mut AddressPool) -> (Vec<IpAddr>, IpamError) {
    let mut handed_out = Vec::new();
    loop {
        match pool.allocate(None) {
            Ok(addr) => handed_out.push(addr),
            Err(err) => return (handed_out, err),
        }
    }
}

/// The error of a pool with no address left.
fn exhausted(spec: &PoolSpec) -> IpamError {
    IpamError::Exhausted { subnet: spec.subnet.trunc(), range: spec.range.map(|range| range.trunc()) }
}

/// How many addresses dynamic allocation can hand out in a fresh pool,
/// counted one address at a time.
fn expected_dynamic(spec: &PoolSpec, pool: &AddressPool) -> usize {
    let subnet = spec.subnet.trunc();
    addresses(spec.dynamic()).filter(|addr| !reserved(subnet).contains(addr) && *addr != pool.gateway()).count()
}

proptest! {
    /// (1) Dynamic allocations are unique, inside the range (or subnet), and
    /// never the gateway or a reserved address; big subnets included.
    #[test]
    fn allocations_are_unique_and_usable(
        spec in prop_oneof![
            pool_spec(false, 16..=30),
            pool_spec(true, 64..=126),
        ],
        count in 1usize..600,
    ) {
        let mut pool = spec.build();
        let subnet = spec.subnet.trunc();
        let mut seen = HashSet::new();
        for _ in 0..count {
            let Ok(addr) = pool.allocate(None) else { break };
            prop_assert!(seen.insert(addr), "{addr} handed out twice");
            prop_assert_ne!(addr, pool.gateway());
            prop_assert!(!reserved(subnet).contains(&addr), "{addr} is reserved");
            prop_assert!(spec.dynamic().contains(&addr), "{addr} outside {}", spec.dynamic());
            prop_assert!(subnet.contains(&addr));
            prop_assert!(pool.is_allocated(addr));
        }
        prop_assert_eq!(pool.allocated_count(), seen.len() + 1);
    }

    /// (2) A small pool hands out exactly its usable addresses, then fails.
    #[test]
    fn small_pools_exhaust_at_the_expected_count(spec in small_pool_spec()) {
        let mut pool = spec.build();
        let expected = expected_dynamic(&spec, &pool);
        let (handed_out, err) = drain(&mut pool);
        prop_assert_eq!(handed_out.len(), expected);
        prop_assert_eq!(err, exhausted(&spec));
        prop_assert_eq!(pool.allocated_count(), expected + 1);
        // Exhaustion is stable.
        prop_assert!(pool.allocate(None).is_err());
    }

    /// (3) A released address can be allocated again, dynamically or statically.
    #[test]
    fn released_addresses_are_reused(spec in small_pool_spec(), pick in any::<prop::sample::Index>()) {
        let mut pool = spec.build();
        let (handed_out, _) = drain(&mut pool);
        prop_assume!(!handed_out.is_empty());
        let addr = *pick.get(&handed_out);

        prop_assert!(pool.release(addr));
        prop_assert!(!pool.is_allocated(addr));
        prop_assert_eq!(pool.allocate(None), Ok(addr));

        prop_assert!(pool.release(addr));
        prop_assert_eq!(pool.allocate(Some(addr)), Ok(addr));
        prop_assert_eq!(pool.allocated_count(), handed_out.len() + 1);
    }

    /// (4) Any sequence of operations agrees with a set-of-addresses model.
    #[test]
    fn operations_match_a_model(
        spec in small_pool_spec(),
        ops in prop::collection::vec((0u8..4, any::<u16>()), 1..200),
    ) {
        let mut pool = spec.build();
        let subnet = spec.subnet.trunc();
        let reserved = reserved(subnet);
        let mut model: HashSet<IpAddr> = HashSet::from([pool.gateway()]);
        // Offsets reach two addresses past either end of the subnet.
        let span = size(subnet) as i128 + 4;
        let pick = |raw: u16| at(subnet, i128::from(raw) % span - 2);

        for (kind, raw) in ops {
            match kind {
                0 => match pool.allocate(None) {
                    Ok(addr) => {
                        prop_assert!(spec.dynamic().contains(&addr));
                        prop_assert!(!reserved.contains(&addr));
                        prop_assert!(model.insert(addr), "{addr} handed out twice");
                    }
                    Err(err) => {
                        prop_assert_eq!(err, exhausted(&spec));
                        prop_assert!(addresses(spec.dynamic())
                            .all(|addr| model.contains(&addr) || reserved.contains(&addr)));
                    }
                },
                1 | 2 => {
                    let addr = pick(raw);
                    let expected = if !subnet.contains(&addr) {
                        Err("outside")
                    } else if reserved.contains(&addr) {
                        Err("reserved")
                    } else if model.contains(&addr) {
                        Err("in use")
                    } else {
                        model.insert(addr);
                        Ok(())
                    };
                    let result = if kind == 1 {
                        pool.allocate(Some(addr)).map(|got| assert_eq!(got, addr))
                    } else {
                        pool.reserve(addr)
                    };
                    let result = result.map_err(|err| match err {
                        IpamError::AddressOutsideSubnet { .. } => "outside",
                        IpamError::AddressReserved { .. } => "reserved",
                        IpamError::AddressInUse { .. } => "in use",
                        other => panic!("unexpected error {other}"),
                    });
                    prop_assert_eq!(result, expected, "request for {}", addr);
                }
                _ => {
                    let addr = pick(raw);
                    let expected = addr != pool.gateway() && model.remove(&addr);
                    prop_assert_eq!(pool.release(addr), expected, "release of {}", addr);
                }
            }
            prop_assert_eq!(pool.allocated_count(), model.len());
        }
        for offset in -2..span - 2 {
            let addr = at(subnet, offset);
            prop_assert_eq!(pool.is_allocated(addr), model.contains(&addr), "{}", addr);
        }
    }

    /// (5) The chosen pool overlaps nothing taken, and every earlier default
    /// pool overlaps something.
    #[test]
    fn next_free_subnet_is_the_first_clear_pool(
        taken in prop::collection::vec(taken_prefix(), 0..12),
    ) {
        let clear = |pool: &IpNet| taken.iter().all(|t| !intervals_meet(pool, t));
        let pools = default_v4_pools();
        let mut candidates = pools.iter().flat_map(SubnetPool::subnets);
        match next_free_subnet(&pools, &taken) {
            Ok(chosen) => {
                prop_assert!(clear(&chosen));
                let first = candidates.find(clear);
                prop_assert_eq!(first, Some(chosen));
            }
            Err(err) => {
                prop_assert!(matches!(err, IpamError::NoFreePool { .. }), "{}", err);
                prop_assert!(candidates.all(|pool| !clear(&pool)));
            }
        }
    }

    /// (6) Overlap is symmetric and agrees with comparing address intervals.
    #[test]
    fn overlaps_matches_intervals(a in any_prefix(), b in any_prefix()) {
        prop_assert_eq!(overlaps(&a, &b), overlaps(&b, &a));
        prop_assert_eq!(overlaps(&a, &b), intervals_meet(&a, &b));
        prop_assert!(overlaps(&a, &a));
    }

    /// (6) Overlap agrees with looking for a shared address one by one.
    #[test]
    fn overlaps_matches_brute_force(
        a in small_universe_prefix(),
        b in small_universe_prefix(),
    ) {
        let universe: IpNet = "10.0.0.0/24".parse().unwrap();
        let shared = addresses(universe).any(|addr| a.contains(&addr) && b.contains(&addr));
        prop_assert_eq!(overlaps(&a, &b), shared);
        prop_assert_eq!(overlaps(&b, &a), shared);
    }
}

/// Whether the address intervals of two prefixes of the same family meet.
fn intervals_meet(a: &IpNet, b: &IpNet) -> bool {
    let same_family = matches!((a, b), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)));
    same_family && value(a.network()) <= value(b.broadcast()) && value(b.network()) <= value(a.broadcast())
}

/// Any prefix of either family, host bits possibly set.
fn any_prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(raw, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(raw), len).unwrap())),
        (any::<u128>(), 0u8..=128).prop_map(|(raw, len)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(raw), len).unwrap())),
    ]
}

/// A prefix inside 10.0.0.0/24, small enough to check address by address.
fn small_universe_prefix() -> impl Strategy<Value = IpNet> {
    (any::<u8>(), 24u8..=32)
        .prop_map(|(host, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 0, 0, host), len).unwrap()))
}

/// Routes and addresses a host may have, mostly near the default pools so
/// that they collide with them often; v6 ones never do.
fn taken_prefix() -> impl Strategy<Value = IpNet> {
    let near = |base: [u8; 2], spread: u32| {
        (0..spread, 8u8..=32).prop_map(move |(host, len)| {
            let raw = u32::from(Ipv4Addr::new(base[0], base[1], 0, 0)) + host;
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(raw), len).unwrap())
        })
    };
    prop_oneof![
        4 => near([172, 16], 1 << 20),
        4 => near([192, 168], 1 << 16),
        1 => any_prefix().prop_filter("default routes are not passed", |net| net.prefix_len() > 0),
    ]
}
