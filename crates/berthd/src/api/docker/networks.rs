//! Docker's network routes: list, inspect, create, connect, disconnect, prune. (Removing is
//! berth's own handler.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_types::{
    DockerFilters, DockerNetwork, DockerNetworkConnect, DockerNetworkCreate, NetworkCreateResponse, NetworkDisconnect,
    PruneReport,
};
use serde::Deserialize;

use super::filters;
use crate::api::{ApiError, Body, Params, Path, Result, Shared};
use crate::docker;

#[derive(Debug, Deserialize)]
pub struct FiltersQuery {
    #[serde(default, deserialize_with = "filters")]
    filters: DockerFilters,
}

/// `verbose` (swarm only) is accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct InspectQuery {
    #[serde(default)]
    scope: String,
}

pub async fn list(State(c): State<Shared>, Params(query): Params<FiltersQuery>) -> Result<Json<Vec<DockerNetwork>>> {
    docker::networks::list(&c, &query.filters).await.map(Json).map_err(ApiError)
}

pub async fn inspect(
    State(c): State<Shared>,
    Path(network): Path<String>,
    Params(query): Params<InspectQuery>,
) -> Result<Json<DockerNetwork>> {
    docker::networks::inspect(&c, &network, &query.scope).await.map(Json).map_err(ApiError)
}

pub async fn create(
    State(c): State<Shared>,
    Body(request): Body<DockerNetworkCreate>,
) -> Result<(StatusCode, Json<NetworkCreateResponse>)> {
    Ok((StatusCode::CREATED, Json(docker::networks::create(&c, request).await?)))
}

pub async fn connect(
    State(c): State<Shared>,
    Path(network): Path<String>,
    Body(request): Body<DockerNetworkConnect>,
) -> Result<StatusCode> {
    docker::networks::connect(&c, &network, request).await?;
    Ok(StatusCode::OK)
}

/// `Force` is accepted and ignored: disconnecting never needs it.
pub async fn disconnect(
    State(c): State<Shared>,
    Path(network): Path<String>,
    Body(request): Body<NetworkDisconnect>,
) -> Result<StatusCode> {
    c.disconnect(&network, request).await?;
    Ok(StatusCode::OK)
}

pub async fn prune(State(c): State<Shared>, Params(query): Params<FiltersQuery>) -> Result<Json<PruneReport>> {
    docker::networks::prune(&c, &query.filters).await.map(Json).map_err(ApiError)
}
