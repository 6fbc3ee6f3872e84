//! The worker pool behind every model version: a bounded job queue shared by worker threads,
//! each owning one [`Runner`] (an ONNX Runtime session, or a connection to a remote server).
//!
//! A worker takes jobs from the queue, several at a time when they can be batched (see
//! `model::batch`), runs them, and sends each reply on its oneshot channel. Async request
//! handlers therefore never block, concurrent requests never wait on a lock, and a full queue
//! turns into [`Error::Overloaded`] instead of unbounded memory. Dropping the pool closes the
//! queue: workers finish the jobs already queued, then exit and free their runners, which is
//! how an old model version drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::batch::{self, Batcher, Job, Padding, Ran};
use crate::config::RunConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::telemetry::ModelMetrics;
use crate::tensor::{Tensor, Tensors};

/// What runs a model once: owned by one worker thread, so it may be `&mut`.
pub(super) trait Runner: Send + 'static {
    /// Runs the model on `inputs` (one job's, or a batch stacked along the first dimension)
    /// and returns every output. `context` is the request's (the first request's, for a batch).
    fn run(&mut self, inputs: &Tensors, context: &Context) -> Result<Tensors>;
}

/// A pool of runners of one model version behind a bounded job queue.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Sender<Job>,
    label: String,
    stats: Arc<RunStats>,
    metrics: ModelMetrics,
}

/// How many runs the runners made and how many rows they carried: rows per run above one
/// is batching at work.
#[derive(Debug, Default)]
pub struct RunStats {
    runs: AtomicU64,
    rows: AtomicU64,
}

impl RunStats {
    /// Runs so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Rows (requests' first dimensions) run so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn record(&self, rows: usize) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

impl Pool {
    /// Starts one worker thread per runner, batching as `config` and `padding` say.
    pub(super) fn start<R: Runner>(
        manifest: &Manifest,
        runners: Vec<R>,
        config: &RunConfig,
        padding: &Padding,
    ) -> Result<Self> {
        let label = manifest.label();
        let (jobs, queue) = crossbeam_channel::bounded(config.queue_capacity);
        let stats = Arc::new(RunStats::default());
        let batching = &config.batching;
        let batcher = Batcher::new(
            manifest,
            batching.max_batch_size,
            Duration::from_micros(batching.max_delay_us),
        );
        let metrics = ModelMetrics::new(&manifest.name, manifest.version);
        for (index, runner) in runners.into_iter().enumerate() {
            let worker = Worker {
                runner,
                batcher,
                padding: padding.clone(),
                stats: Arc::clone(&stats),
                metrics: metrics.clone(),
            };
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("model-{}-{index}", manifest.name))
                .spawn(move || worker.serve(queue))
                .map_err(|e| Error::io("starting an inference worker", e))?;
        }
        Ok(Self { jobs, label, stats, metrics })
    }

    /// Run counts of this version's runners.
    pub(crate) fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// This version's metric handles.
    pub(crate) fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Runs the model on `inputs` on a free worker.
    pub(crate) async fn infer(&self, inputs: Tensors) -> Result<Ran> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            reply,
            span: tracing::Span::current(),
            context: Context::current(),
            queued_at: Instant::now(),
        };
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => Error::Overloaded,
            TrySendError::Disconnected(_) => self.workers_gone(),
        })?;
        answer.await.map_err(|_| self.workers_gone())?
    }

    fn workers_gone(&self) -> Error {
        Error::Inference { model: self.label.clone(), detail: "inference workers stopped".into() }
    }
}

/// A worker thread's state: its runner and how it batches.
struct Worker<R> {
    runner: R,
    batcher: Batcher,
    padding: Padding,
    stats: Arc<RunStats>,
    metrics: ModelMetrics,
}

impl<R: Runner> Worker<R> {
    /// Takes batches of jobs until the queue closes.
    fn serve(mut self, queue: Receiver<Job>) {
        while let Some(mut jobs) = self.batcher.next(&queue) {
            self.metrics.queue_depth.set(queue.len() as f64);
            // Clients that gave up (deadline or disconnect) while waiting: skip their work.
            jobs.retain(|job| !job.reply.is_closed());
            match jobs.len() {
                0 => {}
                1 => self.answer_alone(jobs.remove(0)),
                _ => self.answer_batch(jobs),
            }
        }
    }

    /// Runs one job on its own.
    fn answer_alone(&mut self, job: Job) {
        let start = Instant::now();
        let result = job.span.in_scope(|| self.run_counted(&job.inputs, &job.context));
        let ran = result.map(|tensors| Ran {
            tensors,
            queued: start - job.queued_at,
            computed: start.elapsed(),
        });
        job.answer(ran);
    }

    /// Runs several jobs as one batch; if the batch cannot be formed or fails, each job runs
    /// alone, so every client gets its own precise answer.
    fn answer_batch(&mut self, jobs: Vec<Job>) {
        let start = Instant::now();
        let outputs = jobs[0].span.clone().in_scope(|| {
            batch::merge(&jobs, &self.padding)
                .and_then(|inputs| self.run_counted(&inputs, &jobs[0].context))
        });
        let computed = start.elapsed();
        match outputs.and_then(|outputs| batch::split(&jobs, &outputs, &self.padding)) {
            Ok(parts) => {
                for (job, tensors) in jobs.into_iter().zip(parts) {
                    let queued = start - job.queued_at;
                    job.answer(Ok(Ran { tensors, queued, computed }));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "batch failed; running its jobs one by one");
                jobs.into_iter().for_each(|job| self.answer_alone(job));
            }
        }
    }

    /// Runs the model, in an `inference` span when the request is traced, and counts the run.
    fn run_counted(&mut self, inputs: &Tensors, context: &Context) -> Result<Tensors> {
        let rows = inputs.values().next().map_or(0, Tensor::rows);
        let outputs = if context.traced {
            tracing::debug_span!("inference", rows).in_scope(|| self.runner.run(inputs, context))?
        } else {
            self.runner.run(inputs, context)?
        };
        self.stats.record(rows);
        self.metrics.batch_rows.record(rows as f64);
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_overloaded_at_once() {
        // A pool whose single queue slot nobody drains.
        let (jobs, queue) = crossbeam_channel::bounded(1);
        let metrics = ModelMetrics::new("m", 1);
        let pool = Pool { jobs, label: "m:1".into(), stats: Arc::default(), metrics };
        let inputs = || Tensors::from([("x".to_string(), Tensor::from(ndarray::arr1(&[1.0f32])))]);
        let first = pool.infer(inputs());
        tokio::pin!(first);
        let waited = tokio::time::timeout(Duration::from_millis(20), first.as_mut()).await;
        assert!(waited.is_err(), "the first job waits in the queue");
        let started = Instant::now();
        assert!(matches!(pool.infer(inputs()).await, Err(Error::Overloaded)));
        assert!(started.elapsed() < Duration::from_millis(100), "rejected without waiting");
        // A job dropped unanswered (its worker gone) fails its request cleanly.
        drop(queue.try_recv().expect("the first job is queued"));
        assert!(matches!(first.await, Err(Error::Inference { .. })));
    }
}
