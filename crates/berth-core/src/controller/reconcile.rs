//! Reconcile on start: load the store, make the kernel match it (the drivers recreate missing
//! networks and endpoints; missing namespaces and files are made again; published ports are
//! taken back), and remove what berth created that the store no longer
//! knows (marked links, pinned namespaces, sandbox directories). It is also what makes a crash
//! in the middle of a command harmless: kernel work is only kept if its record was committed.

use std::collections::HashSet;
use std::path::Path;

use berth_store::Change;
use berth_types::{EndpointRecord, NetworkRecord, SandboxMode, SandboxRecord, DEFAULT_NETWORK};
use ipnet::IpNet;

use super::{Controller, State};
use crate::sandbox_files::sandbox_files_exist;

/// The default network to make when the store has none (`--bridge-subnet`).
#[derive(Debug, Clone, Copy)]
pub struct DefaultNetwork {
    pub subnet: IpNet,
}

impl Controller {
    pub(super) async fn reconcile(&self, default_network: Option<DefaultNetwork>) -> anyhow::Result<()> {
        let snapshot = self.store.load()?;
        let mut state = self.state.lock().await;
        for network in snapshot.networks {
            let restored = match self.drivers.select(&network.driver) {
                Ok(driver) => driver.create_network(&network).await,
                Err(e) => Err(e),
            };
            if let Err(e) = restored {
                tracing::error!(network = %network.name, "cannot restore network: {e}");
            }
            state.networks.insert(network.id.clone(), network);
        }
        for sandbox in snapshot.sandboxes {
            state.sandboxes.insert(sandbox.id.clone(), sandbox);
        }
        let ids: Vec<String> = state.networks.keys().cloned().collect();
        for id in ids {
            state.rebuild_pools(&id)?;
        }

        // Sandboxes sharing another's namespace come after the ones they share.
        let mut order: Vec<SandboxRecord> = state.sandboxes.values().cloned().collect();
        order.sort_by_key(|s| matches!(s.mode, SandboxMode::Container(_)));
        for sandbox in order {
            self.restore_sandbox(&mut state, sandbox).await;
        }

        self.refresh_dns(&state);
        self.remove_orphans(&state).await;
        self.restore_ports(&mut state);
        self.apply_firewall(&state)?;

        if let Some(default) = default_network {
            if !state.networks.values().any(|n| n.name == DEFAULT_NETWORK) {
                let record = self.default_network_record(&state, default.subnet)?;
                self.add_network(&mut state, record).await?;
            }
        }
        tracing::info!(
            networks = state.networks.len(),
            sandboxes = state.sandboxes.len(),
            "reconciled the kernel with the store"
        );
        Ok(())
    }

