//! The one nftables table berth puts inside a sandbox's own namespace, `ip berth-dns`: queries the
//! sandbox sends to the embedded resolver's address on port 53 are DNATed to the ports berthd's
//! listener for that sandbox holds (Docker does the same with iptables), so port 53 stays free
//! for the sandbox's own programs. Replies are un-NATed by conntrack. The caller starts it on a
//! thread that has entered the sandbox's namespace (`nft` inherits it) and may wait for it
//! elsewhere, doing other work meanwhile.

use std::net::Ipv4Addr;

use crate::nft::NftRun;
use crate::FirewallError;

/// The table, as nft names it.
pub const RESOLVER_TABLE: &str = "ip berth-dns";

/// Makes `address`:53 (UDP and TCP) lead to `address`:`udp_port` and `address`:`tcp_port`,
/// replacing the rules the chain held, in one batch. The table and its hooked chain are declared
/// (kept when they exist) and only the chain's rules are replaced: removing a hooked chain makes
/// the kernel wait for a grace period (measured: 4 ms for this script in a fresh namespace,
/// 14-16 ms when the table is deleted and made again in the same batch). Returns the running
/// `nft`; the redirect is in place once [`NftRun::wait`] says so.
pub fn start_resolver_redirect(address: Ipv4Addr, udp_port: u16, tcp_port: u16) -> Result<NftRun, FirewallError> {
    let script = format!(
        "table {RESOLVER_TABLE} {{\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t}}\n\
         }}\n\
         flush chain {RESOLVER_TABLE} output\n\
         add rule {RESOLVER_TABLE} output ip daddr {address} udp dport 53 dnat to {address}:{udp_port}\n\
         add rule {RESOLVER_TABLE} output ip daddr {address} tcp dport 53 dnat to {address}:{tcp_port}\n"
    );
    NftRun::start(format!("redirect {address}:53 to the embedded resolver"), script)
}
