//! Docker's filter semantics: which keys a route accepts, how a value matches (names by
//! regular expression, ids by prefix, labels by `key` or `key=value`), and Docker's timestamps for
//! `since` and `until`. Matching only: it never reads the state itself.

use std::collections::BTreeMap;

use berth_types::DockerFilters;

use berth_core::error::{Error, Result};
use berth_core::ids;

/// Refuses a filter key the route does not know, as Docker does.
pub(super) fn check_keys(filters: &DockerFilters, accepted: &[&str]) -> Result<()> {
    match filters.0.keys().find(|key| !accepted.contains(&key.as_str())) {
        Some(key) => Err(Error::BadRequest(format!("invalid filter '{key}'"))),
        None => Ok(()),
    }
}

/// Whether a filter given with `values` lets an object through: no values, or one that matches.
pub(super) fn any_matches(values: &[String], matches: impl Fn(&str) -> bool) -> bool {
    values.is_empty() || values.iter().any(|v| matches(v))
}

/// Docker's name filter, each value compiled once per request: a regular expression searched
/// for in the name (so a plain word matches as a substring, `^n1$` only `n1`); a value that does
/// not compile matches only the name it equals, as in Docker. No values let every name through.
pub(super) struct NameFilter(Vec<(String, Option<regex::Regex>)>);

impl NameFilter {
    pub(super) fn new(values: &[String]) -> Self {
        Self(values.iter().map(|v| (v.clone(), regex::Regex::new(v).ok())).collect())
    }

    /// Whether a value matches any of `names` (a container is matched as `web` and `/web`).
    pub(super) fn matches(&self, names: &[&str]) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|(value, re)| {
                names.iter().any(|name| value == name || re.as_ref().is_some_and(|re| re.is_match(name)))
            })
    }
}

/// Whether `labels` have every `key` or `key=value` of `values` (Docker's label filter).
pub(super) fn labels_match(values: &[String], labels: &BTreeMap<String, String>) -> bool {
    values.iter().all(|value| match value.split_once('=') {
        Some((key, wanted)) => labels.get(key).is_some_and(|v| v == wanted),
        None => labels.contains_key(value),
    })
}

/// The value of a boolean filter such as `dangling`: `true`/`1` or `false`/`0`.
pub(super) fn boolean(filters: &DockerFilters, key: &str) -> Result<Option<bool>> {
    match filters.get(key) {
        [] => Ok(None),
        [value] if value == "true" || value == "1" => Ok(Some(true)),
        [value] if value == "false" || value == "0" => Ok(Some(false)),
        values => Err(Error::BadRequest(format!("invalid filter '{key}={}': use true or false", values.join(",")))),
    }
}

/// Unix nanoseconds of a Docker timestamp (`since`, `until`): a Go duration back from `now`
/// (`10m`, `1h30m`), Unix seconds with an optional fraction (`1700000000.000000000`, what the
/// docker CLI sends), or an RFC 3339 date or time (UTC when it has no zone).
pub(super) fn timestamp_nanos(text: &str, now: i64) -> Result<i64> {
    if let Some(ago) = go_duration_nanos(text).filter(|_| text != "0") {
        return Ok(now - ago);
    }
    if let Some(time) = ids::parse_datetime(text) {
        return Ok(time);
    }
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    match (secs.parse::<i64>(), ids::fraction_nanos(fraction)) {
        (Ok(secs), Some(nanos)) => Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos)),
        _ => Err(Error::BadRequest(format!(
            "invalid timestamp {text:?}: use Unix seconds, a duration such as 10m, or a time such as 2026-11-25T12:00:00Z"
        ))),
    }
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`) in nanoseconds.
fn go_duration_nanos(text: &str) -> Option<i64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * unit;
    }
    Some((sign * total) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_regular_expressions() {
        let name_matches = |pattern: &str, name: &str| NameFilter::new(&[pattern.to_owned()]).matches(&[name]);
        assert!(name_matches("^n1$", "n1"));
        assert!(!name_matches("^n1$", "n10"));
        assert!(name_matches("n1", "my-n10"));
        assert!(name_matches("^web-[0-9]+$", "web-42"));
        assert!(name_matches("a(b", "a(b"), "an invalid expression still matches the name it equals");
        assert!(!name_matches("a(b", "xa(bx"));
        assert!(NameFilter::new(&[]).matches(&["anything"]), "no values, no filter");
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn timestamps_read_like_dockers() {
        let now = 1_000_000 * S;
        assert_eq!(timestamp_nanos("10m", now).unwrap(), now - 600 * S);
        assert_eq!(timestamp_nanos("1h30m", now).unwrap(), now - 5400 * S);
        assert_eq!(timestamp_nanos("1.5s", now).unwrap(), now - 3 * S / 2);
        assert_eq!(timestamp_nanos("1700000000.000000001", now).unwrap(), 1_700_000_000 * S + 1);
        assert_eq!(timestamp_nanos("1700000000", now).unwrap(), 1_700_000_000 * S);
        assert_eq!(timestamp_nanos("0", now).unwrap(), 0);
        assert_eq!(timestamp_nanos("1970-01-01T00:00:10Z", now).unwrap(), 10 * S);
        for bad in ["", "soon", "10x", "1.2.3", "2026-13-01"] {
            assert!(timestamp_nanos(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_match_keys_and_values() {
        let labels = BTreeMap::from([("team".to_owned(), "web".to_owned()), ("tier".to_owned(), String::new())]);
        assert!(labels_match(&[], &labels));
        assert!(labels_match(&["team".into()], &labels));
        assert!(labels_match(&["team=web".into(), "tier".into()], &labels));
        assert!(!labels_match(&["team=db".into()], &labels));
        assert!(!labels_match(&["owner".into()], &BTreeMap::new()));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let filters = DockerFilters(BTreeMap::from([("nmae".to_owned(), vec!["x".to_owned()])]));
        let e = check_keys(&filters, &["name"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'nmae'");
        assert!(check_keys(&DockerFilters::default(), &["name"]).is_ok());
    }
}
