//! Sandbox routes: list, inspect, create (run and attach), register a process, stop, remove.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use berth_types::{PortsChange, ProcessRegister, Sandbox, SandboxCreate};
use serde::Deserialize;

use super::{ApiError, Body, Caller, Params, Path, Result, Shared};

pub async fn list(State(c): State<Shared>) -> Json<Vec<Sandbox>> {
    Json(c.list_sandboxes().await)
}

pub async fn inspect(State(c): State<Shared>, Path(sandbox): Path<String>) -> Result<Json<Sandbox>> {
    c.inspect_sandbox(&sandbox).await.map(Json).map_err(ApiError)
}

pub async fn create(
    State(c): State<Shared>,
    Body(request): Body<SandboxCreate>,
) -> Result<(StatusCode, Json<Sandbox>)> {
    Ok((StatusCode::CREATED, Json(c.create_sandbox(request).await?)))
}

pub async fn register_process(
    State(c): State<Shared>,
    ConnectInfo(caller): ConnectInfo<Caller>,
    Path(sandbox): Path<String>,
    Body(request): Body<ProcessRegister>,
) -> Result<StatusCode> {
    c.register_process(&sandbox, request, caller.pid).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stop(State(c): State<Shared>, Path(sandbox): Path<String>) -> Result<Json<Sandbox>> {
    c.stop_sandbox(&sandbox).await.map(Json).map_err(ApiError)
}

#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

pub async fn remove(
    State(c): State<Shared>,
    Path(sandbox): Path<String>,
    Params(query): Params<RemoveQuery>,
) -> Result<StatusCode> {
    c.remove_sandbox(&sandbox, query.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn publish_ports(
    State(c): State<Shared>,
    Path(sandbox): Path<String>,
    Body(change): Body<PortsChange>,
) -> Result<Json<Sandbox>> {
    c.publish_ports(&sandbox, change).await.map(Json).map_err(ApiError)
}

pub async fn unpublish_ports(
    State(c): State<Shared>,
    Path(sandbox): Path<String>,
    Body(change): Body<PortsChange>,
) -> Result<Json<Sandbox>> {
    c.unpublish_ports(&sandbox, change).await.map(Json).map_err(ApiError)
}
