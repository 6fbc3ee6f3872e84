//! The quality signal the service exports: `tabular_scoring_answers_total{model, needs_review}`
//! counts the answers each model took part in by whether they need review (low confidence, or
//! mostly imputed measurements). A rising share of answers that need review is what the alert
//! rule in `deploy/observability/retraining.yml` sends to the training service. Answers from
//! the response cache are not counted again.

use metrics::Counter;

/// The two counters of one model, created (at 0) when its version loads.
#[derive(Debug)]
pub(crate) struct Answers {
    review: Counter,
    clear: Counter,
}

impl Default for Answers {
    /// Counters that count nothing, until [`Answers::of`] replaces them.
    fn default() -> Self {
        Self { review: Counter::noop(), clear: Counter::noop() }
    }
}

impl Answers {
    /// The counters of `model`, exported from now on.
    pub(crate) fn of(model: &str) -> Self {
        let counter = |needs_review: &'static str| {
            let counter = metrics::counter!("tabular_scoring_answers_total",
                "model" => model.to_string(), "needs_review" => needs_review);
            counter.increment(0);
            counter
        };
        Self { review: counter("true"), clear: counter("false") }
    }

    /// Counts one answer.
    pub(crate) fn record(&self, needs_review: bool) {
        if needs_review { &self.review } else { &self.clear }.increment(1);
    }
}
