//! What the benchmark binaries share: percentiles of timed samples and what /proc tells about a
//! process (resident memory, open files). Nothing here times or loads anything itself.

use std::time::Duration;

/// The `p` quantile (0..=1) of `sorted` samples, nearest rank; `Duration::MAX` when there are
/// none, which [`ms`] and [`us`] turn into NaN.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::MAX;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds of `d`, NaN for the "no samples" marker of [`percentile`].
pub fn ms(d: Duration) -> f64 {
    if d == Duration::MAX {
        f64::NAN
    } else {
        d.as_secs_f64() * 1000.0
    }
}

/// Microseconds of `d`, NaN for the "no samples" marker of [`percentile`].
pub fn us(d: Duration) -> f64 {
    ms(d) * 1000.0
}

/// A field of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`), if the process is there.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()
}

/// How many files process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert!(ms(percentile(&[], 0.5)).is_nan());
    }

    #[test]
    fn reads_its_own_memory_and_files() {
        assert!(status_kib(std::process::id(), "VmRSS:").is_some_and(|kib| kib > 0));
        assert!(open_fds(std::process::id()) >= 3);
    }
}
