//! Kernel DNAT: a published port is a DNAT map element in berth's nftables table, one per
//! mapping and address family of the sandbox, added and removed in one batch per change (the
//! cost of a publish does not grow with the ports already published). UDP flows the kernel
//! already tracks for a changed port are forgotten, so their next datagram meets the mapping
//! as it is now. With `loopback`, host processes reach published ports on 127.0.0.1 through the
//! kernel too (berthd `--userland-proxy=false`).

use std::sync::Arc;

use berth_firewall::{Dnat, Ruleset};

use super::{leads_to, PortPublisher, Publication};
use crate::error::Result;
use crate::firewall::BlockingFirewall;
use crate::host::Host;

#[derive(Debug)]
pub struct KernelDnat {
    firewall: Arc<BlockingFirewall>,
    host: Arc<dyn Host>,
    /// DNAT host processes' connections to 127.0.0.0/8 too (there is no userland proxy).
    loopback: bool,
}

impl KernelDnat {
    pub fn new(firewall: Arc<BlockingFirewall>, host: Arc<dyn Host>, loopback: bool) -> Self {
        Self { firewall, host, loopback }
    }
}

/// The DNAT entries of a publication: each mapping to the sandbox's address of each family it
/// leads to. An IPv6 host address in front of an IPv4-only sandbox gets none (that path is the
/// userland proxy's).
fn dnats(publication: &Publication<'_>) -> Vec<Dnat> {
    let targets = &publication.destination.addresses;
    publication
        .reservations
        .iter()
        .map(|r| &r.mapping)
        .flat_map(|m| {
            targets.iter().filter(|t| leads_to(m, **t)).map(move |target| Dnat {
                protocol: m.protocol,
                host_ip: m.host_ip,
                host_ports: m.host_ports,
                target: *target,
                target_ports: m.container_ports,
            })
        })
        .collect()
}

impl PortPublisher for KernelDnat {
    fn publish(&self, publication: &Publication<'_>) -> Result<()> {
        let added = dnats(publication);
        self.firewall.add_dnats(&added)?;
        self.host.forget_udp_flows(&added);
        Ok(())
    }

    fn unpublish(&self, publication: &Publication<'_>) -> Result<()> {
        let gone = dnats(publication);
        let removed = self.firewall.remove_dnats(&gone);
        self.host.forget_udp_flows(&gone);
        Ok(removed?)
    }

    fn redirect(&self, before: &Publication<'_>, after: &Publication<'_>) -> Result<()> {
        let (before, after) = (dnats(before), dnats(after));
        let gone: Vec<Dnat> = before.iter().filter(|d| !after.contains(d)).copied().collect();
        let new: Vec<Dnat> = after.iter().filter(|d| !before.contains(d)).copied().collect();
        let moved = self.firewall.remove_dnats(&gone).and_then(|()| self.firewall.add_dnats(&new));
        self.host.forget_udp_flows(&gone);
        Ok(moved?)
    }

    fn add_to_ruleset(&self, all: &[Publication<'_>], ruleset: &mut Ruleset) {
        ruleset.dnats.extend(all.iter().flat_map(dnats));
        ruleset.loopback_dnat = self.loopback;
    }
}
