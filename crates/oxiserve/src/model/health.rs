//! How a loaded version is doing with real requests: how many it took part in, how many of
//! those failed through a fault of the server (a 500, not a client's mistake nor an overload),
//! and the latency of the ones that succeeded, in buckets fine enough for a p99. The automatic
//! rollback compares a new version's record with its predecessor's.

use std::time::Duration;

use crate::shards::Counters;

/// Latency buckets: bucket `i` holds requests that took up to `FIRST_BOUND_US * GROWTH^i` µs;
/// 10 µs to about 20 s in steps of 20%.
const BUCKETS: usize = 80;
const FIRST_BOUND_US: f64 = 10.0;
const GROWTH: f64 = 1.2;

/// The running record of one version, updated on the request path: counted in per-thread
/// shards (`crate::shards`), since every request adds to it.
#[derive(Debug)]
pub(crate) struct Health {
    /// Requests, failures, then each latency bucket.
    counts: Counters,
}

/// A copy of a [`Health`] at one moment; the difference of two is what happened between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthSnapshot {
    /// Requests the version took part in.
    pub(crate) requests: u64,
    /// Of those, the ones that failed through a fault of the server.
    pub(crate) failures: u64,
    latency: Vec<u64>,
}

impl Default for Health {
    fn default() -> Self {
        Self { counts: Counters::new(Self::LATENCY + BUCKETS) }
    }
}

impl Health {
    /// The slot counting requests.
    const REQUESTS: usize = 0;
    /// The slot counting failures.
    const FAILURES: usize = 1;
    /// The slot of the first latency bucket.
    const LATENCY: usize = 2;

    /// Records a request that succeeded in `took`.
    pub(crate) fn succeeded(&self, took: Duration) {
        self.counts.add(Self::REQUESTS, 1);
        self.counts.add(Self::LATENCY + bucket(took), 1);
    }

    /// Records a request that failed through a fault of the server.
    pub(crate) fn failed(&self) {
        self.counts.add(Self::REQUESTS, 1);
        self.counts.add(Self::FAILURES, 1);
    }

    /// The record so far.
    pub(crate) fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            requests: self.counts.total(Self::REQUESTS),
            failures: self.counts.total(Self::FAILURES),
            latency: (0..BUCKETS).map(|index| self.counts.total(Self::LATENCY + index)).collect(),
        }
    }
}

impl HealthSnapshot {
    /// The share of requests that failed; 0 with no requests.
    pub(crate) fn failure_ratio(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.failures as f64 / self.requests as f64 }
    }

    /// The 99th percentile of the successful requests' latency (the upper bound of its
    /// bucket, so at most 20% above the true value); `None` with no successful request.
    pub(crate) fn p99(&self) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let index = self.latency.iter().position(|&count| {
            seen += count;
            seen >= rank
        })?;
        Some(Duration::from_secs_f64(upper_bound_us(index) / 1e6))
    }

    /// What happened since `earlier`, a snapshot of the same record.
    pub(crate) fn since(&self, earlier: &HealthSnapshot) -> HealthSnapshot {
        HealthSnapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            failures: self.failures.saturating_sub(earlier.failures),
            latency: self
                .latency
                .iter()
                .zip(&earlier.latency)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }
}

fn upper_bound_us(index: usize) -> f64 {
    FIRST_BOUND_US * GROWTH.powi(index as i32)
}

/// The bucket of a request that took `took`: the first whose upper bound holds it.
fn bucket(took: Duration) -> usize {
    let micros = took.as_secs_f64() * 1e6;
    if micros <= FIRST_BOUND_US {
        return 0;
    }
    let index = (micros / FIRST_BOUND_US).ln() / GROWTH.ln();
    (index.ceil() as usize).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_the_bound_of_the_bucket_holding_the_99th_percentile() {
        let health = Health::default();
        assert_eq!(health.snapshot().p99(), None);
        for _ in 0..99 {
            health.succeeded(Duration::from_micros(100));
        }
        health.succeeded(Duration::from_millis(50));
        let p99 = health.snapshot().p99().unwrap();
        assert!(p99 >= Duration::from_micros(100) && p99 < Duration::from_micros(120), "{p99:?}");
        for _ in 0..5 {
            health.succeeded(Duration::from_millis(50));
        }
        let p99 = health.snapshot().p99().unwrap();
        assert!(p99 >= Duration::from_millis(50) && p99 < Duration::from_millis(60), "{p99:?}");
        // Beyond the last bucket: counted in it.
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(bucket(Duration::ZERO), 0);
    }

    #[test]
    fn a_difference_of_snapshots_is_what_happened_between_them() {
        let health = Health::default();
        health.succeeded(Duration::from_millis(1));
        health.failed();
        let earlier = health.snapshot();
        assert_eq!((earlier.requests, earlier.failures), (2, 1));
        assert!((earlier.failure_ratio() - 0.5).abs() < 1e-9);
        health.failed();
        health.failed();
        health.succeeded(Duration::from_micros(20));
        let since = health.snapshot().since(&earlier);
        assert_eq!((since.requests, since.failures), (3, 2));
        assert!(since.p99().unwrap() < Duration::from_micros(30), "the old 1 ms is not in it");
    }
}
