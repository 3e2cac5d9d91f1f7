//! Docker's system routes: `/_ping` (with the headers a client negotiates its version from),
//! `/version` and `/info`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use berth_types::{SystemInfo, SystemVersion, DOCKER_API_VERSION};

use crate::api::Shared;

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

pub async fn version(State(c): State<Shared>) -> Json<SystemVersion> {
    Json(c.docker_version())
}

pub async fn info(State(c): State<Shared>) -> Json<SystemInfo> {
    Json(c.docker_info().await)
}
