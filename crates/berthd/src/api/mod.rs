//! berthd's HTTP+JSON API on one socket: berth's own routes under `/v1/` (docs/api.md) and the
//! Docker Engine API subset (docs/docker-api.md, in `docker`), with errors in Docker's
//! `{"message": ...}` form for both. Handlers only parse and call the controller; no logic
//! lives here.

mod docker;
mod networks;
mod sandboxes;

use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use berth_types::{ErrorBody, Version};
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use berth_core::controller::Controller;
use berth_core::error::Error;

pub type Shared = Arc<Controller>;

/// Whether this berthd is a rootless child, for `GET /v1/version`.
#[derive(Debug, Clone, Copy)]
pub struct Rootless(pub bool);

pub fn router(controller: Shared, rootless: Rootless) -> Router {
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
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError(Error::MethodNotAllowed(format!("method {method} is not allowed on {}", uri.path())))
        })
        .fallback(|method: Method, uri: Uri, _body: axum::body::Bytes| async move {
            // The body is read first: answering before it is sent makes the client's write fail
            // with a broken pipe instead of showing this message.
            ApiError(Error::NotFound(format!("no such route: {method} {}", uri.path())))
        })
        .with_state(controller);
    // Routing happens after the Docker version prefix is taken off the path.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(docker::strip_api_version))
        .layer(middleware::from_fn(log_request))
        .layer(axum::Extension(rootless))
}

async fn log_request(request: Request, next: Next) -> Response {
    tracing::debug!(method = %request.method(), uri = %request.uri(), "request");
    next.run(request).await
}

async fn version(axum::Extension(Rootless(rootless)): axum::Extension<Rootless>) -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: "1".into(),
        pid: std::process::id(),
        rootless,
    })
}

async fn reload_firewall(axum::extract::State(c): axum::extract::State<Shared>) -> Result<StatusCode> {
    c.reload_firewall().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A core error as the HTTP answer it is: Docker's `{"message": ...}` with the status of its
/// kind. (A type of this crate, since the core's error knows nothing of HTTP.)
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// What a handler answers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("request failed: {}", self.0);
        }
        (status, Json(ErrorBody { message: self.0.to_string() })).into_response()
    }
}

/// Who is on the other end of an API connection, from the socket's credentials (SO_PEERCRED):
/// its pid in berthd's pid namespace, `None` when the kernel cannot say.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub pid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let pid = stream.io().peer_cred().ok().and_then(|cred| cred.pid()).and_then(|pid| u32::try_from(pid).ok());
        Self { pid }
    }
}

/// A JSON body, with a malformed one answered as a 400 in berth's error form.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| ApiError(Error::BadRequest(format!("invalid request body: {}", e.body_text()))))
    }
}

/// Query parameters, with a malformed one answered as a 400 in berth's (and Docker's) error form.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(v)| Params(v)).map_err(|e| {
            let cause = std::error::Error::source(&e).map_or_else(|| e.body_text(), ToString::to_string);
            ApiError(Error::BadRequest(format!("invalid query: {cause}")))
        })
    }
}

/// Path parameters, with a malformed one (not UTF-8, say) answered as a 400 in berth's error form.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError(Error::BadRequest(format!("invalid path: {}", e.body_text()))))
    }
}
