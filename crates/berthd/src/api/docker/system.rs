//! Docker's system routes: `/_ping` (with the headers a client negotiates its version from),
//! `/version` and `/info`, and the swarm routes, answered as a Docker daemon that is not in a
//! swarm answers them (503), since berth never is.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use berth_types::{SystemInfo, SystemVersion, DOCKER_API_VERSION};

use crate::api::{ApiError, Shared};
use crate::docker;
use berth_core::error::Error;

/// `GET` and `HEAD /_ping`.
pub async fn ping() -> impl IntoResponse {
    (
        [
            ("Api-Version", DOCKER_API_VERSION),
            ("OSType", "linux"),
            ("Docker-Experimental", "false"),
            ("Swarm", "inactive"),
            ("Cache-Control", "no-cache, no-store, must-revalidate"),
            ("Pragma", "no-cache"),
            (header::CONTENT_TYPE.as_str(), "text/plain; charset=utf-8"),
        ],
        "OK",
    )
}

pub async fn version() -> Json<SystemVersion> {
    Json(docker::system::version())
}

pub async fn info(State(c): State<Shared>) -> Json<SystemInfo> {
    Json(docker::system::info(&c).await)
}

/// `POST /swarm/leave`: Docker's answer on a node outside any swarm (clients tolerate it when
/// leaving with `--force`).
pub async fn swarm_leave(_body: axum::body::Bytes) -> ApiError {
    ApiError(Error::Unavailable("This node is not part of a swarm".into()))
}

/// Every other swarm route (`/swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`).
pub async fn not_in_swarm(_body: axum::body::Bytes) -> ApiError {
    ApiError(Error::Unavailable(
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
    ))
}
