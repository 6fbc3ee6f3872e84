//! [`Timings`]: where one request's time went, stage by stage, as the engine measures it, the
//! response cache keeps it with an answer, and `Server-Timing` reports it.

use std::fmt::Write as _;
use std::time::Duration;

/// How long each stage of one request took. With several model runs, `queue` and `infer` are
/// those of the slowest run (they run concurrently).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// `Pipeline::preprocess`.
    pub pre: Duration,
    /// Waiting for an inference worker.
    pub queue: Duration,
    /// The session run (of the whole batch when batched).
    pub infer: Duration,
    /// `Pipeline::postprocess`.
    pub post: Duration,
}

impl Timings {
    /// The `Server-Timing` header value: `pre;dur=0.031, queue;dur=0.004, ...` (milliseconds).
    pub fn server_timing(&self) -> String {
        let stages =
            [("pre", self.pre), ("queue", self.queue), ("infer", self.infer), ("post", self.post)];
        let mut header = String::with_capacity(80);
        for (name, duration) in stages {
            if !header.is_empty() {
                header.push_str(", ");
            }
            header.push_str(name);
            header.push_str(";dur=");
            push_millis(&mut header, duration);
        }
        header
    }
}

/// Appends `duration` in milliseconds with three decimals (`0.031`), rounded to the nearest
/// microsecond. Integer formatting: on every response, `{:.3}` of a float cost as much as a
/// small model's run.
pub(crate) fn push_millis(out: &mut String, duration: Duration) {
    let micros = (duration.as_nanos() + 500) / 1000;
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_milliseconds_with_three_decimals() {
        let timings = Timings {
            pre: Duration::from_nanos(31_400),
            queue: Duration::ZERO,
            infer: Duration::from_nanos(1_234_567),
            post: Duration::from_secs(2),
        };
        assert_eq!(
            timings.server_timing(),
            "pre;dur=0.031, queue;dur=0.000, infer;dur=1.235, post;dur=2000.000"
        );
    }
}
