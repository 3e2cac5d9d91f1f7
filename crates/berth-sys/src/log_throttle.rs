//! Rate limiting for warnings about conditions that can repeat thousands of times a second (a
//! full UDP flow table, accept failing for lack of descriptors): one line per interval that
//! says how many occurrences it stands for. It counts; the caller writes the line.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last_report: Option<Instant>,
    unreported: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last_report: None, unreported: 0 }
    }

    /// Counts one occurrence. Returns how many occurrences the caller's line should report
    /// (this one included) when a line is due, or None while the interval has not passed.
    pub fn occurrence(&mut self) -> Option<u64> {
        self.unreported += 1;
        let now = Instant::now();
        if self.last_report.is_some_and(|last| now.duration_since(last) < self.interval) {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_interval_counts_the_rest() {
        let mut throttle = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(throttle.occurrence(), Some(1));
        for _ in 0..99 {
            assert_eq!(throttle.occurrence(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.occurrence(), Some(100));
        assert_eq!(throttle.occurrence(), None);
    }
}
