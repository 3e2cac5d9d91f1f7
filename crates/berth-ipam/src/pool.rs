//! Hands out and takes back the addresses of one subnet, gateway included,
//! the way Docker's default IPAM does. It only keeps the in-memory record of
//! which addresses are taken; it must not persist that record nor touch
//! interfaces or routes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::{IpamError, ReservedAddress};

/// One subnet's addresses. Holds the gateway as allocated.
#[derive(Debug, Clone)]
pub struct AddressPool {
    subnet: IpNet,
    /// Where dynamic allocations come from; `None` means the whole subnet.
    range: Option<IpNet>,
    gateway: IpAddr,
    /// Every allocated address, gateway included, as an integer.
    allocated: BTreeSet<u128>,
    /// Where the next dynamic search starts: just after the last dynamic
    /// allocation, so a released address is not handed out again at once.
    next: u128,
}

impl AddressPool {
    /// A pool for `subnet`, whose host bits are ignored. Dynamic
    /// allocations come from `ip_range` (host bits ignored too; it must lie
    /// inside the subnet), or from the whole subnet without one. The gateway
    /// defaults to the first host (`x.x.x.1` of a v4 /24, `::1` of a v6
    /// prefix) and is allocated at once.
    ///
    /// Fails when the subnet has no room for a gateway and an endpoint (v4
    /// longer than /30, v6 longer than /126), when the range is not inside
    /// the subnet, or when the gateway is outside the subnet or is its v4
    /// network or broadcast address or its v6 subnet-router anycast address.
    pub fn new(subnet: IpNet, ip_range: Option<IpNet>, gateway: Option<IpAddr>) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > subnet.max_prefix_len() - 2 {
            return Err(IpamError::SubnetTooSmall { subnet });
        }
        let range = ip_range.map(|range| range.trunc());
        if let Some(range) = range {
            if !subnet.contains(&range) {
                return Err(IpamError::RangeOutsideSubnet { range, subnet });
            }
        }
        let gateway = match gateway {
            None => addr_of(subnet, bits(subnet.network()) + 1),
            Some(gateway) if !subnet.contains(&gateway) => {
                return Err(IpamError::GatewayOutsideSubnet { gateway, subnet });
            }
            Some(gateway) => {
                if let Some(role) = reserved_role(subnet, bits(gateway)) {
                    return Err(IpamError::GatewayReserved { gateway, subnet, role });
                }
                gateway
            }
        };
        Ok(Self {
            subnet,
            range,
            gateway,
            allocated: BTreeSet::from([bits(gateway)]),
            next: bits(range.unwrap_or(subnet).network()),
        })
    }

    /// The subnet, host bits cleared.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The gateway address, allocated for the pool's whole life.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Static request (`--ip`): must be inside the subnet (not necessarily
    /// the range, like Docker), not the network/broadcast address (v4) or the
    /// v6 subnet-router anycast (all-zero host part), and free.
    ///
    /// Dynamic (`None`): next free address of the range (or subnet),
    /// searching round-robin from just after the last dynamically allocated
    /// address and wrapping, like Docker, so a released address is not handed
    /// out again at once. Never hands out a reserved address; fails when
    /// every address is taken.
    pub fn allocate(&mut self, requested: Option<IpAddr>) -> Result<IpAddr, IpamError> {
        match requested {
            Some(addr) => {
                self.reserve(addr)?;
                Ok(addr)
            }
            None => {
                let (first, last) = self.dynamic_bounds();
                let start = if (first..=last).contains(&self.next) { self.next } else { first };
                let found = self
                    .first_free(start, last)
                    .or_else(|| {
                        // Wrap around to the addresses before the cursor.
                        start.checked_sub(1).and_then(|end| self.first_free(first, end))
                    })
                    .ok_or(IpamError::Exhausted { subnet: self.subnet, range: self.range })?;
                self.allocated.insert(found);
                // Past the top of the address space the cursor leaves the
                // bounds, and the next search starts over from `first`.
                self.next = found.wrapping_add(1);
                Ok(addr_of(self.subnet, found))
            }
        }
    }

    /// Marks an address taken when state is restored from the store (same
    /// checks as a static request).
    pub fn reserve(&mut self, addr: IpAddr) -> Result<(), IpamError> {
        let subnet = self.subnet;
        if !subnet.contains(&addr) {
            return Err(IpamError::AddressOutsideSubnet { addr, subnet });
        }
        let value = bits(addr);
        if let Some(role) = reserved_role(subnet, value) {
            return Err(IpamError::AddressReserved { addr, subnet, role });
        }
        if !self.allocated.insert(value) {
            return Err(IpamError::AddressInUse { addr, subnet });
        }
        Ok(())
    }

    /// Frees an address; returns whether it was allocated. The gateway
    /// cannot be released (returns false).
    pub fn release(&mut self, addr: IpAddr) -> bool {
        addr != self.gateway && self.subnet.contains(&addr) && self.allocated.remove(&bits(addr))
    }

    /// Whether `addr` is allocated, the gateway included.
    pub fn is_allocated(&self, addr: IpAddr) -> bool {
        self.subnet.contains(&addr) && self.allocated.contains(&bits(addr))
    }

    /// Number of allocated addresses, the gateway included.
    pub fn allocated_count(&self) -> usize {
        self.allocated.len()
    }

    /// First and last address dynamic allocation may hand out, reserved
    /// addresses included.
    fn dynamic_bounds(&self) -> (u128, u128) {
        let net = self.range.unwrap_or(self.subnet);
        (bits(net.network()), bits(net.broadcast()))
    }

    /// Lowest address in `from..=to` that is neither allocated nor reserved.
    /// Takes at most one step per allocated or reserved address in between.
    fn first_free(&self, from: u128, to: u128) -> Option<u128> {
        if from > to {
            // An empty span; `BTreeSet::range` would panic on it.
            return None;
        }
        let mut taken = self.allocated.range(from..=to).peekable();
        let mut candidate = from;
        while candidate <= to {
            let is_taken = taken.next_if_eq(&&candidate).is_some();
            if !is_taken && reserved_role(self.subnet, candidate).is_none() {
                return Some(candidate);
            }
            candidate = candidate.checked_add(1)?;
        }
        None
    }
}

