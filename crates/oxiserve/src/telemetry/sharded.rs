//! Counters and bucket histograms that threads record into without sharing a cache line, and
//! their rendering in the Prometheus text format.
//!
//! Every request adds to a few counters (its route's, and a service's own such as
//! tabular-scoring's answers) and records about ten samples (its latency, its stages, each
//! model run's queue time, run time and rows). A counter or histogram that every thread adds
//! to makes the cores pass its cache lines back and forth on each addition. Here each thread
//! adds to its shard of the metric (`crate::shards`), on a line that stays in the adding
//! core's cache: a counter's count, or a histogram's bucket count and sum. A scrape adds the
//! shards up. The text is what `metrics-exporter-prometheus` writes for its own counters and
//! bucket histograms, with the same names, labels and `le` bounds.
//!
//! A scrape reads each count once, without stopping recorders, so a sample recorded during
//! the scrape may show in its bucket and not yet in the sum; the next scrape has both.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::{CounterFn, HistogramFn, Key, KeyName, SharedString};
use metrics_exporter_prometheus::formatting::{
    sanitize_description, sanitize_label_key, sanitize_label_value, sanitize_metric_name,
};

use crate::shards::{self, Counters};

/// One histogram: per shard, a count for each bound (samples at most that bound and above the
/// bound before), one for the samples above every bound, and the sum of the samples.
pub(crate) struct Buckets {
    bounds: &'static [f64],
    counts: Counters,
}

