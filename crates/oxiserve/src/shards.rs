//! Values split by thread: every thread writes to a shard of its own, on cache lines no other
//! shard uses. [`Counters`] are the common case, which a reader adds up; `Models` keeps a copy
//! of the model set per shard, so that the read lock a request takes is its own core's.
//!
//! A counter that every request adds to, shared by the runtime's workers and the inference
//! threads, makes the cores pass its cache line back and forth on each addition: with two
//! workers that cost tabular-scoring about 2 µs a request in histograms alone
//! (`docs/benchmarks.md`). Here an addition stays in the adding core's cache. Threads take
//! the shards in turn as they first add; there are four per core, so that the few threads
//! that serve requests seldom share one (and when they do, the additions are still atomic).
//!
//! A reader loads each counter once, without stopping the threads that add: a total is exact
//! once they stop, and a few additions behind while they run.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters in one line (two 64-byte lines: adjacent-line prefetchers fetch pairs).
const PER_LINE: usize = 16;

/// `T` alone on its cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// How many shards a split value has: four per core, at most 64.
static SHARDS: LazyLock<usize> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores * 4).min(64)
});

/// The next shard a thread takes when it first asks for one.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The calling thread's shard in every split value.
    static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % *SHARDS;
}

/// How many shards every split value has.
pub(crate) fn count() -> usize {
    *SHARDS
}

/// The calling thread's shard, below [`count`].
pub(crate) fn mine() -> usize {
    MINE.with(|shard| *shard)
}

/// A few `u64` counters (slots), split by thread.
pub(crate) struct Counters {
    slots: usize,
    /// Lines each shard takes.
    lines_per_shard: usize,
    lines: Box<[Padded<[AtomicU64; PER_LINE]>]>,
}

impl Counters {
    /// `slots` counters at 0.
    pub(crate) fn new(slots: usize) -> Self {
        let lines_per_shard = slots.div_ceil(PER_LINE);
        let lines = (0..lines_per_shard * count()).map(|_| Padded::default()).collect();
        Self { slots, lines_per_shard, lines }
    }

    /// Counter `slot` of `shard`.
    pub(crate) fn get(&self, shard: usize, slot: usize) -> &AtomicU64 {
        debug_assert!(slot < self.slots, "slot {slot} of {}", self.slots);
        &self.lines[shard * self.lines_per_shard + slot / PER_LINE].0[slot % PER_LINE]
    }

    /// Adds `value` to `slot` in the calling thread's shard.
    pub(crate) fn add(&self, slot: usize, value: u64) {
        self.get(mine(), slot).fetch_add(value, Ordering::Relaxed);
    }

    /// `slot` added up over the shards.
    pub(crate) fn total(&self, slot: usize) -> u64 {
        (0..count()).map(|shard| self.get(shard, slot).load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let totals: Vec<u64> = (0..self.slots).map(|slot| self.total(slot)).collect();
        f.debug_tuple("Counters").field(&totals).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_keep_what_every_thread_added() {
        let counters = Counters::new(PER_LINE + 2);
        let threads = 2 * count() + 1;
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let counters = &counters;
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        counters.add(0, 1);
                        counters.add(PER_LINE + 1, thread as u64);
                    }
                });
            }
        });
        assert_eq!(counters.total(0), threads as u64 * 1_000);
        let spread = (0..threads as u64).sum::<u64>() * 1_000;
        assert_eq!(counters.total(PER_LINE + 1), spread, "a slot on a shard's second line");
        assert_eq!(counters.total(1), 0);
    }

    #[test]
    fn shards_do_not_share_lines() {
        let counters = Counters::new(3);
        let address = |shard| counters.get(shard, 0) as *const AtomicU64 as usize;
        for shard in 1..count() {
            assert!(address(shard) - address(shard - 1) >= 128);
        }
        assert_eq!(address(0) % 128, 0);
    }
}
