//! Docker's network routes over berth's network commands: Docker's create body becomes berth's,
//! berth's network view gains Docker's swarm-era fields, and Docker's list and prune filters
//! pick the networks.

use berth_core::controller::Controller;
use berth_core::error::{Error, Result};
use berth_core::ids;
use berth_types::{
    DockerFilters, DockerNetwork, DockerNetworkConnect, DockerNetworkCreate, Network, NetworkConnect, NetworkCreate,
    NetworkCreateResponse, PruneReport, DEFAULT_NETWORK,
};

use super::filters::{any_matches, boolean, check_keys, labels_match, timestamp_nanos, NameFilter};

/// `GET /networks` with Docker's filters: `name` (regular expression), `id` (prefix), `driver`,
/// `label`, `scope`, `type` (`builtin` is the default network, `custom` the others) and
/// `dangling` (no sandboxes on it).
pub async fn list(c: &Controller, filters: &DockerFilters) -> Result<Vec<DockerNetwork>> {
    check_keys(filters, &["dangling", "driver", "id", "label", "name", "scope", "type"])?;
    if let Some(kind) = filters.get("type").iter().find(|t| !matches!(t.as_str(), "builtin" | "custom")) {
        return Err(Error::BadRequest(format!("invalid filter 'type={kind}': use builtin or custom")));
    }
    let names = NameFilter::new(filters.get("name"));
    let dangling = boolean(filters, "dangling")?;
    let listed = c
        .list_networks()
        .await
        .into_iter()
        .filter(|n| {
            let builtin = n.name == DEFAULT_NETWORK;
            names.matches(&[&n.name])
                && any_matches(filters.get("id"), |v| n.id.starts_with(v))
                && any_matches(filters.get("driver"), |v| v == n.driver)
                && any_matches(filters.get("scope"), |v| v == "local")
                && any_matches(filters.get("type"), |v| (v == "builtin") == builtin)
                && labels_match(filters.get("label"), &n.labels)
                && dangling.is_none_or(|d| d == (!builtin && n.containers.is_empty()))
        })
        .map(docker_network)
        .collect();
    Ok(listed)
}

/// `GET /networks/{id}`: a `scope` other than `local` finds nothing, as in Docker.
pub async fn inspect(c: &Controller, key: &str, scope: &str) -> Result<DockerNetwork> {
    if !matches!(scope, "" | "local") {
        return Err(Error::NotFound(format!("network {key} not found")));
    }
    c.inspect_network(key).await.map(docker_network)
}

pub async fn create(c: &Controller, request: DockerNetworkCreate) -> Result<NetworkCreateResponse> {
    let network = c.create_network(network_create(request)?).await?;
    Ok(NetworkCreateResponse { id: network.id, warning: String::new() })
}

/// `POST /networks/{id}/connect`: the addresses of `EndpointConfig.IPAMConfig`, its
/// `MacAddress` and the aliases are used; links are accepted and ignored.
pub async fn connect(c: &Controller, network: &str, request: DockerNetworkConnect) -> Result<()> {
    let config = request.endpoint_config.unwrap_or_default();
    if let Some(key) = config.driver_opts.iter().flatten().next().map(|(k, _)| k) {
        return Err(Error::BadRequest(format!(
            "endpoint driver option {key} is not supported: berth's bridge driver takes none"
        )));
    }
    let addresses = config.ipam_config.unwrap_or_default();
    let request = NetworkConnect {
        container: request.container,
        ipv4_address: addresses.ipv4_address,
        ipv6_address: addresses.ipv6_address,
        aliases: config.aliases.unwrap_or_default(),
        mac_address: config
            .mac_address
            .filter(|m| !m.is_empty())
            .map(|m| m.parse().map_err(Error::BadRequest))
            .transpose()?,
    };
    c.connect(network, request).await.map(drop)
}

/// `POST /networks/prune` with Docker's filters: `label`, `label!` and `until` (created
/// before).
pub async fn prune(c: &Controller, filters: &DockerFilters) -> Result<PruneReport> {
    check_keys(filters, &["label", "label!", "until"])?;
    let until = match filters.get("until") {
        [] => None,
        [until] => Some(timestamp_nanos(until, ids::unix_nanos_now())?),
        _ => return Err(Error::BadRequest("the until filter takes one value".into())),
    };
    c.prune_networks_where(|n: &Network| {
        let unwanted = filters.get("label!");
        labels_match(filters.get("label"), &n.labels)
            && (unwanted.is_empty() || !labels_match(unwanted, &n.labels))
            && until.is_none_or(|until| ids::parse_datetime(&n.created).is_some_and(|created| created < until))
    })
    .await
}

/// Docker's create body as berth's; what berth cannot do is refused rather than ignored.
fn network_create(request: DockerNetworkCreate) -> Result<NetworkCreate> {
    if !matches!(request.scope.as_str(), "" | "local") {
        return Err(Error::BadRequest(format!(
            "network scope {:?} is not supported: berth networks are local",
            request.scope
        )));
    }
    if request.ingress || request.config_only || request.config_from.is_some_and(|c| !c.network.is_empty()) {
        return Err(Error::BadRequest("swarm networks (ingress, config-only, config-from) are not supported".into()));
    }
    if request.enable_ipv4 == Some(false) {
        return Err(Error::BadRequest("berth networks always have IPv4: EnableIPv4 false is not supported".into()));
    }
    let ipam = request.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(Error::BadRequest(format!(
            "IPAM driver {:?} is not supported: berth has only the default one",
            ipam.driver
        )));
    }
    if ipam.config.iter().any(|c| !c.auxiliary_addresses.is_empty()) {
        return Err(Error::BadRequest("auxiliary addresses are not supported".into()));
    }
    if let Some(key) = ipam.options.keys().next() {
        return Err(Error::BadRequest(format!("IPAM option {key} is not supported: berth's IPAM takes none")));
    }
    Ok(NetworkCreate {
        name: request.name,
        driver: request.driver,
        enable_ipv6: request.enable_ipv6.unwrap_or(false),
        internal: request.internal,
        attachable: request.attachable,
        ipam_config: ipam.config.into_iter().map(|c| c.config).collect(),
        options: request.options,
        labels: request.labels,
    })
}

/// berth's network view in Docker's shape.
fn docker_network(network: Network) -> DockerNetwork {
    DockerNetwork { network, ingress: false, config_from: Default::default(), config_only: false }
}
