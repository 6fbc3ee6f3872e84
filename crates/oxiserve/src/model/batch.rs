//! Dynamic batching: the jobs waiting for one model version are run as one batch.
//!
//! A worker takes the first job from the queue, then keeps taking jobs until the batch holds
//! `max_batch_size` rows or `max_delay` has passed since the first one (with a zero delay it
//! takes only what is already waiting, which adds no latency). Inputs are stacked along the
//! first dimension, the model runs once, and every output is split back by each job's rows.
//! Models whose first dimension is not dynamic run one job at a time.
//!
//! Variable-length inputs (token sequences) stack only with a [`Padding`], which the
//! pipeline supplies per model: the inputs it names are padded along dimension 1 to the
//! longest in the batch, and the outputs it names are cut back to each job's own length.
//! Without one, jobs whose shapes differ cannot be stacked and run one by one. Padding is
//! work the model does for nothing (and attention's cost grows with the square of the
//! length), so the jobs gathered are sorted by length and run in groups of similar lengths
//! ([`by_length`]): one long text no longer makes thirty short ones run at its length. The
//! worker that gathered them runs the first group and hands the others to the version's
//! workers (itself included), so that an idle one takes the next group at once.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use super::selection::OutputSet;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::tensor::{Tensor, Tensors};

/// One inference request on its way to a worker.
pub(super) struct Job {
    /// Named inputs, all with the same first dimension.
    pub(super) inputs: Tensors,
    /// The outputs it asks for.
    pub(super) outputs: OutputSet,
    /// Where the outputs go.
    pub(super) reply: oneshot::Sender<Result<Ran>>,
    /// The request's span, entered while the job runs.
    pub(super) span: tracing::Span,
    /// The request's context.
    pub(super) context: Arc<Context>,
    /// When the job entered the queue.
    pub(super) queued_at: Instant,
    /// Its count among the version's work in progress, until it is answered or dropped.
    pub(super) claim: Claim,
}

/// One unit of a model version's work in progress: a job queued or running, or a run made on
/// a request's own thread. The count goes back down when the claim is dropped, whatever
/// becomes of the work (answered, skipped, or dropped with its queue).
#[derive(Debug)]
pub(super) struct Claim<W: Deref<Target = AtomicUsize> = Arc<AtomicUsize>>(W);

impl Claim {
    /// Adds one to `work`.
    pub(super) fn new(work: &Arc<AtomicUsize>) -> Self {
        work.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(work))
    }
}

impl<'a> Claim<&'a AtomicUsize> {
    /// Claims `work` only if it is zero: the version is idle. The claim borrows the count, for
    /// a run on the request's own thread that ends before the borrow does: no `Arc` count to
    /// raise and lower, on a line every thread that runs the version touches.
    pub(super) fn idle(work: &'a AtomicUsize) -> Option<Self> {
        work.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some(Self(work))
    }
}

impl<W: Deref<Target = AtomicUsize>> Drop for Claim<W> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Job {
    /// Sends the job's answer. Its hold on the request's span and its claim go first, so that
    /// the span can end as soon as the request does, and the version counts as idle for the
    /// client's next request.
    pub(super) fn answer(self, ran: Result<Ran>) {
        let Job { reply, span, claim, .. } = self;
        drop(span);
        drop(claim);
        // A closed reply channel only means the client went away meanwhile.
        let _ = reply.send(ran);
    }
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

    /// The most rows a batch holds.
    pub(super) fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// The next batch: blocks for a first job, then gathers more. For a padded model (when
    /// `groups` is given), a group another worker split off a batch it gathered
    /// ([`by_length`]) comes first and runs as it is; else the first job of `queue`, whichever
    /// of the two comes first. `None` once the queue is closed and empty and no group waits.
    pub(super) fn next(
        &self,
        queue: &Receiver<Job>,
        groups: Option<&Receiver<Vec<Job>>>,
    ) -> Option<Vec<Job>> {
        let first = match groups {
            None => queue.recv().ok()?,
            Some(groups) => {
                if let Ok(group) = groups.try_recv() {
                    return Some(group);
                }
                crossbeam_channel::select! {
                    recv(groups) -> group => return group.ok(),
                    recv(queue) -> job => match job {
                        Ok(job) => job,
                        // Closed: a group sent meanwhile still runs.
                        Err(_) => return groups.try_recv().ok(),
                    },
                }
            }
        };
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

/// How a model's variable-length inputs are padded so that requests of different lengths
/// share a batch, and how its outputs are cut back. Lengths run along dimension 1 (the
/// sequence dimension of `[batch, sequence, ...]` tensors).
///
/// ```
/// # use oxiserve::Padding;
/// // Token ids and attention mask padded with 0; per-token outputs cut back.
/// let padding = Padding::new()
///     .input("input_ids", 0.0)
///     .input("attention_mask", 0.0)
///     .output("token_embeddings");
/// ```
///
/// Padding is only correct for models that ignore padded positions (through an attention
/// mask, for instance); the parity tests of a service should run mixed-length batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Padding {
    inputs: BTreeMap<String, f64>,
    outputs: BTreeSet<String>,
}

impl Padding {
    /// No padding: inputs of different lengths run in separate batches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pads input `name` with `value` (converted to its element type).
    pub fn input(mut self, name: impl Into<String>, value: f64) -> Self {
        self.inputs.insert(name.into(), value);
        self
    }

