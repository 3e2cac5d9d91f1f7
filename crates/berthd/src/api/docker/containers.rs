//! Docker's container routes, over berth's sandboxes: list, inspect, stop, remove; create is
//! refused, since berth runs no images.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_types::{ContainerInspect, ContainerSummary, DockerFilters};
use serde::Deserialize;

use super::{filters, flag};
use crate::api::{ApiError, Params, Path, Result, Shared};
use crate::docker;
use berth_core::error::Error;

/// `size` and the like are accepted and ignored; a `limit` of 0 or less is no limit.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default, deserialize_with = "flag")]
    all: bool,
    limit: Option<i64>,
    #[serde(default, deserialize_with = "filters")]
    filters: DockerFilters,
}

/// `v` and `link` are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    #[serde(default, deserialize_with = "flag")]
    force: bool,
}

pub async fn list(State(c): State<Shared>, Params(query): Params<ListQuery>) -> Result<Json<Vec<ContainerSummary>>> {
    let limit = query.limit.and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0);
    docker::containers::list(&c, query.all, limit, &query.filters).await.map(Json).map_err(ApiError)
}

pub async fn inspect(State(c): State<Shared>, Path(container): Path<String>) -> Result<Json<ContainerInspect>> {
    docker::containers::inspect(&c, &container).await.map(Json).map_err(ApiError)
}

/// `t` and `signal` are accepted and ignored: berth's stop sends SIGTERM, then SIGKILL after
/// 10 seconds.
pub async fn stop(State(c): State<Shared>, Path(container): Path<String>) -> Result<StatusCode> {
    c.stop_sandbox(&container).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(c): State<Shared>,
    Path(container): Path<String>,
    Params(query): Params<RemoveQuery>,
) -> Result<StatusCode> {
    c.remove_sandbox(&container, query.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads the (ignored) body before answering, so the client sees the message and not a broken pipe.
pub async fn create(_body: axum::body::Bytes) -> ApiError {
    ApiError(Error::NotImplemented(
        "berth does not run images: start a sandbox with `berth run -d --name NAME [--network NET] [-p PORT] -- COMMAND`, then manage it with docker".into(),
    ))
}
