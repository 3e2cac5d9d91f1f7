//! Docker's event stream: one JSON object per line, for as long as the client listens (or
//! until `until`).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use berth_types::DockerFilters;
use futures::StreamExt;
use serde::Deserialize;

use super::filters;
use crate::api::{Params, Result, Shared};
use crate::docker;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(default, deserialize_with = "filters")]
    filters: DockerFilters,
    since: Option<String>,
    until: Option<String>,
}

pub async fn stream(State(c): State<Shared>, Params(query): Params<EventsQuery>) -> Result<Response> {
    let events = docker::events::stream(&c, query.filters, query.since.as_deref(), query.until.as_deref())?;
    let lines = events.map(|event| {
        let mut line = serde_json::to_vec(&event).expect("an event always serializes");
        line.push(b'\n');
        Ok::<_, Infallible>(line)
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(lines)).into_response())
}