/// Which reserved address of `subnet` the address `value` is, if any.
fn reserved_role(subnet: IpNet, value: u128) -> Option<ReservedAddress> {
    let network = bits(subnet.network());
    match subnet {
        IpNet::V4(_) if value == network => Some(ReservedAddress::Network),
        IpNet::V4(_) if value == bits(subnet.broadcast()) => Some(ReservedAddress::Broadcast),
        IpNet::V6(_) if value == network => Some(ReservedAddress::SubnetRouterAnycast),
        _ => None,
    }
}

/// The address of `subnet`'s family whose integer value is `value`.
fn addr_of(subnet: IpNet, value: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => {
            let value = u32::try_from(value).expect("addresses of a v4 subnet fit in 32 bits");
            IpAddr::V4(Ipv4Addr::from(value))
        }
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// The integer value of an address; v4 and v6 never meet in one pool.
fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(addr) => u32::from(addr).into(),
        IpAddr::V6(addr) => addr.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(subnet: &str) -> AddressPool {
        AddressPool::new(net(subnet), None, None).unwrap()
    }

    #[test]
    fn default_gateway_is_first_host() {
        let v4 = pool("10.1.0.0/24");
        assert_eq!(v4.gateway(), ip("10.1.0.1"));
        assert!(v4.is_allocated(ip("10.1.0.1")));
        assert_eq!(v4.allocated_count(), 1);
        assert_eq!(pool("fd00:1::/64").gateway(), ip("fd00:1::1"));
    }

    #[test]
    fn host_bits_are_cleared() {
        let p = AddressPool::new(net("10.1.0.77/24"), Some(net("10.1.0.200/25")), None).unwrap();
        assert_eq!(p.subnet(), net("10.1.0.0/24"));
        assert_eq!(p.gateway(), ip("10.1.0.1"));
    }

    #[test]
    fn explicit_gateway_is_kept_and_cannot_be_released() {
        let mut p = AddressPool::new(net("10.1.0.0/24"), None, Some(ip("10.1.0.254"))).unwrap();
        assert_eq!(p.gateway(), ip("10.1.0.254"));
        assert!(!p.release(ip("10.1.0.254")));
        assert!(p.is_allocated(ip("10.1.0.254")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.1")));
    }

    #[test]
    fn smallest_subnets_are_accepted() {
        let mut v4 = pool("10.0.0.0/30");
        assert_eq!(v4.allocate(None), Ok(ip("10.0.0.2")));
        assert!(v4.allocate(None).is_err());
        let mut v6 = pool("fd00::/126");
        assert_eq!(v6.allocate(None), Ok(ip("fd00::2")));
        assert_eq!(v6.allocate(None), Ok(ip("fd00::3")));
        assert!(v6.allocate(None).is_err());
    }

    #[test]
    fn too_small_subnets_are_refused() {
        let err = AddressPool::new(net("10.0.0.0/31"), None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 10.0.0.0/31 is too small: it needs room for a gateway and at least one endpoint"
        );
        for subnet in ["10.0.0.7/32", "fd00::/127", "fd00::/128"] {
            let subnet = net(subnet);
            assert_eq!(
                AddressPool::new(subnet, None, None).unwrap_err(),
                IpamError::SubnetTooSmall { subnet: subnet.trunc() }
            );
        }
    }

    #[test]
    fn range_outside_subnet_is_refused() {
        let err = AddressPool::new(net("10.1.0.0/24"), Some(net("10.2.0.0/25")), None).unwrap_err();
        assert_eq!(err.to_string(), "ip range 10.2.0.0/25 is not inside subnet 10.1.0.0/24");
        let wider = AddressPool::new(net("10.1.0.0/24"), Some(net("10.1.0.0/23")), None);
        assert!(matches!(wider, Err(IpamError::RangeOutsideSubnet { .. })));
        let other_family = AddressPool::new(net("10.1.0.0/24"), Some(net("fd00::/120")), None);
        assert!(matches!(other_family, Err(IpamError::RangeOutsideSubnet { .. })));
    }

    #[test]
    fn gateway_outside_subnet_is_refused() {
        let err = AddressPool::new(net("10.1.0.0/24"), None, Some(ip("10.2.0.1"))).unwrap_err();
        assert_eq!(err.to_string(), "gateway 10.2.0.1 is outside subnet 10.1.0.0/24");
        let other_family = AddressPool::new(net("10.1.0.0/24"), None, Some(ip("fd00::1")));
        assert!(matches!(other_family, Err(IpamError::GatewayOutsideSubnet { .. })));
    }

    #[test]
    fn reserved_gateway_is_refused() {
        let err = AddressPool::new(net("10.1.0.0/24"), None, Some(ip("10.1.0.0"))).unwrap_err();
        assert_eq!(err.to_string(), "gateway 10.1.0.0 cannot be used: it is the network address of subnet 10.1.0.0/24");
        let err = AddressPool::new(net("10.1.0.0/24"), None, Some(ip("10.1.0.255"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gateway 10.1.0.255 cannot be used: it is the broadcast address of subnet 10.1.0.0/24"
        );
        let err = AddressPool::new(net("fd00::/64"), None, Some(ip("fd00::"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gateway fd00:: cannot be used: it is the subnet-router anycast address of subnet fd00::/64"
        );
    }

    #[test]
    fn static_request_outside_subnet_is_refused() {
        let mut p = pool("10.1.0.0/24");
        let err = p.allocate(Some(ip("10.2.0.5"))).unwrap_err();
        assert_eq!(err.to_string(), "address 10.2.0.5 is outside subnet 10.1.0.0/24");
        assert!(matches!(p.reserve(ip("fd00::5")), Err(IpamError::AddressOutsideSubnet { .. })));
    }

    #[test]
    fn static_request_for_reserved_address_is_refused() {
        let mut p = pool("10.1.0.0/24");
        let err = p.allocate(Some(ip("10.1.0.0"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 10.1.0.0 cannot be assigned: it is the network address of subnet 10.1.0.0/24"
        );
        let err = p.reserve(ip("10.1.0.255")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 10.1.0.255 cannot be assigned: it is the broadcast address of subnet 10.1.0.0/24"
        );
        let mut v6 = pool("fd00::/64");
        let err = v6.allocate(Some(ip("fd00::"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address fd00:: cannot be assigned: it is the subnet-router anycast address of subnet fd00::/64"
        );
        // The all-ones v6 host is an ordinary address.
        assert!(v6.allocate(Some(ip("fd00::ffff:ffff:ffff:ffff"))).is_ok());
    }

    #[test]
    fn static_request_for_used_address_is_refused() {
        let mut p = pool("10.1.0.0/24");
        p.allocate(Some(ip("10.1.0.5"))).unwrap();
        let err = p.allocate(Some(ip("10.1.0.5"))).unwrap_err();
        assert_eq!(err.to_string(), "address 10.1.0.5 is already in use on subnet 10.1.0.0/24");
        assert_eq!(
            p.reserve(ip("10.1.0.1")),
            Err(IpamError::AddressInUse { addr: ip("10.1.0.1"), subnet: net("10.1.0.0/24") })
        );
    }

    #[test]
    fn static_request_may_be_outside_the_range() {
        let mut p = AddressPool::new(net("10.1.0.0/24"), Some(net("10.1.0.128/25")), None).unwrap();
        assert_eq!(p.allocate(Some(ip("10.1.0.7"))), Ok(ip("10.1.0.7")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.128")));
    }

    #[test]
    fn exhausted_subnet_and_range_are_reported() {
        let mut p = pool("10.1.0.0/30");
        p.allocate(None).unwrap();
        assert_eq!(p.allocate(None).unwrap_err().to_string(), "no free address left in subnet 10.1.0.0/30");
        let mut p = AddressPool::new(net("10.1.0.0/24"), Some(net("10.1.0.8/31")), None).unwrap();
        p.allocate(None).unwrap();
        p.allocate(None).unwrap();
        assert_eq!(
            p.allocate(None).unwrap_err().to_string(),
            "no free address left in ip range 10.1.0.8/31 of subnet 10.1.0.0/24"
        );
    }

    #[test]
    fn dynamic_allocation_is_round_robin() {
        let mut p = pool("10.1.0.0/29");
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.2")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.3")));
        assert!(p.release(ip("10.1.0.2")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.4")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.5")));
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.6")));
        // 10.1.0.7 is the broadcast address: wrap around to the released one.
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.2")));
    }

    #[test]
    fn static_request_does_not_move_the_cursor() {
        let mut p = pool("10.1.0.0/24");
        p.allocate(Some(ip("10.1.0.100"))).unwrap();
        assert_eq!(p.allocate(None), Ok(ip("10.1.0.2")));
    }

    #[test]
    fn release_reports_whether_the_address_was_allocated() {
        let mut p = pool("10.1.0.0/24");
        let addr = p.allocate(None).unwrap();
        assert!(p.release(addr));
        assert!(!p.release(addr));
        assert!(!p.release(ip("10.2.0.2")));
        assert!(!p.release(ip("fd00::2")));
        assert_eq!(p.allocated_count(), 1);
    }

    #[test]
    fn cursor_wraps_at_the_top_of_the_address_space() {
        let mut p = pool("ffff:ffff:ffff:ffff::/126");
        assert_eq!(p.allocate(None), Ok(ip("ffff:ffff:ffff:ffff::2")));
        assert_eq!(p.allocate(None), Ok(ip("ffff:ffff:ffff:ffff::3")));
        assert!(p.allocate(None).is_err());
        let mut p = pool("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124");
        let top = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        p.allocate(Some(top)).unwrap();
        assert!(p.release(top));
        for _ in 0..13 {
            p.allocate(None).unwrap();
        }
        assert_eq!(p.allocate(None), Ok(top));
        assert!(p.release(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff5")));
        assert_eq!(p.allocate(None), Ok(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff5")));
    }

    #[test]
    fn many_allocations_in_a_big_subnet_are_cheap() {
        let mut v4 = pool("10.1.0.0/16");
        let mut v6 = pool("fd00::/64");
        for _ in 0..500 {
            v4.allocate(None).unwrap();
            v6.allocate(None).unwrap();
        }
        assert_eq!(v4.allocated_count(), 501);
        assert_eq!(v6.allocated_count(), 501);
        // Releasing and refilling keeps every search short.
        for i in 2..200u8 {
            assert!(v4.release(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i))));
        }
        for _ in 0..10_000 {
            let addr = v4.allocate(None).unwrap();
            assert!(v4.release(addr));
        }
    }
}
