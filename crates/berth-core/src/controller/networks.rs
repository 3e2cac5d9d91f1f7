//! Network commands: create, remove, prune. Subnets come from the request or, without one, from
//! the first free subnet of the daemon's address pools (Docker's defaults, or
//! `--default-address-pool`) that overlaps no berth network and no route or address of the
//! daemon's namespace; IPv6 networks get one from a unique local /48 the same way.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_ipam::{check_usable_subnet, next_free_subnet, overlaps, AddressPool, SubnetPool};
use berth_store::Change;
use berth_types::{
    default_network_driver, validate_network_name, IpamConfig, Network, NetworkCreate, NetworkDriverState,
    NetworkRecord, PruneReport, SubnetRecord, DEFAULT_DRIVER, DEFAULT_NETWORK, PREDEFINED_NETWORKS,
};
use ipnet::IpNet;

use super::events::Action;
use super::{Controller, State};
use crate::error::{Error, Result};
use crate::ids;

/// A request's subnet entry, parsed.
struct RequestedSubnet {
    subnet: IpNet,
    ip_range: Option<IpNet>,
    gateway: Option<IpAddr>,
}

fn parse_cidr(what: &str, text: &str) -> Result<IpNet> {
    let net: IpNet = text.parse().map_err(|_| {
        Error::BadRequest(format!("invalid {what} {text:?}: expected an address/prefix such as 10.1.0.0/24"))
    })?;
    if net.trunc() != net {
        return Err(Error::BadRequest(format!(
            "invalid {what} {text}: it has host bits set, did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

fn parse_subnet_config(config: &IpamConfig) -> Result<Option<RequestedSubnet>> {
    let Some(subnet) = config.subnet.as_deref().filter(|s| !s.is_empty()) else {
        if config.ip_range.is_some() || config.gateway.is_some() {
            return Err(Error::BadRequest("an ip range or gateway needs a subnet (--subnet)".into()));
        }
        return Ok(None);
    };
    let subnet = parse_cidr("subnet", subnet)?;
    check_usable_subnet(&subnet)?;
    let ip_range =
        config.ip_range.as_deref().filter(|s| !s.is_empty()).map(|r| parse_cidr("ip range", r)).transpose()?;
    let gateway = config
        .gateway
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|g| {
            g.parse::<IpAddr>().map_err(|_| Error::BadRequest(format!("invalid gateway {g:?}: not an IP address")))
        })
        .transpose()?;
    Ok(Some(RequestedSubnet { subnet, ip_range, gateway }))
}

impl Controller {
    pub async fn list_networks(&self) -> Vec<Network> {
        let state = self.state.lock().await;
        state.networks.values().map(|n| state.network_view(n)).collect()
    }

    pub async fn inspect_network(&self, key: &str) -> Result<Network> {
        let state = self.state.lock().await;
        let network = state.network(key)?;
        Ok(state.network_view(network))
    }

    pub async fn create_network(&self, request: NetworkCreate) -> Result<Network> {
        let mut state = self.state.lock().await;
        let record = self.plan_network(&state, request).await?;
        self.add_network(&mut state, record).await
    }

    /// Validates a request against the state and the host, and turns it into a record.
    async fn plan_network(&self, state: &State, request: NetworkCreate) -> Result<NetworkRecord> {
        validate_network_name(&request.name).map_err(Error::BadRequest)?;
        if PREDEFINED_NETWORKS.contains(&request.name.as_str()) {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be created", request.name)));
        }
        if state.networks.values().any(|n| n.name == request.name) {
            return Err(Error::Conflict(format!("network with name {} already exists", request.name)));
        }
        let driver_name = if request.driver.is_empty() { DEFAULT_DRIVER } else { request.driver.as_str() };
        let driver = self.drivers.select(driver_name).map_err(|_| {
            let known: Vec<&str> = self.drivers.all().map(|d| d.name()).collect();
            Error::BadRequest(format!(
                "network driver {driver_name:?} is not supported: berth creates {} networks (host and none are sandbox modes: --network host|none)",
                known.join(", ")
            ))
        })?;
        let mut requested = Vec::new();
        for config in &request.ipam_config {
            requested.extend(parse_subnet_config(config)?);
        }
        for family_v6 in [false, true] {
            if requested.iter().filter(|r| r.subnet.addr().is_ipv6() == family_v6).count() > 1 {
                return Err(Error::BadRequest("at most one IPv4 and one IPv6 subnet per network".into()));
            }
        }
        let has_v6 = requested.iter().any(|r| r.subnet.addr().is_ipv6());
        if has_v6 && !request.enable_ipv6 {
            return Err(Error::BadRequest("an IPv6 subnet needs IPv6 enabled on the network (--ipv6)".into()));
        }
        for wanted in &requested {
            if let Some((other, subnet)) = state.subnets().find(|(_, s)| overlaps(s, &wanted.subnet)) {
                return Err(Error::Conflict(format!(
                    "subnet {} overlaps subnet {subnet} of network {}",
                    wanted.subnet, other.name
                )));
            }
        }
        // A family without a subnet of its own gets the first free one of its address pools
        // (IPv6 only when asked for, as Docker 27 does).
        for v6 in [false, true] {
            let wanted = !v6 || request.enable_ipv6;
            if wanted && !requested.iter().any(|r| r.subnet.addr().is_ipv6() == v6) {
                let subnet = self.free_default_subnet(state, v6).await?;
                requested.push(RequestedSubnet { subnet, ip_range: None, gateway: None });
            }
        }

        let mut subnets = Vec::new();
        for wanted in requested {
            // The pool validates range, gateway and size, and picks the default gateway.
            let pool = AddressPool::new(wanted.subnet, wanted.ip_range, wanted.gateway)?;
            subnets.push(SubnetRecord { subnet: wanted.subnet, ip_range: wanted.ip_range, gateway: pool.gateway() });
        }
        subnets.sort_by_key(|s| s.subnet.addr().is_ipv6());

        let mut record = NetworkRecord {
            id: ids::new_id(),
            name: request.name,
            driver: driver.name().into(),
            created: ids::now_rfc3339(),
            driver_state: NetworkDriverState::default(),
            internal: request.internal,
            attachable: request.attachable,
            enable_ipv6: request.enable_ipv6,
            subnets,
            options: request.options,
            labels: request.labels,
        };
        driver.plan_network(&mut record, &state.networks.values().collect::<Vec<_>>())?;
        Ok(record)
    }

    /// The first subnet of the family's address pools free of berth's subnets and of the
    /// host's routes and addresses.
    async fn free_default_subnet(&self, state: &State, v6: bool) -> Result<IpNet> {
        let mut taken: Vec<IpNet> = state.subnets().map(|(_, s)| s).collect();
        taken.extend(self.host.taken_prefixes().await?);
        let pools: Vec<SubnetPool> =
            self.address_pools.iter().filter(|p| p.base().addr().is_ipv6() == v6).copied().collect();
        Ok(next_free_subnet(&pools, &taken)?)
    }

    /// Creates the network in the kernel, then commits it; undoes the kernel work if the commit fails.
    pub(super) async fn add_network(&self, state: &mut State, record: NetworkRecord) -> Result<Network> {
        self.drivers.select(&record.driver)?.create_network(&record).await?;
        let id = record.id.clone();
        state.networks.insert(id.clone(), record.clone());
        let done = self.apply_firewall(state).and_then(|()| Ok(self.store.commit(&[Change::PutNetwork(&record)])?));
        if let Err(e) = done {
            state.networks.remove(&id);
            if let Err(undo) = self.apply_firewall(state) {
                tracing::error!(network = %record.name, "cannot undo firewall rules: {undo}");
            }
            if let Err(undo) = self.drivers.select(&record.driver)?.delete_network(&record).await {
                tracing::error!(network = %record.name, "cannot undo the network's creation: {undo}");
            }
            return Err(e);
        }
        tracing::info!(network = %record.name, driver = %record.driver, "network created");
        self.events.network(Action::Create, &record);
        state.rebuild_pools(&id)?;
        Ok(state.network_view(&state.networks[&id]))
    }

    pub async fn remove_network(&self, key: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let network = state.network(key)?.clone();
        if network.name == DEFAULT_NETWORK {
            return Err(Error::Forbidden(format!("{DEFAULT_NETWORK} is a pre-defined network and cannot be removed")));
        }
        let users: Vec<&str> = state.endpoints_on(&network.id).map(|(s, _)| s.name.as_str()).collect();
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "network {} has active endpoints (sandboxes: {})",
                network.name,
                users.join(", ")
            )));
        }
        self.delete_network(&mut state, &network).await
    }

    async fn delete_network(&self, state: &mut State, network: &NetworkRecord) -> Result<()> {
        self.drivers.select(&network.driver)?.delete_network(network).await?;
        if let Err(e) = self.store.commit(&[Change::DeleteNetwork(&network.id)]) {
            if let Err(undo) = self.drivers.select(&network.driver)?.create_network(network).await {
                tracing::error!(network = %network.name, "cannot restore the network after a failed commit: {undo}");
            }
            return Err(e.into());
        }
        state.networks.remove(&network.id);
        state.pools.remove(&network.id);
        if let Err(e) = self.apply_firewall(state) {
            tracing::error!(network = %network.name, "cannot remove the network's firewall rules: {e}");
        }
        tracing::info!(network = %network.name, "network removed");
        self.events.network(Action::Destroy, network);
        Ok(())
    }

    /// Removes every user network without endpoints.
    pub async fn prune_networks(&self) -> Result<PruneReport> {
        self.prune_networks_where(|_| true).await
    }

    /// Removes the user networks without endpoints that `selected` picks.
    pub async fn prune_networks_where(&self, selected: impl Fn(&Network) -> bool) -> Result<PruneReport> {
        let mut state = self.state.lock().await;
        let unused: Vec<NetworkRecord> = state
            .networks
            .values()
            .filter(|n| {
                n.name != DEFAULT_NETWORK
                    && state.endpoints_on(&n.id).next().is_none()
                    && selected(&state.network_view(n))
            })
            .cloned()
            .collect();
        let mut report = PruneReport::default();
        for network in unused {
            self.delete_network(&mut state, &network).await?;
            report.networks_deleted.push(network.name);
        }
        Ok(report)
    }
}

impl Controller {
    /// The record of the default network, on `subnet` (see [`default_network_driver`]).
    pub(super) fn default_network_record(&self, state: &State, subnet: IpNet) -> Result<NetworkRecord> {
        check_usable_subnet(&subnet)?;
        let pool = AddressPool::new(subnet, None, None)?;
        let (driver, options) = default_network_driver();
        let mut record = NetworkRecord {
            id: ids::new_id(),
            name: DEFAULT_NETWORK.into(),
            driver: driver.into(),
            created: ids::now_rfc3339(),
            driver_state: NetworkDriverState::default(),
            internal: false,
            attachable: false,
            enable_ipv6: false,
            subnets: vec![SubnetRecord { subnet, ip_range: None, gateway: pool.gateway() }],
            options,
            labels: BTreeMap::new(),
        };
        self.drivers.select(driver)?.plan_network(&mut record, &state.networks.values().collect::<Vec<_>>())?;
        Ok(record)
    }
}
