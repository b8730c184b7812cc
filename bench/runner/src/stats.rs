//! Percentiles of latency samples.

use std::time::Duration;

pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
}

/// Nearest-rank percentiles.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Summary {
        p50: rank(0.50),
        p99: rank(0.99),
    })
}

pub fn median(samples: &[Duration]) -> Option<Duration> {
    summarize(samples).map(|s| s.p50)
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
