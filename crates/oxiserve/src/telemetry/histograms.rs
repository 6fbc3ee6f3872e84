//! Bucket histograms that threads record into without sharing a cache line, and their
//! rendering in the Prometheus text format.
//!
//! Every request records about ten samples (its latency, its stages, each model run's queue
//! time, run time and rows). A histogram that every thread appends to makes the cores pass its
//! cache lines back and forth on each sample. Here each thread records into a shard of the
//! histogram that it rarely shares (threads take the shards in turn): a sample is one bucket
//! count and the sum, added to a line that stays in the recording core's cache. A scrape adds
//! the shards up. The text is what `metrics-exporter-prometheus` writes for its own bucket
//! histograms, with the same names, labels and `le` bounds.
//!
//! A scrape reads each counter once, without stopping recorders, so a sample recorded during
//! the scrape may show in its bucket and not yet in the sum; the next scrape has both.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use metrics::{HistogramFn, Key, KeyName, SharedString};
use metrics_exporter_prometheus::formatting::{
    sanitize_description, sanitize_label_key, sanitize_label_value, sanitize_metric_name,
};

/// Counters in one cache line (two 64-byte lines: adjacent-line prefetchers pull pairs).
const PER_LINE: usize = 16;

/// One cache line of counters, aligned so that no two shards share one.
#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; PER_LINE]);

/// How many shards each histogram has: four per core, at most 64, so that the runtime's
/// workers and the inference threads seldom share one.
static SHARDS: LazyLock<usize> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores * 4).min(64)
});

/// The next shard a thread takes when it first records.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard in every histogram.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % *SHARDS;
}

/// One histogram: per shard, a count for each bound (samples at most that bound and above the
/// bound before), one for the samples above every bound, and the sum of the samples.
pub(crate) struct Buckets {
    bounds: &'static [f64],
    /// Lines each shard takes.
    lines_per_shard: usize,
    lines: Box<[Line]>,
}

impl Buckets {
    /// An empty histogram with `bounds`, which must be sorted.
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.is_sorted(), "histogram bounds must be sorted");
        // Counts for each bound and above them all, then the sum.
        let lines_per_shard = (bounds.len() + 2).div_ceil(PER_LINE);
        let lines = (0..lines_per_shard * *SHARDS).map(|_| Line::default()).collect();
        Self { bounds, lines_per_shard, lines }
    }

    /// Counter `slot` of `shard`.
    fn slot(&self, shard: usize, slot: usize) -> &AtomicU64 {
        &self.lines[shard * self.lines_per_shard + slot / PER_LINE].0[slot % PER_LINE]
    }

    /// The slot holding a shard's sum, as `f64` bits.
    fn sum_slot(&self) -> usize {
        self.bounds.len() + 1
    }

    /// Adds `count` samples of `value` to the calling thread's shard.
    fn add(&self, value: f64, count: u64) {
        let shard = SHARD.with(|shard| *shard);
        // A NaN is above every bound, as the exporter counts it.
        let bucket =
            self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        self.slot(shard, bucket).fetch_add(count, Ordering::Relaxed);
        let add = value * count as f64;
        let sum = self.slot(shard, self.sum_slot());
        let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + add).to_bits())
        });
    }

    /// The shards added up: cumulative counts for each bound (samples at most that bound), the
    /// count of every sample, and their sum.
    fn snapshot(&self) -> Snapshot {
        let mut cumulative = vec![0_u64; self.bounds.len() + 1];
        let mut sum = 0.0;
        for shard in 0..*SHARDS {
            for (bucket, total) in cumulative.iter_mut().enumerate() {
                *total += self.slot(shard, bucket).load(Ordering::Relaxed);
            }
            sum += f64::from_bits(self.slot(shard, self.sum_slot()).load(Ordering::Relaxed));
        }
        for bucket in 1..cumulative.len() {
            cumulative[bucket] += cumulative[bucket - 1];
        }
        let count = cumulative.pop().expect("one count above the bounds");
        Snapshot { bounds: self.bounds, cumulative, count, sum }
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        self.add(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.add(value, count as u64);
    }
}

/// A histogram's counts at a scrape.
struct Snapshot {
    bounds: &'static [f64],
    /// Samples at most each bound.
    cumulative: Vec<u64>,
    count: u64,
    sum: f64,
}

/// Every bucket histogram registered, by name and labels, with the descriptions given for
/// their names.
#[derive(Default)]
pub(crate) struct Histograms {
    known: RwLock<HashMap<Key, Arc<Buckets>>>,
    descriptions: RwLock<HashMap<String, SharedString>>,
}

impl Histograms {
    /// The histogram of `key`, registered with `bounds` on first use.
    pub(crate) fn register(&self, key: &Key, bounds: &'static [f64]) -> metrics::Histogram {
        let found =
            self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned();
        let buckets = found.unwrap_or_else(|| {
            let mut known = self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(known.entry(key.clone()).or_insert_with(|| Arc::new(Buckets::new(bounds))))
        });
        metrics::Histogram::from_arc(buckets)
    }

    /// Keeps `description` for the `# HELP` line of `name`, unless it has one.
    pub(crate) fn describe(&self, name: &KeyName, description: SharedString) {
        let mut descriptions =
            self.descriptions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        descriptions.entry(sanitize_metric_name(name.as_str())).or_insert(description);
    }

