//! Picks subnets for new networks: prefix overlap and Docker's default pools.
//! It only compares prefixes it is given; it must not discover host routes
//! or addresses itself, nor hand out individual addresses.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

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

/// The default pools, in Docker's order: 172.17.0.0/16 ... 172.31.0.0/16,
/// then 192.168.0.0/20, 192.168.16.0/20, ... 192.168.240.0/20.
pub fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let private_b =
        (17..=31).map(|second| Ipv4Net::new_assert(Ipv4Addr::new(172, second, 0, 0), 16));
    let private_c =
        (0..16).map(|block| Ipv4Net::new_assert(Ipv4Addr::new(192, 168, block * 16, 0), 20));
    private_b.chain(private_c)
}

/// First default pool that overlaps none of `taken` (berth's networks'
/// subnets plus the host's routes and addresses, passed by the caller).
///
/// Every prefix counts, so a default route (`0.0.0.0/0`) would rule out all
/// pools: like Docker, callers pass only routes with a destination prefix.
pub fn next_free_subnet(taken: &[IpNet]) -> Result<Ipv4Net, IpamError> {
    default_pools()
        .find(|pool| {
            let pool = IpNet::V4(*pool);
            !taken.iter().any(|t| overlaps(&pool, t))
        })
        .ok_or(IpamError::NoFreePool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_blocks_are_refused_and_private_ones_kept() {
        for refused in ["127.0.0.0/8", "127.1.0.0/24", "169.254.0.0/16", "224.0.0.0/24", "0.0.0.0/0", "255.255.255.0/24", "::/0", "::/64", "fe80::/64", "ff02::/64", "::ffff:10.0.0.0/120", "0.0.0.0/16", "64.0.0.0/2"] {
            let net: IpNet = refused.parse().unwrap();
            let error = check_usable_subnet(&net).expect_err(refused);
            assert!(error.to_string().starts_with(&format!("subnet {refused} cannot be used")), "{error}");
        }
        for kept in ["10.0.0.0/8", "172.17.0.0/16", "192.168.0.0/24", "198.51.100.0/24", "fd00:1::/64", "2001:db8::/64"] {
            assert_eq!(check_usable_subnet(&kept.parse().unwrap()), Ok(()), "{kept}");
        }
        let whole = check_usable_subnet(&"0.0.0.0/0".parse().unwrap()).unwrap_err().to_string();
        assert!(whole.contains("every IPv4 address"), "{whole}");
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_follow_docker_order() {
        let pools: Vec<Ipv4Net> = default_pools().collect();
        assert_eq!(pools.len(), 15 + 16);
        assert_eq!(pools[0], v4("172.17.0.0/16"));
        assert_eq!(pools[1], v4("172.18.0.0/16"));
        assert_eq!(pools[14], v4("172.31.0.0/16"));
        assert_eq!(pools[15], v4("192.168.0.0/20"));
        assert_eq!(pools[16], v4("192.168.16.0/20"));
        assert_eq!(pools[30], v4("192.168.240.0/20"));
    }

    #[test]
    fn nothing_taken_gives_first_pool() {
        assert_eq!(next_free_subnet(&[]), Ok(v4("172.17.0.0/16")));
    }

    #[test]
    fn taken_pool_is_skipped() {
        assert_eq!(
            next_free_subnet(&[net("172.17.0.0/16")]),
            Ok(v4("172.18.0.0/16"))
        );
    }

    #[test]
    fn host_address_inside_pool_is_skipped() {
        assert_eq!(
            next_free_subnet(&[net("172.17.5.3/32"), net("172.18.0.0/24")]),
            Ok(v4("172.19.0.0/16"))
        );
    }

    #[test]
    fn covering_host_route_skips_all_172_pools() {
        assert_eq!(
            next_free_subnet(&[net("172.16.0.0/12")]),
            Ok(v4("192.168.0.0/20"))
        );
    }

    #[test]
    fn smaller_route_skips_its_192_168_pool() {
        assert_eq!(
            next_free_subnet(&[net("172.16.0.0/12"), net("192.168.1.0/24")]),
            Ok(v4("192.168.16.0/20"))
        );
    }

    #[test]
    fn ipv6_routes_do_not_block_ipv4_pools() {
        assert_eq!(next_free_subnet(&[net("::/0")]), Ok(v4("172.17.0.0/16")));
    }

    #[test]
    fn every_pool_taken_is_an_error() {
        let err = next_free_subnet(&[net("172.16.0.0/12"), net("192.168.0.0/16")]).unwrap_err();
        assert_eq!(err, IpamError::NoFreePool);
        assert_eq!(
            err.to_string(),
            "no free default pool left: every 172.17-172.31.0.0/16 and 192.168.0.0/20 subnet \
             overlaps a network or host route"
        );
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
