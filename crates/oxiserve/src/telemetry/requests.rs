//! Request counters and latency histograms of a transport (HTTP, gRPC), by a few label values
//! that repeat (route, method, status), registered on first use and kept, so that a request
//! records with a hash lookup and no allocation. Each thread looks them up in a map of its
//! shard (`crate::shards`), so that requests on different cores do not share a lock's word.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::RwLock;

use metrics::{Counter, Histogram, Label};

use crate::shards::{self, Padded};

/// `<prefix>_requests_total` and `<prefix>_request_duration_seconds` of one transport.
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    requests: &'static str,
    duration: &'static str,
    label_names: &'static [&'static str],
    /// Per shard, by the hash of the label values; the values are kept to tell colliding sets
    /// apart.
    known: Box<[Padded<RwLock<ByHash>>]>,
}

/// The handles of the label sets a shard has seen, by the hash of their values.
type ByHash = HashMap<u64, Vec<Known>, Fnv>;

/// FNV-1a, the hash of label values and of their hashes in [`ByHash`]. The values are a few
/// short strings from a bounded set (routes the router matched, methods, status classes),
/// never chosen freely by a client, so SipHash's defence against chosen collisions buys
/// nothing here, and it cost a request some 330 instructions.
#[derive(Debug, Default, Clone, Copy)]
struct Fnv;

/// The state of an [`Fnv`] hash.
struct FnvHasher(u64);

impl BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The handles of one set of label values.
#[derive(Debug)]
struct Known {
    values: Box<[Box<str>]>,
    requests: Counter,
    duration: Histogram,
}

impl RequestMetrics {
    /// The metrics named `requests` (a counter) and `duration` (a histogram in seconds), with
    /// one label per entry of `label_names`.
    pub(crate) fn new(
        requests: &'static str,
        duration: &'static str,
        label_names: &'static [&'static str],
    ) -> Self {
        Self {
            requests,
            duration,
            label_names,
            known: (0..shards::count()).map(|_| Padded::default()).collect(),
        }
    }

    /// Counts one request with the label `values` (one per label name, in order) that took
    /// `seconds`. Values must come from a bounded set (matched routes, never raw URIs).
    pub(crate) fn record(&self, values: &[&str], seconds: f64) {
        debug_assert_eq!(values.len(), self.label_names.len(), "one value per label");
        let hash = Fnv.hash_one(values);
        let same =
            |known: &&Known| known.values.iter().map(AsRef::as_ref).eq(values.iter().copied());
        let shard = &self.known[shards::mine()].0;
        {
            let known = shard.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(found) = known.get(&hash).and_then(|list| list.iter().find(same)) {
                found.requests.increment(1);
                found.duration.record(seconds);
                return;
            }
        }
        let labels: Vec<Label> = self
            .label_names
            .iter()
            .zip(values)
            .map(|(name, value)| Label::new(*name, value.to_string()))
            .collect();
        let found = Known {
            values: values.iter().map(|value| Box::from(*value)).collect(),
            requests: metrics::counter!(self.requests, labels.clone()),
            duration: metrics::histogram!(self.duration, labels),
        };
        found.requests.increment(1);
        found.duration.record(seconds);
        let mut known = shard.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = known.entry(hash).or_default();
        if !list.iter().any(|k| same(&k)) {
            list.push(found);
        }
    }
}