    /// Cuts output `name` back to each request's own length.
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.outputs.insert(name.into());
        self
    }

    /// Checks that every tensor named exists in `manifest` with a dynamic dimension 1.
    pub(super) fn check(&self, manifest: &Manifest) -> Result<(), String> {
        let named = self.inputs.keys().map(|n| ("input", n, &manifest.inputs));
        let named = named.chain(self.outputs.iter().map(|n| ("output", n, &manifest.outputs)));
        for (kind, name, specs) in named {
            let spec = specs.iter().find(|spec| &spec.name == name);
            match spec.map(|spec| spec.shape.get(1)) {
                Some(Some(-1)) => {}
                Some(_) => {
                    return Err(format!("padded {kind} `{name}` has no dynamic dimension 1"));
                }
                None => {
                    return Err(format!("padding names {kind} `{name}`, which the model lacks"));
                }
            }
        }
        Ok(())
    }

    /// Whether it pads any input.
    pub(super) fn pads(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// The length of a job: dimension 1 of its first padded input (`None` without padding).
    fn length(&self, inputs: &Tensors) -> Option<usize> {
        let name = self.inputs.keys().next()?;
        inputs.get(name)?.shape().get(1).copied()
    }
}

/// How much longer than the shortest job of a padded batch its longest may be: a quarter of
/// the shortest's length, plus this many positions (so that short texts of a few tokens'
/// difference still share a run, whose fixed cost is then spread over them).
const LENGTH_SLACK: usize = 8;

/// The jobs gathered for one run of a model with a [`Padding`], split into the batches they
/// should run as: sorted by length (shortest first) and cut wherever the next job is longer
/// than a quarter plus [`LENGTH_SLACK`] positions over its batch's shortest.
pub(super) fn by_length(jobs: Vec<Job>, padding: &Padding) -> Vec<Vec<Job>> {
    similar_lengths(jobs, |job| padding.length(&job.inputs).unwrap_or_default())
}

/// `items` sorted by `length` and cut into runs of similar lengths, as [`by_length`] says.
fn similar_lengths<T>(mut items: Vec<T>, length: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    items.sort_by_key(&length);
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let fits = groups.last().and_then(|group| group.first()).is_some_and(|shortest| {
            let shortest = length(shortest);
            length(&item) <= shortest + shortest / 4 + LENGTH_SLACK
        });
        match groups.last_mut() {
            Some(group) if fits => group.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
}

/// The jobs' inputs stacked into one batch, input by input, padded per `padding`.
pub(super) fn merge(jobs: &[Job], padding: &Padding) -> Result<Tensors> {
    let first = jobs.first().ok_or_else(|| Error::internal("an empty batch"))?;
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
            let stacked = match padding.inputs.get(name) {
                Some(&value) => {
                    let longest = parts.iter().filter_map(|t| t.shape().get(1)).max();
                    let length = longest.copied().unwrap_or_default();
                    let padded = parts
                        .iter()
                        .map(|part| part.pad_axis(1, length, value))
                        .collect::<Result<Vec<_>>>()?;
                    Tensor::concat(&padded.iter().collect::<Vec<_>>())?
                }
                None => Tensor::concat(&parts)?,
            };
            Ok((name.clone(), stacked))
        })
        .collect()
}

/// Splits a batch's outputs back into one set per job, by the jobs' row counts, cutting
/// padded outputs back to each job's own length.
pub(super) fn split(jobs: &[Job], outputs: &Tensors, padding: &Padding) -> Result<Vec<Tensors>> {
    let rows: Vec<usize> = jobs.iter().map(Job::rows).collect();
    let mut parts = split_rows(outputs, &rows)?;
    for (job, part) in jobs.iter().zip(&mut parts) {
        let Some(length) = padding.length(&job.inputs) else { continue };
        for name in &padding.outputs {
            let Some(tensor) = part.get_mut(name) else { continue };
            if tensor.shape().get(1).is_none_or(|&padded| padded < length) {
                return Err(Error::pipeline(format!(
                    "output `{name}` of shape {:?} is shorter than its input ({length})",
                    tensor.shape()
                )));
            }
            *tensor = tensor.slice_axis(1, 0, length);
        }
    }
    Ok(parts)
}

/// Splits a batch's outputs back into one set per job, by the jobs' row counts.
fn split_rows(outputs: &Tensors, rows: &[usize]) -> Result<Vec<Tensors>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_jobs_run_in_groups_of_similar_lengths_shortest_first() {
        let lengths = vec![200, 9, 30, 12, 1, 256, 40, 14, 31];
        let groups = similar_lengths(lengths, |&length| length);
        // 1 takes up to 9; 12 up to 23; 30 up to 45; 200 up to 258.
        assert_eq!(groups, [vec![1, 9], vec![12, 14], vec![30, 31, 40], vec![200, 256]]);
        assert_eq!(similar_lengths(Vec::<usize>::new(), |&l| l), Vec::<Vec<usize>>::new());
        assert_eq!(similar_lengths(vec![5; 40], |&l| l), [vec![5; 40]], "equal lengths stay one");
    }
}
