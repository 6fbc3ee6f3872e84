//! [`Timings`]: where one request's time went, stage by stage, as the engine measures it, the
//! response cache keeps it with an answer, and `Server-Timing` reports it; and [`Laps`], the
//! parts of `preprocess` a pipeline times itself (decoding, resizing), reported beside them.

use std::time::{Duration, Instant};

use crate::digits;

/// How long each stage of one request took. With several model runs, `queue` and `infer` are
/// those of the slowest run (they run concurrently).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// `Pipeline::preprocess`.
    pub pre: Duration,
    /// The parts of `pre` the pipeline timed itself ([`Inference::with_laps`]), in the order
    /// they were first timed.
    ///
    /// [`Inference::with_laps`]: crate::Inference::with_laps
    pub pre_laps: Laps,
    /// Waiting for an inference worker.
    pub queue: Duration,
    /// The session run (of the whole batch when batched).
    pub infer: Duration,
    /// `Pipeline::postprocess`.
    pub post: Duration,
}

impl Timings {
    /// The `Server-Timing` header value: `pre;dur=0.031, queue;dur=0.004, ...` (milliseconds),
    /// with the pipeline's laps right after `pre` (`pre;dur=43.1, decode;dur=30.2, ...`).
    pub fn server_timing(&self) -> String {
        let mut header = String::with_capacity(80);
        header.push_str("pre;dur=");
        push_millis(&mut header, self.pre);
        for (name, duration) in self.pre_laps.iter() {
            header.push_str(", ");
            push_token(&mut header, name);
            header.push_str(";dur=");
            push_millis(&mut header, duration);
        }
        // The engine's own stages, whose names need no checking.
        let stages = [
            (", queue;dur=", self.queue),
            (", infer;dur=", self.infer),
            (", post;dur=", self.post),
        ];
        for (name, duration) in stages {
            header.push_str(name);
            push_millis(&mut header, duration);
        }
        header
    }
}

/// Parts of a stage timed by the pipeline itself, each under a name of its own: a stopwatch
/// whose [`lap`](Laps::lap) adds the time since the previous lap to a name's total. A stage
/// that treats several items (the images of a batch request) laps each part once per item,
/// and each name reports the sum.
///
/// ```
/// # use oxiserve::timings::Laps;
/// let mut laps = Laps::start();
/// for image in [[0u8; 4], [1u8; 4]] {
///     let decoded = image.to_vec(); // decoding
///     laps.lap("decode");
///     let _resized: Vec<u8> = decoded.iter().map(|b| b / 2).collect();
///     laps.lap("resize");
/// }
/// let names: Vec<&str> = laps.iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["decode", "resize"]);
/// ```
///
/// A name is a `Server-Timing` metric name: letters, digits and `!#$%&'*+-.^_`|~`; any other
/// character is sent as `_`. Names other than `pre`, `queue`, `infer`, `post` and `cache` keep
/// the header readable.
#[derive(Debug, Clone, Default)]
pub struct Laps {
    /// When the running lap began; `None` for laps that were only collected.
    since: Option<Instant>,
    totals: Vec<(&'static str, Duration)>,
}

impl Laps {
    /// A stopwatch whose first lap starts now.
    pub fn start() -> Self {
        Self { since: Some(Instant::now()), totals: Vec::new() }
    }

    /// Adds the time since the previous lap (or the start) to `name`'s total, and starts the
    /// next lap.
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = self.since.map_or(Duration::ZERO, |since| now - since);
        self.since = Some(now);
        self.add(name, took);
    }

    /// Adds `took`, measured elsewhere, to `name`'s total; the running lap goes on.
    pub fn add(&mut self, name: &'static str, took: Duration) {
        match self.totals.iter_mut().find(|(total, _)| *total == name) {
            Some((_, total)) => *total += took,
            None => self.totals.push((name, took)),
        }
    }

    /// Each name with its total, in the order the names were first timed.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Duration)> + '_ {
        self.totals.iter().copied()
    }

    /// Whether nothing was timed.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }
}

/// Appends `name` as a `Server-Timing` token: characters a token may not hold become `_`.
fn push_token(out: &mut String, name: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.chars().all(allowed) {
        out.push_str(name);
    } else {
        out.extend(name.chars().map(|c| if allowed(c) { c } else { '_' }));
    }
}

/// Appends `duration` in milliseconds with three decimals (`0.031`), rounded to the nearest
/// microsecond. Integer formatting: on every response, `{:.3}` of a float cost as much as a
/// small model's run.
pub(crate) fn push_millis(out: &mut String, duration: Duration) {
    // In `u64` (see `digits::push_decimal`); whole seconds are whole microseconds, so only the
    // fraction rounds. Saturates past 584,000 years.
    let fraction = u64::from(duration.subsec_nanos() + 500) / 1000;
    let micros = duration.as_secs().saturating_mul(1_000_000).saturating_add(fraction);
    digits::push_thousandths(out, micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_milliseconds_with_three_decimals() {
        let timings = Timings {
            pre: Duration::from_nanos(31_400),
            pre_laps: Laps::default(),
            queue: Duration::ZERO,
            infer: Duration::from_nanos(1_234_567),
            post: Duration::from_secs(2),
        };
        assert_eq!(
            timings.server_timing(),
            "pre;dur=0.031, queue;dur=0.000, infer;dur=1.235, post;dur=2000.000"
        );
    }

    #[test]
    fn the_rounded_fraction_carries_into_whole_seconds() {
        let millis = |duration| {
            let mut out = String::new();
            push_millis(&mut out, duration);
            out
        };
        assert_eq!(millis(Duration::new(1, 999_999_600)), "2000.000");
        assert_eq!(millis(Duration::new(3, 1_499)), "3000.001");
        assert_eq!(millis(Duration::new(0, 499)), "0.000");
    }

    #[test]
    fn laps_sum_per_name_in_first_seen_order_and_follow_pre_as_tokens() {
        let mut laps = Laps::default();
        laps.add("decode", Duration::from_millis(30));
        laps.add("resize", Duration::from_millis(8));
        laps.add("decode", Duration::from_millis(12));
        laps.add("colour space", Duration::from_micros(500));
        let timings =
            Timings { pre: Duration::from_millis(51), pre_laps: laps, ..Timings::default() };
        assert_eq!(
            timings.server_timing(),
            "pre;dur=51.000, decode;dur=42.000, resize;dur=8.000, colour_space;dur=0.500, \
             queue;dur=0.000, infer;dur=0.000, post;dur=0.000"
        );
    }

    #[test]
    fn a_stopwatch_lap_counts_the_time_since_the_previous_one() {
        let mut laps = Laps::start();
        std::thread::sleep(Duration::from_millis(20));
        laps.lap("slow");
        laps.lap("fast");
        let totals: Vec<_> = laps.iter().collect();
        assert_eq!(totals[0].0, "slow");
        assert!(totals[0].1 >= Duration::from_millis(20), "{totals:?}");
        assert!(totals[1].1 < Duration::from_millis(20), "{totals:?}");
        assert!(!laps.is_empty() && Laps::default().is_empty());
    }
}
