//! Identifiers: 64-hex ids like Docker's, generated sandbox names (adjective_noun), and the
//! RFC 3339 times records carry, written and read back.

use rand::seq::IndexedRandom;
use rand::Rng;

/// A fresh 64-character hex id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet",
    "sharp", "steady", "swift", "tidy", "vivid", "witty", "zesty",
];
const NOUNS: &[&str] = &[
    "anchor",
    "barge",
    "buoy",
    "cutter",
    "dinghy",
    "ferry",
    "harbor",
    "jetty",
    "keel",
    "lighthouse",
    "mooring",
    "pier",
    "quay",
    "rudder",
    "schooner",
    "sloop",
    "tug",
    "wharf",
    "yacht",
    "hull",
];

/// A random `adjective_noun` name; the caller retries on a clash.
pub fn random_name() -> String {
    let mut rng = rand::rng();
    format!("{}_{}", ADJECTIVES.choose(&mut rng).expect("non-empty"), NOUNS.choose(&mut rng).expect("non-empty"))
}

/// RFC 3339 time of now, UTC, second precision.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Nanoseconds since the Unix epoch, now.
pub fn unix_nanos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Unix nanoseconds of an RFC 3339 time (`2026-11-25T12:42:20Z`, `...20.5+01:00`), of a time
/// without a zone or seconds (`2026-11-25T12:42`, read as UTC), or of a date (`2026-11-25`).
pub fn parse_datetime(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', 't']).unwrap_or((text, ""));
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date_parts.next()??, date_parts.next()??, date_parts.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (clock, offset) = match time.strip_suffix(['Z', 'z']) {
        Some(clock) => (clock, 0),
        None => match time.rfind(['+', '-']) {
            Some(at) => {
                let sign = if time.as_bytes()[at] == b'-' { -1 } else { 1 };
                let (h, min) = time[at + 1..].split_once(':')?;
                (&time[..at], sign * (h.parse::<i64>().ok()? * 3600 + min.parse::<i64>().ok()? * 60))
            }
            None => (time, 0),
        },
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.split(':').filter(|p| !p.is_empty()).map(|p| p.parse::<i64>().ok());
    let h = clock_parts.next().unwrap_or(Some(0))?;
    let min = clock_parts.next().unwrap_or(Some(0))?;
    let sec = clock_parts.next().unwrap_or(Some(0))?;
    if clock_parts.next().is_some() || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    let nanos = fraction_nanos(fraction)?;
    let secs = days_from_civil(y, m as u32, d as u32) * 86_400 + h * 3600 + min * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Nanoseconds of the digits after a decimal point (`5` is 500000000); `None` if not digits.
pub fn fraction_nanos(digits: &str) -> Option<i64> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded: String = digits.chars().chain(std::iter::repeat('0')).take(9).collect();
    padded.parse().ok()
}

/// A Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = i64::from((153 * ((m + 9) % 12) + 2) / 5 + d - 1);
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for days in [-1, 0, 59, 11_016, 20_782, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn datetimes_parse() {
        let second = 1_000_000_000;
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_datetime("2026-11-25T12:42:20Z"), Some((20_782 * 86_400 + 12 * 3600 + 42 * 60 + 20) * second));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:01.5Z"), Some(second + second / 2));
        assert_eq!(parse_datetime("1970-01-02"), Some(86_400 * second));
        assert_eq!(parse_datetime("1970-01-01T00:01"), Some(60 * second));
        let parsed_now = parse_datetime(&now_rfc3339()).unwrap() / second;
        assert!((parsed_now - unix_nanos_now() / second).abs() <= 1);
        for bad in ["", "1970", "1970-13-01", "1970-01-01T25:00:00Z", "1970-01-01Tx", "10m"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
