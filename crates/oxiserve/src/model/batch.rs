//! Dynamic batching: the jobs waiting for one model version are run as one batch.
//!
//! A worker takes the first job from the queue, then keeps taking jobs until the batch holds
//! `max_batch_size` rows or `max_delay` has passed since the first one (with a zero delay it
//! takes only what is already waiting, which adds no latency). Inputs are stacked along the
//! first dimension, the model runs once, and every output is split back by each job's rows.
//! Models whose first dimension is not dynamic run one job at a time.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::model::manifest::Manifest;
use crate::tensor::{Tensor, Tensors};

/// One inference request on its way to a worker.
pub(super) struct Job {
    /// Named inputs, all with the same first dimension.
    pub(super) inputs: Tensors,
    /// Where the outputs go.
    pub(super) reply: oneshot::Sender<Result<Ran>>,
    /// The request's span, entered while the job runs.
    pub(super) span: tracing::Span,
    /// When the job entered the queue.
    pub(super) queued_at: Instant,
}

/// A job's outputs and where its time went.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The outputs.
    pub(crate) tensors: Tensors,
    /// Time spent waiting in the queue.
    pub(crate) queued: Duration,
    /// Time the session run took (the whole batch's run when batched).
    pub(crate) computed: Duration,
}

impl Job {
    /// The rows this job adds to a batch.
    pub(super) fn rows(&self) -> usize {
        self.inputs.values().next().map_or(0, Tensor::rows)
    }
}

/// How a worker gathers jobs into batches.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batcher {
    max_rows: usize,
    max_delay: Duration,
}

impl Batcher {
    /// Batches of up to `max_rows` rows gathered for up to `max_delay`, or one job at a time
    /// when the manifest's first dimensions are not all dynamic.
    pub(super) fn new(manifest: &Manifest, max_rows: usize, max_delay: Duration) -> Self {
        let dynamic = |shape: &[i64]| shape.first() == Some(&-1);
        let batchable =
            manifest.inputs.iter().chain(&manifest.outputs).all(|spec| dynamic(&spec.shape));
        Self { max_rows: if batchable { max_rows.max(1) } else { 1 }, max_delay }
    }

    /// The next batch: blocks for a first job, then gathers more. `None` once the queue is
    /// closed and empty.
    pub(super) fn next(&self, queue: &Receiver<Job>) -> Option<Vec<Job>> {
        let first = queue.recv().ok()?;
        let mut rows = first.rows();
        let mut jobs = vec![first];
        let deadline = Instant::now() + self.max_delay;
        while rows < self.max_rows {
            let next = match queue.try_recv() {
                Ok(job) => job,
                Err(_) if self.max_delay.is_zero() => break,
                Err(_) => match queue.recv_deadline(deadline) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            };
            rows += next.rows();
            jobs.push(next);
        }
        Some(jobs)
    }
}

/// The jobs' inputs stacked into one batch, input by input.
pub(super) fn merge(jobs: &[Job]) -> Result<Tensors> {
    let first = jobs.first().ok_or_else(|| Error::pipeline("an empty batch"))?;
    first
        .inputs
        .keys()
        .map(|name| {
            let parts = jobs
                .iter()
                .map(|job| {
                    job.inputs
                        .get(name)
                        .ok_or_else(|| Error::pipeline(format!("a job lacks `{name}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((name.clone(), Tensor::concat(&parts)?))
        })
        .collect()
}

/// Splits a batch's outputs back into one set per job, by the jobs' row counts.
pub(super) fn split(outputs: &Tensors, rows: &[usize]) -> Result<Vec<Tensors>> {
    let total: usize = rows.iter().sum();
    if let Some((name, tensor)) = outputs.iter().find(|(_, t)| t.rows() != total) {
        return Err(Error::pipeline(format!(
            "output `{name}` has {} rows for a batch of {total}",
            tensor.rows()
        )));
    }
    let mut start = 0;
    Ok(rows
        .iter()
        .map(|&count| {
            let part = outputs
                .iter()
                .map(|(name, t)| (name.clone(), t.rows_range(start, start + count)))
                .collect();
            start += count;
            part
        })
        .collect())
}
