//! The firewall that does nothing, for hosts where the user manages NAT and filtering: every
//! call succeeds and nothing in the kernel is read or changed.

use crate::{Dnat, Firewall, FirewallError, RoutedPort, Ruleset};

/// Does nothing; [`Firewall::matches`] is always true so nothing is ever re-applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFirewall;

impl Firewall for NoFirewall {
    fn apply(&self, _ruleset: &Ruleset) -> Result<(), FirewallError> {
        Ok(())
    }

    fn add_dnats(&self, _dnats: &[Dnat]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn remove_dnats(&self, _dnats: &[Dnat]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn add_routed_ports(&self, _ports: &[RoutedPort]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn remove_routed_ports(&self, _ports: &[RoutedPort]) -> Result<(), FirewallError> {
        Ok(())
    }

    fn matches(&self, _ruleset: &Ruleset) -> Result<bool, FirewallError> {
        Ok(true)
    }
}
