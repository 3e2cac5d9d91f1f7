//! Picks subnets for new networks: prefix overlap, the blocks no network may take, and
//! address pools (Docker's defaults for both families, or the daemon's own).
//! It only compares prefixes it is given; it must not discover host routes
//! or addresses itself, nor hand out individual addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::IpamError;

/// True when the two prefixes share any address. Prefixes of different
/// address families never overlap.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    // Two prefixes overlap exactly when one contains the other's first address.
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Address blocks no network may overlap, with what they are: a bridge there would take over
/// addresses the kernel gives other meanings (its loopback, link-local autoconfiguration,
/// multicast), or routes that are not a network's to make.
const SPECIAL_BLOCKS: [(&str, &str); 11] = [
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4, with the broadcast address)"),
    ("::/127", "the unspecified and loopback addresses (::/127)"),
    ("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("ff00::/8", "multicast (ff00::/8)"),
    // Only ever matched by a /0 itself, which overlaps every block above.
    ("0.0.0.0/0", "every IPv4 address"),
    ("::/0", "every IPv6 address"),
];

/// Refuses a subnet a network cannot have: the whole address space, or one overlapping the
/// loopback, link-local, multicast or otherwise reserved blocks.
pub fn check_usable_subnet(subnet: &IpNet) -> Result<(), IpamError> {
    let whole = subnet.prefix_len() == 0;
    let found = SPECIAL_BLOCKS.iter().find(|(block, _)| {
        let block: IpNet = block.parse().expect("the special blocks are valid prefixes");
        if whole || block.prefix_len() == 0 {
            whole && block.prefix_len() == 0 && block.addr().is_ipv4() == subnet.addr().is_ipv4()
        } else {
            overlaps(&block, subnet)
        }
    });
    match found {
        Some((_, what)) => Err(IpamError::UnusableSubnet { subnet: *subnet, what }),
        None => Ok(()),
    }
}

/// Subnets for networks that ask for none: `base` cut into subnets of prefix length `size`
/// (Docker's `--default-address-pool base=CIDR,size=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPool {
    base: IpNet,
    size: u8,
}

impl SubnetPool {
    /// A pool; `base` must be usable ([`check_usable_subnet`]) and `size` between the base's
    /// prefix length and the family's length less two (room for a gateway and an endpoint).
    pub fn new(base: IpNet, size: u8) -> Result<Self, IpamError> {
        let base = base.trunc();
        check_usable_subnet(&base)?;
        if size < base.prefix_len() || size > base.max_prefix_len() - 2 {
            return Err(IpamError::InvalidPool {
                pool: format!("base={base},size={size}"),
                reason: format!(
                    "size must be between {} (the base's prefix) and {}",
                    base.prefix_len(),
                    base.max_prefix_len() - 2
                ),
            });
        }
        Ok(Self { base, size })
    }

    pub fn base(&self) -> IpNet {
        self.base
    }

    /// The pool's subnets, lowest first.
    pub fn subnets(&self) -> impl Iterator<Item = IpNet> {
        self.base.subnets(self.size).expect("the size was checked against the base").into_iter()
    }
}

impl std::fmt::Display for SubnetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

impl std::str::FromStr for SubnetPool {
    type Err = IpamError;

    /// `base=CIDR,size=N`, as Docker's daemon takes it; without `size` the whole base is one subnet.
    fn from_str(text: &str) -> Result<Self, IpamError> {
        let invalid = |reason: &str| IpamError::InvalidPool { pool: text.to_owned(), reason: reason.to_owned() };
        let (mut base, mut size) = (None, None);
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("base", value)) => {
                    base = Some(value.parse::<IpNet>().map_err(|_| invalid("base is not an address/prefix"))?)
                }
                Some(("size", value)) => {
                    size = Some(value.parse::<u8>().map_err(|_| invalid("size is not a prefix length"))?)
                }
                _ => return Err(invalid("expected base=CIDR,size=N")),
            }
        }
        let base = base.ok_or_else(|| invalid("base is missing"))?;
        Self::new(base, size.unwrap_or(base.prefix_len()))
    }
}

/// Docker's default IPv4 pools, in Docker's order: 172.17.0.0/16 ... 172.31.0.0/16, then
/// 192.168.0.0/16 cut into /20s.
pub fn default_v4_pools() -> Vec<SubnetPool> {
    let private_b = (17..=31).map(|second| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, second, 0, 0), 16)));
    private_b
        .map(|base| SubnetPool { base, size: 16 })
        .chain([SubnetPool { base: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)), size: 20 }])
        .collect()
}

/// The default IPv6 pool, as Docker 27 makes it: a unique local /48 (`fdXX:XXXX:XXXX::/48`,
/// RFC 4193, its 40-bit global id given by the caller, derived from the host) cut into /64s.
pub fn default_v6_pool(global_id: [u8; 5]) -> SubnetPool {
    let [a, b, c, d, e] = global_id;
    let base =
        Ipv6Addr::new(0xfd00 | u16::from(a), u16::from_be_bytes([b, c]), u16::from_be_bytes([d, e]), 0, 0, 0, 0, 0);
    SubnetPool { base: IpNet::V6(Ipv6Net::new_assert(base, 48)), size: 64 }
}