impl Buckets {
    /// An empty histogram with `bounds`, which must be sorted.
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.is_sorted(), "histogram bounds must be sorted");
        // Counts for each bound and above them all, then the sum.
        Self { bounds, counts: Counters::new(bounds.len() + 2) }
    }

    /// The slot holding a shard's sum, as `f64` bits.
    fn sum_slot(&self) -> usize {
        self.bounds.len() + 1
    }

    /// Adds `count` samples of `value` to the calling thread's shard.
    fn add(&self, value: f64, count: u64) {
        // A NaN is above every bound, as the exporter counts it.
        let bucket =
            self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        let shard = shards::mine();
        self.counts.get(shard, bucket).fetch_add(count, Ordering::Relaxed);
        let add = value * count as f64;
        let sum = self.counts.get(shard, self.sum_slot());
        let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + add).to_bits())
        });
    }

    /// The shards added up: cumulative counts for each bound (samples at most that bound), the
    /// count of every sample, and their sum.
    fn snapshot(&self) -> Snapshot {
        let mut cumulative: Vec<u64> =
            (0..=self.bounds.len()).map(|bucket| self.counts.total(bucket)).collect();
        for bucket in 1..cumulative.len() {
            cumulative[bucket] += cumulative[bucket - 1];
        }
        let count = cumulative.pop().expect("one count above the bounds");
        let sum = (0..shards::count())
            .map(|shard| self.counts.get(shard, self.sum_slot()).load(Ordering::Relaxed))
            .map(f64::from_bits)
            .sum();
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

/// One counter: what each shard added, and the highest value it was set to with `absolute`
/// (how `metrics-process` reports the CPU seconds it reads from the system). A counter is
/// either added to or set, never both; its value is the two together.
pub(crate) struct Count {
    added: Counters,
    absolute: AtomicU64,
}

impl Default for Count {
    fn default() -> Self {
        Self { added: Counters::new(1), absolute: AtomicU64::new(0) }
    }
}

impl Count {
    /// The counter's value: the shards' additions and the highest value set.
    fn value(&self) -> u64 {
        self.added.total(0) + self.absolute.load(Ordering::Relaxed)
    }
}

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.added.add(0, value);
    }

    fn absolute(&self, value: u64) {
        self.absolute.fetch_max(value, Ordering::Relaxed);
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

/// Every counter and bucket histogram registered, by name and labels, with the descriptions
/// given for their names.
#[derive(Default)]
pub(crate) struct Sharded {
    counters: RwLock<HashMap<Key, Arc<Count>>>,
    histograms: RwLock<HashMap<Key, Arc<Buckets>>>,
    descriptions: RwLock<HashMap<String, SharedString>>,
}

impl Sharded {
    /// The counter of `key`, registered on first use.
    pub(crate) fn counter(&self, key: &Key) -> metrics::Counter {
        metrics::Counter::from_arc(registered(&self.counters, key, Count::default))
    }

    /// The histogram of `key`, registered with `bounds` on first use.
    pub(crate) fn histogram(&self, key: &Key, bounds: &'static [f64]) -> metrics::Histogram {
        metrics::Histogram::from_arc(registered(&self.histograms, key, || Buckets::new(bounds)))
    }

    /// Keeps `description` for the `# HELP` line of `name`, unless it has one.
    pub(crate) fn describe(&self, name: &KeyName, description: SharedString) {
        let mut descriptions =
            self.descriptions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        descriptions.entry(sanitize_metric_name(name.as_str())).or_insert(description);
    }

    /// Appends every metric to `text` in the Prometheus text format: the counters, then the
    /// histograms, a family per name (sorted), each with its `# HELP` (when described) and
    /// `# TYPE` lines and, per label set (sorted), its value, or its `_bucket` lines, `_sum`
    /// and `_count`.
    pub(crate) fn render(&self, text: &mut String) {
        let descriptions =
            self.descriptions.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let counters = families(&self.counters, Count::value);
        write_families(text, &descriptions, "counter", &counters, |text, name, labels, value| {
            let _ = writeln!(text, "{name}{} {value}", labels(""));
        });
        let histograms = families(&self.histograms, Buckets::snapshot);
        write_families(text, &descriptions, "histogram", &histograms, |text, name, labels, at| {
            for (bound, count) in at.bounds.iter().zip(&at.cumulative) {
                let _ =
                    writeln!(text, "{name}_bucket{} {count}", labels(&format!("le=\"{bound}\"")));
            }
            let _ = writeln!(text, "{name}_bucket{} {}", labels("le=\"+Inf\""), at.count);
            let _ = writeln!(text, "{name}_sum{} {}", labels(""), at.sum);
            let _ = writeln!(text, "{name}_count{} {}", labels(""), at.count);
        });
    }
}

/// The metric of `key` in `known`, made by `make` and kept on first use.
fn registered<M>(
    known: &RwLock<HashMap<Key, Arc<M>>>,
    key: &Key,
    make: impl FnOnce() -> M,
) -> Arc<M> {
    let found = known.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned();
    found.unwrap_or_else(|| {
        let mut known = known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(known.entry(key.clone()).or_insert_with(|| Arc::new(make())))
    })
}

/// One metric at a scrape: its sanitized name, its labels as `name="value"`, and what `read`
/// made of it.
type Family<T> = (String, Vec<String>, T);

/// Every metric in `known`, read with `read`, sorted by name and labels.
fn families<M, T>(known: &RwLock<HashMap<Key, Arc<M>>>, read: impl Fn(&M) -> T) -> Vec<Family<T>> {
    let mut families: Vec<Family<T>> = {
        let known = known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        known
            .iter()
            .map(|(key, metric)| {
                let labels = key
                    .labels()
                    .map(|label| {
                        let (name, value) = (label.key(), label.value());
                        format!("{}=\"{}\"", sanitize_label_key(name), sanitize_label_value(value))
                    })
                    .collect();
                (sanitize_metric_name(key.name()), labels, read(metric))
            })
            .collect()
    };
    families.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    families
}

/// Writes `families` of type `kind` to `text`: `# HELP` and `# TYPE` before the first metric
/// of each name, `write` for each metric (given its name and a way to put its labels and one
/// more in braces), and a blank line after each name's last.
fn write_families<T>(
    text: &mut String,
    descriptions: &HashMap<String, SharedString>,
    kind: &str,
    families: &[Family<T>],
    write: impl Fn(&mut String, &str, &dyn Fn(&str) -> String, &T),
) {
    let mut family: Option<&str> = None;
    for (name, labels, value) in families {
        if family != Some(name.as_str()) {
            if family.is_some() {
                text.push('\n');
            }
            family = Some(name);
            if let Some(description) = descriptions.get(name) {
                let _ = writeln!(text, "# HELP {name} {}", sanitize_description(description));
            }
            let _ = writeln!(text, "# TYPE {name} {kind}");
        }
        let joined = labels.join(",");
        let with = |extra: &str| match (joined.is_empty(), extra.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{{{extra}}}"),
            (false, true) => format!("{{{joined}}}"),
            (false, false) => format!("{{{joined},{extra}}}"),
        };
        write(text, name, &with, value);
    }
    if family.is_some() {
        text.push('\n');
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
        let ours = Sharded::default();
        let metadata = Metadata::new("test", metrics::Level::INFO, None);
        let description = "How long a request took.";
        exporter.describe_histogram("test_latency_seconds".into(), None, description.into());
        ours.describe(&"test_latency_seconds".into(), description.into());
        std::thread::scope(|scope| {
            for (thread, route) in ["/a", "/b", "/a"].into_iter().enumerate() {
                let theirs = exporter.register_histogram(&key(route), &metadata);
                let mine = ours.histogram(&key(route), &BOUNDS);
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
    fn renders_the_counters_the_exporter_renders_for_the_same_additions() {
        let exporter = PrometheusBuilder::new().build_recorder();
        let ours = Sharded::default();
        let metadata = Metadata::new("test", metrics::Level::INFO, None);
        let name = "test_requests_total";
        let description = "Requests answered.";
        exporter.describe_counter(name.into(), None, description.into());
        ours.describe(&name.into(), description.into());
        let counter =
            |route: &str| Key::from_parts(name, vec![Label::new("route", route.to_string())]);
        std::thread::scope(|scope| {
            for (thread, route) in ["/a", "/b", "/a"].into_iter().enumerate() {
                let theirs = exporter.register_counter(&counter(route), &metadata);
                let mine = ours.counter(&counter(route));
                scope.spawn(move || {
                    for round in 0..1_000 {
                        theirs.increment(round % 3 + thread as u64);
                        mine.increment(round % 3 + thread as u64);
                    }
                });
            }
        });
        // Set, not added to: as `metrics-process` reports CPU seconds.
        let key = Key::from_name("test_cpu_seconds_total");
        for value in [7, 5] {
            exporter.register_counter(&key, &metadata).absolute(value);
            ours.counter(&key).absolute(value);
        }
        // Exported at 0 before the first addition.
        exporter.register_counter(&counter("/c"), &metadata).increment(0);
        ours.counter(&counter("/c")).increment(0);
        let lines = |text: &str| {
            let mut lines: Vec<String> =
                text.lines().filter(|line| line.contains("test_")).map(str::to_string).collect();
            lines.sort_unstable();
            lines
        };
        let mut text = String::new();
        ours.render(&mut text);
        let expected = exporter.handle().render();
        assert_eq!(lines(&text), lines(&expected), "ours:\n{text}\nexporter:\n{expected}");
        assert!(text.contains("test_requests_total{route=\"/a\"} 3998\n"), "{text}");
        assert!(text.contains("test_cpu_seconds_total 7\n"), "{text}");
    }

    #[test]
    fn keeps_every_sample_that_threads_record_at_once() {
        let ours = Sharded::default();
        let threads = 2 * shards::count() + 1;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let histogram = ours.histogram(&key("/"), &BOUNDS);
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        SAMPLES.iter().for_each(|sample| histogram.record(*sample));
                    }
                });
            }
        });
        let buckets = Arc::clone(&ours.histograms.read().expect("not poisoned")[&key("/")]);
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
        let ours = Sharded::default();
        ours.histogram(&key("/"), &BOUNDS).record(0.5);
        ours.histogram(&key("/"), &BOUNDS).record(0.5);
        let mut text = String::new();
        ours.render(&mut text);
        assert!(text.contains("test_latency_seconds_count{route=\"/\"} 2\n"), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
    }
}
