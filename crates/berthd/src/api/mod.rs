//! berthd's HTTP+JSON API on one socket: berth's own routes under `/v1/` (docs/api.md) and the
//! Docker Engine API subset (docs/docker-api.md, in `docker`), with errors in Docker's
//! `{"message": ...}` form for both. Handlers only parse and call the controller; no logic
//! lives here.

mod docker;
mod networks;
mod sandboxes;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_types::{ErrorBody, Version};

use crate::controller::Controller;
use crate::error::Error;

pub type Shared = Arc<Controller>;

pub fn router(controller: Shared) -> Router {
    let routes = Router::new()
        .route("/v1/version", get(version))
        .route("/v1/networks", get(networks::list).post(networks::create))
        .route("/v1/networks/prune", post(networks::prune))
        .route("/v1/networks/{network}", get(networks::inspect).delete(networks::remove))
        .route("/v1/networks/{network}/connect", post(networks::connect))
        .route("/v1/networks/{network}/disconnect", post(networks::disconnect))
        .route("/v1/sandboxes", get(sandboxes::list).post(sandboxes::create))
        .route("/v1/sandboxes/{sandbox}", get(sandboxes::inspect).delete(sandboxes::remove))
        .route("/v1/sandboxes/{sandbox}/processes", post(sandboxes::register_process))
        .route("/v1/sandboxes/{sandbox}/stop", post(sandboxes::stop))
        .route("/v1/sandboxes/{sandbox}/ports", post(sandboxes::publish_ports))
        .route("/v1/sandboxes/{sandbox}/ports/remove", post(sandboxes::unpublish_ports))
        .route("/v1/firewall/reload", post(reload_firewall))
        .merge(docker::routes())
        .fallback(|method: Method, uri: Uri, _body: axum::body::Bytes| async move {
            // The body is read first: answering before it is sent makes the client's write fail
            // with a broken pipe instead of showing this message.
            Error::NotFound(format!("no such route: {method} {}", uri.path()))
        })
        .with_state(controller);
    // Routing happens after the Docker version prefix is taken off the path.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(docker::strip_api_version))
        .layer(middleware::from_fn(log_request))
}

async fn log_request(request: Request, next: Next) -> Response {
    tracing::debug!(method = %request.method(), uri = %request.uri(), "request");
    next.run(request).await
}

async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: "1".into(),
        pid: std::process::id(),
    })
}

async fn reload_firewall(axum::extract::State(c): axum::extract::State<Shared>) -> Result<StatusCode, Error> {
    c.reload_firewall().await?;
    Ok(StatusCode::NO_CONTENT)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("request failed: {self}");
        }
        (status, Json(ErrorBody { message: self.to_string() })).into_response()
    }
}

/// A JSON body, with a malformed one answered as a 400 in berth's error form.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| Error::BadRequest(format!("invalid request body: {}", e.body_text())))
    }
}
