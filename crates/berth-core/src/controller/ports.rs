//! The published-port commands (`berth port add/rm`, Docker has none) and the firewall's
//! upkeep. What publishing does in the kernel and the proxy is the port publishers' (crate::ports);
//! the controller decides which mappings a sandbox has and commits them.

use berth_types::{PortMapping, PortsChange, Sandbox};

use super::{Controller, State};
use crate::error::{Error, Result};
use crate::firewall::{apply_whole, whole_ruleset};
use crate::ports::{port_specs, Destination};

impl Controller {
    pub async fn publish_ports(&self, key: &str, change: PortsChange) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let mut sandbox = state.sandbox(key)?.clone();
        let destination = Destination::of(&state.networks, &sandbox);
        let specs = port_specs(&change.ports, &[], false)?;
        let reservations = state.ports.reserve(&sandbox.id, &sandbox.name, destination.as_ref(), specs)?;
        let new_mappings: Vec<PortMapping> = reservations.iter().map(|r| r.mapping.clone()).collect();
        sandbox.ports.extend(new_mappings.iter().cloned());
        state.ports.publish(&sandbox.id, &sandbox.name, destination.unwrap_or_default(), reservations)?;
        if let Err(e) = self.store.commit(&[berth_store::Change::PutSandbox(&sandbox)]) {
            self.withdraw_ports(&mut state, &sandbox.id, Some(&new_mappings));
            return Err(e.into());
        }
        let view = state.sandbox_view(&sandbox);
        state.sandboxes.insert(sandbox.id.clone(), sandbox);
        Ok(view)
    }

    pub async fn unpublish_ports(&self, key: &str, change: PortsChange) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let mut sandbox = state.sandbox(key)?.clone();
        let mut removed = Vec::new();
        for spec in &change.ports {
            let matching = |m: &PortMapping| {
                m.protocol == spec.protocol
                    && m.container_ports == spec.container_ports
                    && spec.host_ip.is_none_or(|ip| m.host_ip == Some(ip))
                    && spec.host_ports.is_none_or(|p| m.host_ports == p)
            };
            let before = sandbox.ports.len();
            removed.extend(sandbox.ports.iter().filter(|m| matching(m)).cloned());
            sandbox.ports.retain(|m| !matching(m));
            if sandbox.ports.len() == before {
                return Err(Error::NotFound(format!("sandbox {} does not publish {spec}", sandbox.name)));
            }
        }
        // Store first: what the publishers then fail to remove is dropped by a full apply.
        self.store.commit(&[berth_store::Change::PutSandbox(&sandbox)])?;
        self.withdraw_ports(&mut state, &sandbox.id, Some(&removed));
        let view = state.sandbox_view(&sandbox);
        state.sandboxes.insert(sandbox.id.clone(), sandbox);
        Ok(view)
    }

    /// Stops publishing a sandbox's `mappings` (all when None); when a publisher could not
    /// remove its part, the whole ruleset is applied again.
    pub(super) fn withdraw_ports(&self, state: &mut State, sandbox_id: &str, mappings: Option<&[PortMapping]>) {
        let withdrawn = state.ports.withdraw(sandbox_id, mappings);
        self.repair_ports(state, sandbox_id, "withdraw", withdrawn);
    }

    /// Has a sandbox's published ports follow it to its publishing network as it is now
    /// (after a connect or disconnect).
    pub(super) fn redirect_ports(&self, state: &mut State, sandbox_id: &str) {
        let destination = state.sandboxes.get(sandbox_id).and_then(|s| Destination::of(&state.networks, s));
        let redirected = state.ports.redirect(sandbox_id, destination);
        self.repair_ports(state, sandbox_id, "move", redirected);
    }

    /// After a port change a publisher could not complete (the kernel may hold some of the old
    /// state): applies the whole ruleset again.
    fn repair_ports(&self, state: &State, sandbox_id: &str, what: &str, outcome: Result<()>) {
        if let Err(e) = outcome {
            tracing::error!(sandbox = %sandbox_id, "cannot {what} published ports, re-applying the ruleset: {e}");
            if let Err(e) = self.apply_firewall(state) {
                tracing::error!("cannot re-apply the firewall ruleset: {e}");
            }
        }
    }

    /// Applies berth's whole firewall ruleset for the current state.
    pub(super) fn apply_firewall(&self, state: &State) -> Result<()> {
        apply_whole(&self.firewall, &*self.host, &whole_ruleset(&self.drivers, state.networks.values(), &state.ports))
    }

    /// `berth firewall reload`: applies the whole ruleset again.
    pub async fn reload_firewall(&self) -> Result<()> {
        let state = self.state.lock().await;
        self.apply_firewall(&state)?;
        tracing::info!("firewall ruleset reloaded");
        Ok(())
    }

    /// Called after nftables changed in the daemon's namespace: restores berth's ruleset when
    /// it no longer matches (a flush, a deleted table, a firewalld reload).
    pub async fn heal_firewall(&self) {
        let state = self.state.lock().await;
        let ruleset = whole_ruleset(&self.drivers, state.networks.values(), &state.ports);
        match self.firewall.matches(&ruleset) {
            Ok(true) => {}
            Ok(false) => match apply_whole(&self.firewall, &*self.host, &ruleset) {
                Ok(()) => tracing::warn!("berth's nftables ruleset was changed behind its back; restored"),
                Err(e) => tracing::error!("cannot restore the firewall ruleset: {e}"),
            },
            Err(e) => tracing::error!("cannot check the firewall ruleset: {e}"),
        }
    }

    /// Takes back the host sockets of every recorded mapping on start and has the publishers
    /// serve exactly those.
    pub(super) fn restore_ports(&self, state: &mut State) {
        let State { ports, sandboxes, networks, .. } = state;
        ports.restore(sandboxes.values().map(|s| {
            (s.id.as_str(), s.name.as_str(), Destination::of(networks, s).unwrap_or_default(), s.ports.as_slice())
        }));
    }

    /// Lets the port publishers repair what died (the userland proxy); run periodically.
    pub async fn keep_ports_alive(&self) {
        self.state.lock().await.ports.keep_alive();
    }
}
