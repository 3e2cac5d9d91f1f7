//! berth's firewall as the core drives it. The whole ruleset is derived from the state: each
//! network's policy comes from its driver, the published ports' part from the port
//! publishers. Applying it also sets the host sysctls it relies on (forwarding for each family
//! with a network that has a way out; `route_localnet` on those networks' interfaces when
//! 127.0.0.1 is DNATed). Every firewall call runs `nft` and waits for it, so it tells the
//! async runtime to move the worker's other tasks elsewhere meanwhile.

use berth_drivers::Drivers;
use berth_firewall::{Dnat, Firewall, FirewallError, RoutedPort, Ruleset};
use berth_types::NetworkRecord;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::ports::PortTable;

/// The firewall as the async core calls it (see the module's comment).
#[derive(Debug)]
pub struct BlockingFirewall(Box<dyn Firewall>);

impl BlockingFirewall {
    pub fn new(firewall: Box<dyn Firewall>) -> Self {
        Self(firewall)
    }

    pub fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        tokio::task::block_in_place(|| self.0.apply(ruleset))
    }

    pub fn add_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        tokio::task::block_in_place(|| self.0.add_dnats(dnats))
    }

    pub fn remove_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        tokio::task::block_in_place(|| self.0.remove_dnats(dnats))
    }

    pub fn add_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        tokio::task::block_in_place(|| self.0.add_routed_ports(ports))
    }

    pub fn remove_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        tokio::task::block_in_place(|| self.0.remove_routed_ports(ports))
    }

    pub fn matches(&self, ruleset: &Ruleset) -> Result<bool, FirewallError> {
        tokio::task::block_in_place(|| self.0.matches(ruleset))
    }
}

/// berth's whole ruleset for `networks` and everything `ports` publishes.
pub fn whole_ruleset<'a>(
    drivers: &Drivers,
    networks: impl Iterator<Item = &'a NetworkRecord>,
    ports: &PortTable,
) -> Ruleset {
    let mut ruleset = Ruleset::default();
    for network in networks {
        match drivers.select(&network.driver) {
            Ok(driver) => ruleset.networks.push(driver.firewall_policy(network)),
            Err(e) => tracing::error!(network = %network.name, "no firewall policy: {e}"),
        }
    }
    ports.add_to_ruleset(&mut ruleset);
    ruleset
}

/// Sets the host sysctls `ruleset` relies on, then applies it.
pub fn apply_whole(firewall: &BlockingFirewall, host: &dyn Host, ruleset: &Ruleset) -> Result<()> {
    let set =
        |key: &str| host.set_sysctl(key, "1").map_err(|e| Error::Internal(format!("cannot set sysctl {key}: {e}")));
    let forwarding: Vec<_> = ruleset.networks.iter().filter(|n| !n.internal).collect();
    if !forwarding.is_empty() {
        set("net/ipv4/ip_forward")?;
    }
    if forwarding.iter().any(|n| n.subnets.iter().any(|s| s.addr().is_ipv6())) {
        set("net/ipv6/conf/all/forwarding")?;
    }
    if ruleset.loopback_dnat {
        // 127.0.0.1 is DNATed into the sandbox: the network's interface must route
        // loopback-sourced packets; the firewall's guard drops 127/8 arriving elsewhere.
        for network in &forwarding {
            if let Err(e) = set(&format!("net/ipv4/conf/{}/route_localnet", network.bridge)) {
                tracing::warn!(network = %network.name, "{e}");
            }
        }
    }
    Ok(firewall.apply(ruleset)?)
}