    /// Appends every histogram to `text` in the Prometheus text format: a family per name
    /// (sorted), each with its `# HELP` (when described) and `# TYPE` lines and, per label set
    /// (sorted), its `_bucket` lines, `_sum` and `_count`.
    pub(crate) fn render(&self, text: &mut String) {
        let mut families: Vec<(String, Vec<String>, Snapshot)> = {
            let known = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            known
                .iter()
                .map(|(key, buckets)| {
                    let labels = key
                        .labels()
                        .map(|label| {
                            let (name, value) = (label.key(), label.value());
                            format!(
                                "{}=\"{}\"",
                                sanitize_label_key(name),
                                sanitize_label_value(value)
                            )
                        })
                        .collect();
                    (sanitize_metric_name(key.name()), labels, buckets.snapshot())
                })
                .collect()
        };
        families.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let descriptions =
            self.descriptions.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut family: Option<&str> = None;
        for (name, labels, snapshot) in &families {
            if family != Some(name.as_str()) {
                if family.is_some() {
                    text.push('\n');
                }
                family = Some(name);
                if let Some(description) = descriptions.get(name) {
                    let _ = writeln!(text, "# HELP {name} {}", sanitize_description(description));
                }
                let _ = writeln!(text, "# TYPE {name} histogram");
            }
            let joined = labels.join(",");
            let with = |extra: &str| match (joined.is_empty(), extra.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!("{{{extra}}}"),
                (false, true) => format!("{{{joined}}}"),
                (false, false) => format!("{{{joined},{extra}}}"),
            };
            for (bound, count) in snapshot.bounds.iter().zip(&snapshot.cumulative) {
                let _ = writeln!(text, "{name}_bucket{} {count}", with(&format!("le=\"{bound}\"")));
            }
            let _ = writeln!(text, "{name}_bucket{} {}", with("le=\"+Inf\""), snapshot.count);
            let _ = writeln!(text, "{name}_sum{} {}", with(""), snapshot.sum);
            let _ = writeln!(text, "{name}_count{} {}", with(""), snapshot.count);
        }
        if family.is_some() {
            text.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics::{Key, Label, Metadata, Recorder};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    use super::*;

    const BOUNDS: [f64; 4] = [0.25, 0.5, 1.0, 2.5];

    /// Samples whose sums are exact in any order of addition.
    const SAMPLES: [f64; 6] = [0.125, 0.25, 0.375, 1.0, 2.0, 4.0];

    fn key(route: &str) -> Key {
        Key::from_parts("test_latency_seconds", vec![Label::new("route", route.to_string())])
    }

    /// The lines of the `test_latency_seconds` family in `text`, sorted.
    fn family(text: &str) -> Vec<&str> {
        let mut lines: Vec<&str> =
            text.lines().filter(|line| line.contains("test_latency_seconds")).collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn renders_what_the_exporter_renders_for_the_same_samples() {
        let exporter = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("test_latency_seconds".into()), &BOUNDS)
            .expect("bounds are given")
            .build_recorder();
        let ours = Histograms::default();
        let metadata = Metadata::new("test", metrics::Level::INFO, None);
        let description = "How long a request took.";
        exporter.describe_histogram("test_latency_seconds".into(), None, description.into());
        ours.describe(&"test_latency_seconds".into(), description.into());
        std::thread::scope(|scope| {
            for (thread, route) in ["/a", "/b", "/a"].into_iter().enumerate() {
                let theirs = exporter.register_histogram(&key(route), &metadata);
                let mine = ours.register(&key(route), &BOUNDS);
                scope.spawn(move || {
                    for (index, sample) in SAMPLES.iter().enumerate() {
                        let times = index + thread;
                        theirs.record_many(*sample, times);
                        mine.record_many(*sample, times);
                        theirs.record(*sample);
                        mine.record(*sample);
                    }
                });
            }
        });
        let mut text = String::new();
        ours.render(&mut text);
        let expected = exporter.handle().render();
        assert_eq!(family(&text), family(&expected), "ours:\n{text}\nexporter:\n{expected}");
        assert!(text.contains("test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} "));
        assert!(text.ends_with("\n\n"), "a blank line closes the family, as the exporter's do");
    }

    #[test]
    fn keeps_every_sample_that_threads_record_at_once() {
        let ours = Histograms::default();
        let threads = 2 * *SHARDS + 1;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let histogram = ours.register(&key("/"), &BOUNDS);
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        SAMPLES.iter().for_each(|sample| histogram.record(*sample));
                    }
                });
            }
        });
        let buckets = Arc::clone(&ours.known.read().expect("not poisoned")[&key("/")]);
        let snapshot = buckets.snapshot();
        let rounds = threads as u64 * 1_000;
        // At most 0.25: 0.125 and 0.25; at most 0.5: and 0.375; at most 1: and 1; at most 2.5:
        // and 2; above: 4.
        assert_eq!(snapshot.cumulative, [2 * rounds, 3 * rounds, 4 * rounds, 5 * rounds]);
        assert_eq!(snapshot.count, 6 * rounds);
        assert_eq!(snapshot.sum, 7.75 * rounds as f64);
    }

    #[test]
    fn a_key_registered_twice_is_one_histogram() {
        let ours = Histograms::default();
        ours.register(&key("/"), &BOUNDS).record(0.5);
        ours.register(&key("/"), &BOUNDS).record(0.5);
        let mut text = String::new();
        ours.render(&mut text);
        assert!(text.contains("test_latency_seconds_count{route=\"/\"} 2\n"), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
    }
}
