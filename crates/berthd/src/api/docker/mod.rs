//! The Docker Engine API subset (docs/docker-api.md) on berthd's socket. Docker's routes are
//! served with and without a `/v1.NN` prefix; berth's own start with `/v1/`, so the two never
//! collide. The prefix is checked (1.41 up to the version berthd announces) and taken off
//! before routing. Handlers only parse Docker's query parameters and bodies and call the
//! controller's Docker commands.

mod containers;
mod events;
mod networks;
mod system;

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use berth_types::{DockerFilters, DOCKER_API_VERSION, DOCKER_MIN_API_VERSION};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::Shared;
use crate::api::ApiError;
use berth_core::error::Error;

/// Routes of swarm mode, which a Docker daemon outside a swarm answers with 503.
const SWARM_ROUTES: [&str; 6] = ["/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"];

pub fn routes() -> Router<Shared> {
    let routes = Router::new()
        .route("/_ping", get(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::stream))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{network}", get(networks::inspect).delete(super::networks::remove))
        .route("/networks/{network}/connect", post(networks::connect))
        .route("/networks/{network}/disconnect", post(networks::disconnect))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{container}", delete(containers::remove))
        .route("/containers/{container}/json", get(containers::inspect))
        .route("/containers/{container}/stop", post(containers::stop))
        .route("/swarm/leave", post(system::swarm_leave));
    SWARM_ROUTES.iter().fold(routes, |routes, prefix| {
        routes.route(prefix, any(system::not_in_swarm)).route(&format!("{prefix}/{{*rest}}"), any(system::not_in_swarm))
    })
}

/// Most of a refused request's body read before answering.
const REFUSED_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Takes a `/v1.NN` prefix off the path, so Docker's routes serve every version berthd accepts;
/// a version outside them is refused in Docker's words.
pub async fn strip_api_version(mut request: Request, next: Next) -> Response {
    let uri = request.uri();
    let Some((version, rest)) = versioned_path(uri.path()) else {
        return next.run(request).await;
    };
    if let Err(e) = check_api_version(version) {
        // Read the body first, so the client gets this answer rather than a broken pipe.
        let _ = axum::body::to_bytes(request.into_body(), REFUSED_BODY_LIMIT).await;
        return ApiError(e).into_response();
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    match Uri::try_from(path_and_query) {
        Ok(stripped) => *request.uri_mut() = stripped,
        Err(e) => return ApiError(Error::BadRequest(format!("invalid request path: {e}"))).into_response(),
    }
    next.run(request).await
}

/// `/v1.47/networks` → (`1.47`, `/networks`); None for paths without a Docker version, berth's
/// `/v1/...` among them.
fn versioned_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/v")?;
    let (version, rest) = match after.find('/') {
        Some(at) => (&after[..at], &after[at..]),
        None => (after, "/"),
    };
    let is_version = version.contains('.') && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    is_version.then_some((version, rest))
}

fn check_api_version(version: &str) -> Result<(), Error> {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    let asked = parse(version).ok_or_else(|| Error::BadRequest(format!("invalid API version {version:?}")))?;
    if parse(DOCKER_MIN_API_VERSION).is_some_and(|min| asked < min) {
        return Err(Error::BadRequest(format!(
            "client version {version} is too old. Minimum supported API version is {DOCKER_MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if parse(DOCKER_API_VERSION).is_some_and(|max| asked > max) {
        return Err(Error::BadRequest(format!(
            "client version {version} is too new. Maximum supported API version is {DOCKER_API_VERSION}"
        )));
    }
    Ok(())
}

/// Docker's boolean query values: empty, `0`, `no`, `false` and `none` are false, the rest true.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?.to_ascii_lowercase();
    Ok(!matches!(text.as_str(), "" | "0" | "no" | "false" | "none"))
}

/// Docker's `filters` query parameter: JSON, empty for none.
fn filters<'de, D: Deserializer<'de>>(d: D) -> Result<DockerFilters, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(DockerFilters::default());
    }
    serde_json::from_str(&text).map_err(|e| D::Error::custom(format!("invalid filters {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;
    use serde::de::DeserializeOwned;

    #[test]
    fn versions_are_taken_off_docker_paths_only() {
        assert_eq!(versioned_path("/v1.47/networks"), Some(("1.47", "/networks")));
        assert_eq!(versioned_path("/v1.41/containers/web/json"), Some(("1.41", "/containers/web/json")));
        assert_eq!(versioned_path("/v1.47"), Some(("1.47", "/")));
        assert_eq!(versioned_path("/v1/networks"), None);
        assert_eq!(versioned_path("/version"), None);
        assert_eq!(versioned_path("/networks"), None);
    }

    #[test]
    fn versions_outside_the_range_are_refused() {
        assert!(check_api_version("1.41").is_ok());
        assert!(check_api_version(DOCKER_API_VERSION).is_ok());
        let old = check_api_version("1.40").unwrap_err().to_string();
        assert_eq!(old, "client version 1.40 is too old. Minimum supported API version is 1.41, please upgrade your client to a newer version");
        assert!(check_api_version("1.5").is_err());
        assert!(check_api_version("1.99").unwrap_err().to_string().contains("too new"));
        assert!(check_api_version("1.2.3").is_err());
    }

    #[test]
    fn flags_read_like_dockers() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(default, deserialize_with = "flag")]
            force: bool,
        }
        for (text, expected) in
            [("force=1", true), ("force=True", true), ("force=0", false), ("force=False", false), ("", false)]
        {
            let q: Q = query(text);
            assert_eq!(q.force, expected, "{text}");
        }
    }

    fn query<T: DeserializeOwned>(text: &str) -> T {
        let uri: Uri = format!("/x?{text}").parse().unwrap();
        Query::<T>::try_from_uri(&uri).unwrap().0
    }
}