    /// Brings one sandbox back to its record; a sandbox whose borrowed namespace is gone is removed.
    async fn restore_sandbox(&self, state: &mut State, mut sandbox: SandboxRecord) {
        let netns = sandbox.netns_path.clone();
        let mut changed = false;
        let mut recreated_netns = false;
        match sandbox.mode.clone() {
            SandboxMode::Host => {
                let current = self.host.netns_path();
                changed = sandbox.netns_path != current;
                sandbox.netns_path = current;
            }
            SandboxMode::Container(target) => match state.sandboxes.get(&target) {
                Some(t) if t.netns_path != sandbox.netns_path => {
                    sandbox.netns_path = t.netns_path.clone();
                    changed = true;
                }
                Some(_) => {}
                None => return self.forget_sandbox(state, &sandbox, "the sandbox it shared a namespace with is gone"),
            },
            SandboxMode::Attached if !berth_sys::netns::is_netns(Path::new(&netns)) => {
                return self.forget_sandbox(state, &sandbox, "its namespace no longer exists");
            }
            SandboxMode::Networked | SandboxMode::None if !berth_sys::netns::is_netns(Path::new(&netns)) => {
                let _ = self.host.delete_netns(Path::new(&netns));
                if let Err(e) = self.host.create_netns(Path::new(&netns)).await {
                    tracing::error!(sandbox = %sandbox.name, "cannot recreate namespace: {e}");
                    return;
                }
                tracing::info!(sandbox = %sandbox.name, "recreated its namespace");
                recreated_netns = true;
            }
            _ => {}
        }
        for (position, endpoint) in sandbox.endpoints.iter().enumerate() {
            let Some(network) = state.networks.get(&endpoint.network_id) else { continue };
            let driver = match self.drivers.select(&network.driver) {
                Ok(driver) => driver,
                Err(e) => {
                    tracing::error!(sandbox = %sandbox.name, network = %network.name, "cannot restore endpoint: {e}");
                    continue;
                }
            };
            match driver.endpoint_exists(endpoint).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(sandbox = %sandbox.name, network = %network.name, "cannot check endpoint: {e}");
                    continue;
                }
            }
            match driver.join(network, endpoint, Path::new(&netns), position == 0).await {
                Ok(_) => tracing::info!(sandbox = %sandbox.name, network = %network.name, "recreated endpoint"),
                Err(e) => {
                    tracing::error!(sandbox = %sandbox.name, network = %network.name, "cannot recreate endpoint: {e}")
                }
            }
        }
        let mut rewrite_files = !sandbox_files_exist(&sandbox);
        if sandbox.resolver.is_some() || state.wants_resolver(&sandbox) {
            match self.open_resolver(&sandbox, sandbox.resolver, recreated_netns) {
                Ok((listener, ports)) => {
                    if sandbox.resolver != Some(ports) {
                        rewrite_files |= sandbox.resolver.is_none();
                        sandbox.resolver = Some(ports);
                        changed = true;
                    }
                    state.resolver_listeners.insert(sandbox.id.clone(), listener);
                }
                Err(e) => tracing::error!(sandbox = %sandbox.name, "cannot restore the embedded resolver: {e}"),
            }
        }
        if rewrite_files {
            if let Err(e) = self.write_files(state, &sandbox) {
                tracing::error!(sandbox = %sandbox.name, "cannot rewrite sandbox files: {e}");
            }
        }
        if changed {
            if let Err(e) = self.store.commit(&[Change::PutSandbox(&sandbox)]) {
                tracing::error!(sandbox = %sandbox.name, "cannot update record: {e}");
            }
        }
        state.sandboxes.insert(sandbox.id.clone(), sandbox);
    }

    fn forget_sandbox(&self, state: &mut State, sandbox: &SandboxRecord, why: &str) {
        tracing::warn!(sandbox = %sandbox.name, "removing sandbox: {why}");
        match self.store.commit(&[Change::DeleteSandbox(&sandbox.id)]) {
            Ok(()) => {
                state.sandboxes.remove(&sandbox.id);
                state.resolver_listeners.remove(&sandbox.id);
                for endpoint in &sandbox.endpoints {
                    if let Some(pools) = state.pools.get_mut(&endpoint.network_id) {
                        super::sandboxes::release_all(pools, endpoint);
                    }
                }
            }
            Err(e) => tracing::error!(sandbox = %sandbox.name, "cannot remove record: {e}"),
        }
    }

    /// Removes berth-marked links, pinned namespaces and sandbox directories no record owns.
    async fn remove_orphans(&self, state: &State) {
        for driver in self.drivers.all() {
            let networks: Vec<&NetworkRecord> = state.networks.values().filter(|n| n.driver == driver.name()).collect();
            let endpoints: Vec<&EndpointRecord> = state
                .sandboxes
                .values()
                .flat_map(|s| &s.endpoints)
                .filter(|e| networks.iter().any(|n| n.id == e.network_id))
                .collect();
            match driver.remove_orphans(&networks, &endpoints).await {
                Ok(removed) => {
                    for link in removed {
                        tracing::info!(link = %link, "removed orphaned link");
                    }
                }
                Err(e) => tracing::error!(driver = driver.name(), "cannot remove orphaned links: {e}"),
            }
        }
        let known_ids: HashSet<&str> = state.sandboxes.keys().map(String::as_str).collect();
        for dir in [&self.paths.netns_dir, &self.paths.sandboxes_dir] {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if known_ids.contains(name.to_string_lossy().as_ref()) {
                    continue;
                }
                let path = entry.path();
                let removed = if dir == &self.paths.netns_dir {
                    self.host.delete_netns(&path).map_err(|e| e.to_string())
                } else {
                    std::fs::remove_dir_all(&path).map_err(|e| e.to_string())
                };
                match removed {
                    Ok(()) => tracing::info!(path = %path.display(), "removed orphan"),
                    Err(e) => tracing::error!(path = %path.display(), "cannot remove orphan: {e}"),
                }
            }
        }
    }
}
