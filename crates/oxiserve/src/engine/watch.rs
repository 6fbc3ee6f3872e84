//! The automatic rollback's judgement: a version adopted from the store is watched for a
//! window after it starts serving, its requests compared with its predecessor's record (see
//! [`WatchConfig`]). The engine checks its watches from the poll loop and rolls back the
//! versions judged worse (`versions`).

use std::time::{Duration, Instant};

use crate::config::WatchConfig;
use crate::model::health::HealthSnapshot;

/// One new version under watch.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The version watched.
    pub(crate) version: u64,
    /// The version it replaced.
    previous: u64,
    /// The predecessor's record up to the swap.
    baseline: HealthSnapshot,
    /// The watched version's record when it started serving.
    start: HealthSnapshot,
    until: Instant,
    settings: WatchConfig,
}

/// What a look at a watched version decides.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not yet decided: keep watching.
    Wait,
    /// The window ended without a regression: the watch ends.
    Keep,
    /// Worse than its predecessor, for this reason.
    RollBack(String),
}

impl Watch {
    /// A watch of `version`, which started serving now with the record `start`, in place of
    /// `previous`, whose record was `baseline`.
    pub(crate) fn new(
        version: u64,
        start: HealthSnapshot,
        previous: u64,
        baseline: HealthSnapshot,
        settings: &WatchConfig,
    ) -> Self {
        let until = Instant::now() + settings.window;
        Self { version, previous, baseline, start, until, settings: settings.clone() }
    }

    /// Judges the watched version on its record `now`, at `at`. Failures are judged as soon
    /// as `min_requests` were seen, so that a broken version stops serving quickly; latency
    /// at the end of the window, over all of it, so that the first cold runs after a swap do
    /// not count for more than their share.
    pub(crate) fn judge(&self, now: &HealthSnapshot, at: Instant) -> Verdict {
        let seen = now.since(&self.start);
        let settings = &self.settings;
        if seen.requests < settings.min_requests {
            return if at >= self.until { Verdict::Keep } else { Verdict::Wait };
        }
        let (new, old) = (seen.failure_ratio(), self.baseline.failure_ratio());
        if new > old + settings.error_margin {
            return Verdict::RollBack(format!(
                "{:.1}% of its {} requests failed, against {:.1}% for v{} (margin {:.1} points)",
                new * 100.0,
                seen.requests,
                old * 100.0,
                self.previous,
                settings.error_margin * 100.0
            ));
        }
        if at < self.until {
            return Verdict::Wait;
        }
        let judged = self.baseline.requests >= settings.min_requests;
        match (judged, seen.p99(), self.baseline.p99()) {
            (true, Some(new), Some(old))
                if new.as_secs_f64() > old.as_secs_f64() * settings.latency_factor =>
            {
                Verdict::RollBack(format!(
                    "its p99 latency was {}, against {} for v{} (at most {}x)",
                    millis(new),
                    millis(old),
                    self.previous,
                    settings.latency_factor
                ))
            }
            _ => Verdict::Keep,
        }
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::health::Health;

    fn settings() -> WatchConfig {
        WatchConfig { min_requests: 10, window: Duration::from_secs(60), ..WatchConfig::default() }
    }

    /// A record of `ok` requests that took `took` and `failed` that failed.
    fn record(ok: u64, took: Duration, failed: u64) -> HealthSnapshot {
        let health = Health::default();
        (0..ok).for_each(|_| health.succeeded(took));
        (0..failed).for_each(|_| health.failed());
        health.snapshot()
    }

    fn watch(baseline: HealthSnapshot) -> Watch {
        Watch::new(2, record(0, Duration::ZERO, 0), 1, baseline, &settings())
    }

    #[test]
    fn more_failures_than_the_margin_roll_back_once_enough_requests_are_seen() {
        let watch = watch(record(100, Duration::from_millis(1), 1));
        let now = Instant::now();
        // 3 of 9 failed: too few requests to judge.
        assert_eq!(watch.judge(&record(6, Duration::from_millis(1), 3), now), Verdict::Wait);
        let Verdict::RollBack(reason) = watch.judge(&record(7, Duration::from_millis(1), 3), now)
        else {
            panic!("30% failures against 1% roll back")
        };
        assert!(
            reason.contains("30.0% of its 10 requests failed, against 1.0% for v1"),
            "{reason}"
        );
        // Within the margin: kept at the end of the window.
        let healthy = record(95, Duration::from_millis(1), 5);
        assert_eq!(watch.judge(&healthy, now), Verdict::Wait);
        assert_eq!(watch.judge(&healthy, now + Duration::from_secs(61)), Verdict::Keep);
    }

    #[test]
    fn a_p99_beyond_the_factor_rolls_back_at_the_end_of_the_window() {
        let now = Instant::now();
        let end = now + Duration::from_secs(61);
        let watch = watch(record(100, Duration::from_millis(1), 0));
        let slow = record(100, Duration::from_millis(5), 0);
        assert_eq!(watch.judge(&slow, now), Verdict::Wait, "latency waits for the whole window");
        let Verdict::RollBack(reason) = watch.judge(&slow, end) else {
            panic!("5x the p99 rolls back")
        };
        assert!(
            reason.contains("p99 latency") && reason.contains("for v1 (at most 2x)"),
            "{reason}"
        );
        assert_eq!(watch.judge(&record(100, Duration::from_micros(1500), 0), end), Verdict::Keep);
        // A predecessor seen too little is no yardstick for latency.
        let unjudged = super::tests::watch(record(5, Duration::from_millis(1), 0));
        assert_eq!(unjudged.judge(&slow, end), Verdict::Keep);
    }

    #[test]
    fn only_requests_since_the_swap_count() {
        let start = record(0, Duration::ZERO, 40);
        let watch = Watch::new(2, start, 1, record(100, Duration::from_millis(1), 0), &settings());
        let now = record(20, Duration::from_millis(1), 40);
        assert_eq!(watch.judge(&now, Instant::now()), Verdict::Wait, "20 ok since the swap");
    }
}
