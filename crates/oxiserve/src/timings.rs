//! [`Timings`]: where one request's time went, stage by stage, as the engine measures it, the
//! response cache keeps it with an answer, and `Server-Timing` reports it.

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
        [("pre", self.pre), ("queue", self.queue), ("infer", self.infer), ("post", self.post)]
            .iter()
            .map(|(name, duration)| format!("{name};dur={:.3}", duration.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
