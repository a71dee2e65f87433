//! Latency percentiles: an HDR histogram of microseconds, summarised in
//! milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded, in microseconds (10 minutes); larger
/// samples are clamped to it.
const MAX_MICROS: u64 = 600_000_000;

/// `x` rounded to three decimals (microseconds, when `x` is milliseconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A latency distribution with microsecond resolution (3 significant
/// digits), from 1 µs to 10 minutes.
#[derive(Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latencies").field("count", &self.hist.len()).finish()
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty distribution.
    pub fn new() -> Self {
        Latencies { hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds") }
    }

    /// Records one sample (sub-microsecond samples count as 1 µs).
    pub fn record(&mut self, d: Duration) {
        self.record_micros(d.as_micros().min(u128::from(MAX_MICROS)) as u64);
    }

    /// Records one sample given in microseconds.
    pub fn record_micros(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, MAX_MICROS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.hist.add(&other.hist).expect("histograms with the same bounds merge");
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The `q` quantile (0..=1) in milliseconds, `None` without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| round3(self.hist.value_at_quantile(q) as f64 / 1000.0))
    }

    /// Count, p50, p90, p99, max and mean, `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Some(Summary {
            count: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: round3(self.hist.mean() / 1000.0),
        })
    }
}

/// A latency distribution in brief, milliseconds with microsecond
/// precision. Values are the histogram's (within 0.1 % of the true sample).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Summary {
    /// One readable line: `n=…  p50=… p90=… p99=… max=… ms`.
    pub fn line(&self) -> String {
        format!(
            "n={:<7} p50={:.3} p90={:.3} p99={:.3} max={:.3} mean={:.3} ms",
            self.count, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.mean_ms
        )
    }
}

/// [`Summary::line`], or `no samples`.
pub fn line(summary: Option<Summary>) -> String {
    summary.map_or_else(|| "no samples".to_owned(), |s| s.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_distribution_has_no_percentiles() {
        let l = Latencies::new();
        assert_eq!(l.count(), 0);
        assert_eq!(l.summary(), None);
        assert_eq!(l.quantile_ms(0.5), None);
        assert_eq!(line(None), "no samples");
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let mut l = Latencies::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 100);
        // Three significant digits: within 0.1 %.
        assert!((s.p50_ms - 50.0).abs() <= 0.05, "{s:?}");
        assert!((s.p90_ms - 90.0).abs() <= 0.09, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() <= 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() <= 0.1, "{s:?}");
        assert!((s.mean_ms - 50.5).abs() <= 0.06, "{s:?}");
        assert!(s.line().contains("p50=50.0"), "{}", s.line());
    }

    #[test]
    fn microsecond_resolution_and_merging() {
        let mut a = Latencies::new();
        a.record(Duration::from_micros(87));
        a.record(Duration::from_nanos(10)); // below 1 µs: counted as 1 µs
        let mut b = Latencies::new();
        b.record_micros(250);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile_ms(0.0), Some(0.001));
        assert_eq!(a.quantile_ms(0.5), Some(0.087));
        assert_eq!(a.quantile_ms(1.0), Some(0.25));
    }

    #[test]
    fn huge_samples_are_clamped_not_lost() {
        let mut l = Latencies::new();
        l.record(Duration::from_secs(3600));
        assert_eq!(l.count(), 1);
        assert!(l.quantile_ms(1.0).unwrap() >= 599_000.0);
    }

    #[test]
    fn round3_rounds_to_microseconds() {
        assert_eq!(round3(1.23449), 1.234);
        assert_eq!(round3(1.2345), 1.235);
        assert_eq!(round3(0.0), 0.0);
    }
}