/// First subnet of `pools`, in order, that overlaps none of `taken` (berth's networks' subnets
/// plus the host's routes and addresses, passed by the caller).
///
/// Every prefix counts, so a default route (`0.0.0.0/0`) would rule out all pools: like
/// Docker, callers pass only routes with a destination prefix.
pub fn next_free_subnet(pools: &[SubnetPool], taken: &[IpNet]) -> Result<IpNet, IpamError> {
    pools
        .iter()
        .flat_map(SubnetPool::subnets)
        .find(|candidate| !taken.iter().any(|t| overlaps(candidate, t)))
        .ok_or_else(|| IpamError::NoFreePool {
            pools: pools.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_blocks_are_refused_and_private_ones_kept() {
        for refused in [
            "127.0.0.0/8",
            "127.1.0.0/24",
            "169.254.0.0/16",
            "224.0.0.0/24",
            "0.0.0.0/0",
            "255.255.255.0/24",
            "::/0",
            "::/64",
            "fe80::/64",
            "ff02::/64",
            "::ffff:10.0.0.0/120",
            "0.0.0.0/16",
            "64.0.0.0/2",
        ] {
            let net: IpNet = refused.parse().unwrap();
            let error = check_usable_subnet(&net).expect_err(refused);
            assert!(error.to_string().starts_with(&format!("subnet {refused} cannot be used")), "{error}");
        }
        for kept in ["10.0.0.0/8", "172.17.0.0/16", "192.168.0.0/24", "198.51.100.0/24", "fd00:1::/64", "2001:db8::/64"]
        {
            assert_eq!(check_usable_subnet(&kept.parse().unwrap()), Ok(()), "{kept}");
        }
        let whole = check_usable_subnet(&"0.0.0.0/0".parse().unwrap()).unwrap_err().to_string();
        assert!(whole.contains("every IPv4 address"), "{whole}");
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn v4_subnets() -> Vec<IpNet> {
        default_v4_pools().iter().flat_map(SubnetPool::subnets).collect()
    }

    fn first_free(taken: &[IpNet]) -> Result<IpNet, IpamError> {
        next_free_subnet(&default_v4_pools(), taken)
    }

    #[test]
    fn default_pools_follow_docker_order() {
        let pools = v4_subnets();
        assert_eq!(pools.len(), 15 + 16);
        assert_eq!(pools[0], net("172.17.0.0/16"));
        assert_eq!(pools[1], net("172.18.0.0/16"));
        assert_eq!(pools[14], net("172.31.0.0/16"));
        assert_eq!(pools[15], net("192.168.0.0/20"));
        assert_eq!(pools[16], net("192.168.16.0/20"));
        assert_eq!(pools[30], net("192.168.240.0/20"));
    }

    #[test]
    fn nothing_taken_gives_first_pool() {
        assert_eq!(first_free(&[]), Ok(net("172.17.0.0/16")));
    }

    #[test]
    fn taken_pool_is_skipped() {
        assert_eq!(first_free(&[net("172.17.0.0/16")]), Ok(net("172.18.0.0/16")));
    }

    #[test]
    fn host_address_inside_pool_is_skipped() {
        assert_eq!(first_free(&[net("172.17.5.3/32"), net("172.18.0.0/24")]), Ok(net("172.19.0.0/16")));
    }

    #[test]
    fn covering_host_route_skips_all_172_pools() {
        assert_eq!(first_free(&[net("172.16.0.0/12")]), Ok(net("192.168.0.0/20")));
    }

    #[test]
    fn smaller_route_skips_its_192_168_pool() {
        assert_eq!(first_free(&[net("172.16.0.0/12"), net("192.168.1.0/24")]), Ok(net("192.168.16.0/20")));
    }

    #[test]
    fn ipv6_routes_do_not_block_ipv4_pools() {
        assert_eq!(first_free(&[net("::/0")]), Ok(net("172.17.0.0/16")));
    }

    #[test]
    fn every_pool_taken_is_an_error() {
        let err = first_free(&[net("172.16.0.0/12"), net("192.168.0.0/16")]).unwrap_err();
        assert!(matches!(err, IpamError::NoFreePool { .. }));
        assert!(
            err.to_string().starts_with("no free subnet left in the address pools base=172.17.0.0/16,size=16 "),
            "{err}"
        );
    }

    #[test]
    fn the_v6_pool_is_a_unique_local_48_cut_into_64s() {
        let pool = default_v6_pool([0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(pool.base(), net("fd12:3456:789a::/48"));
        assert_eq!(next_free_subnet(&[pool], &[]), Ok(net("fd12:3456:789a::/64")));
        assert_eq!(next_free_subnet(&[pool], &[net("fd12:3456:789a::/64")]), Ok(net("fd12:3456:789a:1::/64")));
    }

    #[test]
    fn pools_parse_like_dockers_flag() {
        let pool: SubnetPool = "base=10.10.0.0/16,size=24".parse().unwrap();
        assert_eq!(next_free_subnet(&[pool], &[net("10.10.0.0/24")]), Ok(net("10.10.1.0/24")));
        assert_eq!("base=fd00:1::/56,size=64".parse::<SubnetPool>().unwrap().base(), net("fd00:1::/56"));
        for bad in [
            "base=10.0.0.0/16,size=8",
            "base=10.0.0.0/16,size=31",
            "size=24",
            "base=nope,size=24",
            "base=127.0.0.0/8,size=16",
            "10.0.0.0/8",
        ] {
            assert!(bad.parse::<SubnetPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_cases() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.2.0/24")));
        assert!(overlaps(&net("10.1.2.0/24"), &net("10.0.0.0/8")));
        assert!(overlaps(&net("10.1.2.0/24"), &net("10.1.2.0/24")));
        assert!(overlaps(&net("10.1.2.77/24"), &net("10.1.2.200/32")));
        assert!(!overlaps(&net("10.1.2.0/24"), &net("10.1.3.0/24")));
        assert!(!overlaps(&net("10.0.0.0/8"), &net("::/0")));
        assert!(overlaps(&net("fd00::/8"), &net("fd12:3456::/64")));
        assert!(!overlaps(&net("fd00::/64"), &net("fd00:0:0:1::/64")));
    }
}
