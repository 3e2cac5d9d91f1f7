//! Network routes: list, inspect, create, remove, prune, connect, disconnect.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_types::{Network, NetworkConnect, NetworkCreate, NetworkDisconnect, PruneReport, Sandbox};

use super::{ApiError, Body, Path, Result, Shared};

pub async fn list(State(c): State<Shared>) -> Json<Vec<Network>> {
    Json(c.list_networks().await)
}

pub async fn inspect(State(c): State<Shared>, Path(network): Path<String>) -> Result<Json<Network>> {
    c.inspect_network(&network).await.map(Json).map_err(ApiError)
}

pub async fn create(
    State(c): State<Shared>,
    Body(request): Body<NetworkCreate>,
) -> Result<(StatusCode, Json<Network>)> {
    Ok((StatusCode::CREATED, Json(c.create_network(request).await?)))
}

pub async fn remove(State(c): State<Shared>, Path(network): Path<String>) -> Result<StatusCode> {
    c.remove_network(&network).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(State(c): State<Shared>) -> Result<Json<PruneReport>> {
    c.prune_networks().await.map(Json).map_err(ApiError)
}

pub async fn connect(
    State(c): State<Shared>,
    Path(network): Path<String>,
    Body(request): Body<NetworkConnect>,
) -> Result<Json<Sandbox>> {
    c.connect(&network, request).await.map(Json).map_err(ApiError)
}

pub async fn disconnect(
    State(c): State<Shared>,
    Path(network): Path<String>,
    Body(request): Body<NetworkDisconnect>,
) -> Result<Json<Sandbox>> {
    c.disconnect(&network, request).await.map(Json).map_err(ApiError)
}
