//! Docker's event stream over the event bus: the kept events since `since`, then each new one
//! as commands publish it, until `until`, through Docker's event filters (`type`, `event`,
//! `container`, `network`, `scope`, `label`; other keys name objects berth has none of and are
//! ignored, as Docker ignores what no event has).

use std::collections::VecDeque;
use std::time::Duration;

use berth_types::{DockerFilters, Event};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use berth_core::controller::{Controller, Subscription};
use berth_core::error::Result;
use berth_core::ids;

use super::filters::{any_matches, labels_match, timestamp_nanos};

/// `GET /events`: the matching events from `since` (only new ones without it) until `until`
/// (endless without it).
pub fn stream(
    c: &Controller,
    filters: DockerFilters,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<impl Stream<Item = Event> + Send + 'static> {
    let now = ids::unix_nanos_now();
    let parse = |text: Option<&str>| text.filter(|t| !t.is_empty()).map(|t| timestamp_nanos(t, now)).transpose();
    let (since, until) = (parse(since)?, parse(until)?);
    let Subscription { kept, receiver, closed } = c.subscribe_events();
    let past: VecDeque<Event> = match since {
        Some(since) => kept
            .into_iter()
            .filter(|e| e.time_nano >= since && until.is_none_or(|u| e.time_nano <= u) && event_matches(&filters, e))
            .collect(),
        None => VecDeque::new(),
    };
    let deadline = until.map(|u| Instant::now() + Duration::from_nanos(u64::try_from(u - now).unwrap_or(0)));
    let stream = futures::stream::unfold((past, receiver, closed), move |(mut past, mut receiver, mut closed)| {
        let filters = filters.clone();
        async move {
            if let Some(event) = past.pop_front() {
                return Some((event, (past, receiver, closed)));
            }
            loop {
                let next = tokio::select! {
                    next = receiver.recv() => next,
                    _ = sleep_until(deadline) => return None,
                    _ = closed.wait_for(|closed| *closed) => return None,
                };
                match next {
                    Ok(event) if event_matches(&filters, &event) => return Some((event, (past, receiver, closed))),
                    Ok(_) => {}
                    Err(RecvError::Lagged(lost)) => {
                        tracing::warn!("an event subscriber fell behind and lost {lost} events")
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(stream)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Docker's event filter: `type`, `event` and `scope` exactly; `container` and `network` by the
/// actor's id or name, exactly or as a prefix, on events of that type only; `label` on the
/// actor's attributes.
fn event_matches(filters: &DockerFilters, event: &Event) -> bool {
    let name = event.actor.attributes.get("name").map_or("", String::as_str);
    let actor = |kind: &str| {
        any_matches(filters.get(kind), |v| event.kind == kind && (event.actor.id.starts_with(v) || name.starts_with(v)))
    };
    any_matches(filters.get("type"), |v| v == event.kind)
        && any_matches(filters.get("event"), |v| v == event.action)
        && any_matches(filters.get("scope"), |v| v == event.scope)
        && actor("container")
        && actor("network")
        && labels_match(filters.get("label"), &event.actor.attributes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_types::EventActor;

    use super::*;

    fn event(kind: &str, action: &str, name: &str) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: EventActor {
                id: "abcdef".into(),
                attributes: BTreeMap::from([("name".to_owned(), name.to_owned())]),
            },
            scope: "local".into(),
            time: 0,
            time_nano: 0,
        }
    }

    fn filters(pairs: &[(&str, &str)]) -> DockerFilters {
        let mut map = BTreeMap::<String, Vec<String>>::new();
        for (k, v) in pairs {
            map.entry((*k).into()).or_default().push((*v).into());
        }
        DockerFilters(map)
    }

    #[test]
    fn events_filter_like_dockers() {
        let created = event("network", "create", "n1");
        assert!(event_matches(&filters(&[]), &created));
        assert!(event_matches(&filters(&[("type", "network")]), &created));
        assert!(!event_matches(&filters(&[("type", "container")]), &created));
        assert!(event_matches(&filters(&[("event", "create"), ("event", "destroy")]), &created));
        assert!(!event_matches(&filters(&[("event", "connect")]), &created));
        assert!(event_matches(&filters(&[("network", "n1")]), &created));
        assert!(event_matches(&filters(&[("network", "abc")]), &created));
        assert!(!event_matches(&filters(&[("network", "n2")]), &created));
        assert!(!event_matches(&filters(&[("container", "n1")]), &created));
        assert!(event_matches(&filters(&[("label", "name=n1")]), &created));
    }
}
