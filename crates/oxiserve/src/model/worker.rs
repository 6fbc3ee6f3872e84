//! The worker pool behind every model version: a bounded job queue shared by worker threads,
//! and the version's runners (ONNX Runtime sessions, or connections to a remote server), each
//! behind its own lock.
//!
//! A worker takes jobs from the queue, several at a time when they can be batched (see
//! `model::batch`), runs them on its runner, and sends each reply on its oneshot channel.
//! Async request handlers therefore never wait on a slow model, concurrent requests never
//! wait on a lock, and a full queue turns into [`Error::Overloaded`] instead of unbounded
//! memory. Dropping the pool closes the queue: workers finish the jobs already queued, then
//! exit and free their runners, which is how an old model version drains.
//!
//! Handing a job to an idle worker thread costs tens of microseconds (two channel operations
//! and two thread wake-ups), more than a small model's run. So a request runs the model on
//! its own thread instead ("inline") when the runner allows it (a local session, not a
//! network call), no batching delay is set (`max_delay_us` asks for batches), the version has
//! no other work in progress (nothing queued or running, inline or not), and its recent runs
//! took less than `inline_max_us`, and the workers' last batch held one job. A small model then
//! costs a request only its run while the service is lightly loaded; under load, requests
//! meet work in progress and queue, so batches form (which beats running alone once requests
//! arrive faster than runs end), and while batches of several jobs form, even a request that
//! finds the version idle for an instant between two batches queues; a slow model always
//! goes through the queue, off the async runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::batch::{self, Batcher, Claim, Job, Padding, Ran};
use crate::config::RunConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::telemetry::ModelMetrics;
use crate::tensor::{Tensor, Tensors};

/// What runs a model once. A runner is used by one thread at a time, so it may be `&mut`.
pub(super) trait Runner: Send + 'static {
    /// Whether a request may run it on its own thread when its runs are short: true for a
    /// session in process, false for a runner that waits on the network.
    const INLINE: bool;

    /// Runs the model on `inputs` (one job's, or a batch stacked along the first dimension)
    /// and returns every output. `context` is the request's (the first request's, for a batch).
    fn run(&mut self, inputs: &Tensors, context: &Context) -> Result<Tensors>;
}

/// A pool of runners of one model version behind a bounded job queue.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Sender<Job>,
    /// The runners, for requests that run the model inline; `None` when they may not.
    inline: Option<Arc<dyn InlineRun>>,
    /// Work in progress: jobs queued or running, and inline runs.
    work: Arc<AtomicUsize>,
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
    inline: AtomicU64,
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

    /// Runs that a request made on its own thread, without the queue.
    pub fn inline_runs(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
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
        let batching = &config.batching;
        let batcher = Batcher::new(
            manifest,
            batching.max_batch_size,
            Duration::from_micros(batching.max_delay_us),
        );
        let count = runners.len();
        // Length groups split off a gathered batch, for any worker to take (see `batch`).
        let (regrouped, groups) = crossbeam_channel::unbounded();
        let work = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Runners {
            work: Arc::clone(&work),
            runners: runners.into_iter().map(Mutex::new).collect(),
            stats: Arc::default(),
            metrics: ModelMetrics::new(&manifest.name, manifest.version),
            run_time: RunTime::default(),
            inline_max: Duration::from_micros(batching.inline_max_us),
            batching: AtomicBool::new(false),
        });
        for index in 0..count {
            let worker = Worker {
                index,
                runners: Arc::clone(&shared),
                batcher,
                padding: padding.clone(),
                regrouped: regrouped.clone(),
            };
            let (queue, groups) = (queue.clone(), groups.clone());
            std::thread::Builder::new()
                .name(format!("model-{}-{index}", manifest.name))
                .spawn(move || worker.serve(&queue, &groups))
                .map_err(|e| Error::io("starting an inference worker", e))?;
        }
        let (stats, metrics) = (Arc::clone(&shared.stats), shared.metrics.clone());
        // A batching delay asks for batches even at the cost of latency: no inline runs then.
        let inline = R::INLINE && batching.inline_max_us > 0 && batching.max_delay_us == 0;
        let inline = inline.then_some(shared as Arc<dyn InlineRun>);
        Ok(Self { jobs, inline, work, label, stats, metrics })
    }

    /// Run counts of this version's runners.
    pub(crate) fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// This version's metric handles.
    pub(crate) fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Runs the model on `inputs`: inline when its runs are short and the version is idle
    /// (see the module documentation), else on a free worker.
    pub(crate) async fn infer(&self, inputs: Tensors) -> Result<Ran> {
        let context = Context::current();
        if let Some(inline) = &self.inline
            && let Some(ran) = inline.try_run(&inputs, &context)
        {
            return ran;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            reply,
            span: tracing::Span::current(),
            context,
            queued_at: Instant::now(),
            claim: Claim::new(&self.work),
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

/// A model run on the request's own thread.
trait InlineRun: Send + Sync + std::fmt::Debug {
    /// Runs the model on `inputs` now, if its runs are short, the version is idle and its
    /// requests are not batching; `None` when the job must go through the queue.
    fn try_run(&self, inputs: &Tensors, context: &Context) -> Option<Result<Ran>>;
}

/// The runners of one version, each behind its own lock, and what their runs are counted in;
/// shared by the worker threads and by requests that run inline.
struct Runners<R> {
    runners: Box<[Mutex<R>]>,
    /// The version's work in progress (see [`Claim`]).
    work: Arc<AtomicUsize>,
    stats: Arc<RunStats>,
    metrics: ModelMetrics,
    run_time: RunTime,
    /// Runs expected to take longer than this go through the queue.
    inline_max: Duration,
    /// Whether a worker's last batch held more than one job: requests come faster than runs
    /// end, so they batch rather than run alone. The next batch of one job clears it.
    batching: AtomicBool,
}

impl<R> std::fmt::Debug for Runners<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runners")
            .field("runners", &self.runners.len())
            .field("run_time", &self.run_time)
            .field("inline_max", &self.inline_max)
            .finish_non_exhaustive()
    }
}

impl<R: Runner> Runners<R> {
    /// Locks runner `index`, waiting while a request runs it inline.
    fn lock(&self, index: usize) -> MutexGuard<'_, R> {
        // A runner whose run panicked holds no broken invariant of ours: keep using it.
        self.runners[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the model on `runner`, in an `inference` span when the request is traced, and
    /// counts the run and its time.
    fn run_counted(&self, runner: &mut R, inputs: &Tensors, context: &Context) -> Result<Tensors> {
        let rows = inputs.values().next().map_or(0, Tensor::rows);
        let start = Instant::now();
        let outputs = if context.traced {
            tracing::debug_span!("inference", rows).in_scope(|| runner.run(inputs, context))?
        } else {
            runner.run(inputs, context)?
        };
        self.run_time.record(start.elapsed(), rows);
        self.stats.record(rows);
        self.metrics.batch_rows.record(rows as f64);
        Ok(outputs)
    }
}

impl<R: Runner> InlineRun for Runners<R> {
    fn try_run(&self, inputs: &Tensors, context: &Context) -> Option<Result<Ran>> {
        let rows = inputs.values().next().map_or(0, Tensor::rows);
        let batching = self.batching.load(Ordering::Relaxed);
        if batching || self.run_time.expected(rows)? > self.inline_max {
            return None;
        }
        let _claim = Claim::idle(&self.work)?;
        // With no work in progress every runner is free: the first, warm from the last inline
        // run, unless a worker has not let go of it yet.
        let mut runner = self.runners.iter().find_map(|runner| match runner.try_lock() {
            Ok(runner) => Some(runner),
            // As in `lock`: a run that panicked leaves the runner usable.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })?;
        let start = Instant::now();
        let ran = self.run_counted(&mut runner, inputs, context);
        let computed = start.elapsed();
        drop(runner);
        self.stats.inline.fetch_add(1, Ordering::Relaxed);
        Some(ran.map(|tensors| Ran { tensors, queued: Duration::ZERO, computed }))
    }
}

/// How long a model's runs take lately: moving averages of the time per run and per row, in
/// nanoseconds, each new run weighing 1/8. Unknown until the first run.
#[derive(Debug)]
struct RunTime {
    per_run: AtomicU64,
    per_row: AtomicU64,
}

impl Default for RunTime {
    fn default() -> Self {
        Self { per_run: AtomicU64::new(u64::MAX), per_row: AtomicU64::new(u64::MAX) }
    }
}

impl RunTime {
    /// Adds a run of `rows` rows that took `took`. Concurrent runs may overwrite each other's
    /// update: the average stays one of recent runs, which is all it is for.
    fn record(&self, took: Duration, rows: usize) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let update = |average: &AtomicU64, sample: u64| {
            let old = average.load(Ordering::Relaxed);
            let new = if old == u64::MAX { sample } else { old - old / 8 + sample / 8 };
            average.store(new, Ordering::Relaxed);
        };
        update(&self.per_run, nanos);
        update(&self.per_row, nanos / rows.max(1) as u64);
    }

    /// How long a run of `rows` rows should take: the longer of a typical run and `rows`
    /// typical rows (a batch spreads a run's fixed cost over its rows); `None` before the
    /// first run.
    fn expected(&self, rows: usize) -> Option<Duration> {
        let per_run = self.per_run.load(Ordering::Relaxed);
        let per_row = self.per_row.load(Ordering::Relaxed);
        if per_run == u64::MAX {
            return None;
        }
        Some(Duration::from_nanos(per_run.max(per_row.saturating_mul(rows as u64))))
    }
}

/// A worker thread's state: which runner is its own, and how it batches.
struct Worker<R> {
    index: usize,
    runners: Arc<Runners<R>>,
    batcher: Batcher,
    padding: Padding,
    /// Where the length groups after the first of a gathered batch go, for any worker.
    regrouped: Sender<Vec<Job>>,
}

impl<R: Runner> Worker<R> {
    /// Takes batches of jobs until the queue closes.
    fn serve(self, queue: &Receiver<Job>, groups: &Receiver<Vec<Job>>) {
        // Only padded batches are split into groups; other models wait on the queue alone.
        let groups = self.padding.pads().then_some(groups);
        while let Some(mut jobs) = self.batcher.next(queue, groups) {
            self.runners.metrics.queue_depth.set(queue.len() as f64);
            self.runners.batching.store(jobs.len() > 1, Ordering::Relaxed);
            // Clients that gave up (deadline or disconnect) while waiting: skip their work.
            jobs.retain(|job| !job.reply.is_closed());
            if groups.is_some() {
                jobs = self.first_group(jobs);
            }
            match jobs.len() {
                0 => {}
                1 => self.answer_alone(jobs.remove(0)),
                _ => self.answer_batch(jobs),
            }
        }
    }

    /// Splits padded `jobs` into groups of similar lengths and keeps the first; the others go
    /// to whichever worker is free first. This one comes back for them too, so none is left
    /// behind when the queue closes.
    fn first_group(&self, jobs: Vec<Job>) -> Vec<Job> {
        let mut groups = batch::by_length(jobs, &self.padding).into_iter();
        let first = groups.next().unwrap_or_default();
        for group in groups {
            // Cannot fail while this worker, which holds a receiver, runs.
            let _ = self.regrouped.send(group);
        }
        first
    }

    /// Runs `inputs` on this worker's runner.
    fn run(&self, inputs: &Tensors, context: &Context) -> Result<Tensors> {
        let mut runner = self.runners.lock(self.index);
        self.runners.run_counted(&mut runner, inputs, context)
    }

    /// Runs one job on its own.
    fn answer_alone(&self, job: Job) {
        let start = Instant::now();
        let result = job.span.in_scope(|| self.run(&job.inputs, &job.context));
        let ran = result.map(|tensors| Ran {
            tensors,
            queued: start - job.queued_at,
            computed: start.elapsed(),
        });
        job.answer(ran);
    }

    /// Runs several jobs as one batch; if the batch cannot be formed or fails, each job runs
    /// alone, so every client gets its own precise answer.
    fn answer_batch(&self, jobs: Vec<Job>) {
        let start = Instant::now();
        let outputs = jobs[0].span.clone().in_scope(|| {
            batch::merge(&jobs, &self.padding)
                .and_then(|inputs| self.run(&inputs, &jobs[0].context))
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
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use super::*;

    /// A runner that notes which worker ran each batch and at what length, then waits while
    /// the gate is closed, and answers its input `x` as its output.
    struct Noting {
        worker: usize,
        runs: Arc<Mutex<Vec<(usize, usize)>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Runner for Noting {
        const INLINE: bool = false;

        fn run(&mut self, inputs: &Tensors, _: &Context) -> Result<Tensors> {
            let length = inputs["x"].shape()[1];
            self.runs.lock().unwrap().push((self.worker, length));
            let (open, opened) = &*self.gate;
            let _open = opened.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            Ok(inputs.clone())
        }
    }

    #[test]
    fn length_groups_of_one_batch_run_on_every_free_worker() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "m", "version": 1, "created_at": "2026-12-03T00:00:00Z",
            "files": {},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
            "outputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
        }))
        .unwrap();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let runner = |worker| Noting { worker, runs: Arc::clone(&runs), gate: Arc::clone(&gate) };
        let work = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Runners {
            runners: vec![Mutex::new(runner(0)), Mutex::new(runner(1))].into_boxed_slice(),
            work: Arc::clone(&work),
            stats: Arc::default(),
            metrics: ModelMetrics::new("m", 1),
            run_time: RunTime::default(),
            inline_max: Duration::ZERO,
            batching: AtomicBool::new(false),
        });
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (regrouped, groups) = crossbeam_channel::unbounded();
        let padding = Padding::new().input("x", 0.0).output("x");
        let worker = |index| Worker {
            index,
            runners: Arc::clone(&shared),
            batcher: Batcher::new(&manifest, 64, Duration::ZERO),
            padding: padding.clone(),
            regrouped: regrouped.clone(),
        };
        // Sixteen jobs of lengths 1 to 16 (each row holds its length), queued before any
        // worker runs: the first worker gathers them all and cuts them into groups.
        let mut answers = Vec::new();
        for length in 1..=16usize {
            let (reply, answer) = oneshot::channel();
            let row = ndarray::Array2::from_elem((1, length), length as f32);
            let inputs = Tensors::from([("x".to_string(), Tensor::from(row))]);
            let context = Context::internal();
            let (span, claim) = (tracing::Span::none(), Claim::new(&work));
            let queued_at = Instant::now();
            jobs.send(Job { inputs, reply, span, context, queued_at, claim }).unwrap();
            answers.push((length, answer));
        }
        drop(jobs);
        let spawn = |worker: Worker<Noting>, queue: Receiver<Job>, groups: Receiver<Vec<Job>>| {
            std::thread::spawn(move || worker.serve(&queue, &groups))
        };
        let first = spawn(worker(0), queue.clone(), groups.clone());
        let ran_by = |worker: usize| runs.lock().unwrap().iter().any(|&(w, _)| w == worker);
        let waited = Instant::now();
        while !ran_by(0) {
            assert!(waited.elapsed() < Duration::from_secs(10), "the first worker never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The first worker is held in its first group's run; the second takes another group
        // of the same batch, not a job of the (now empty) queue.
        assert!(queue.is_empty(), "every job was gathered into the first worker's batch");
        let second = spawn(worker(1), queue, groups);
        while !ran_by(1) {
            assert!(waited.elapsed() < Duration::from_secs(10), "the second worker never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        first.join().unwrap();
        second.join().unwrap();
        // Groups of similar lengths, never padded past their longest; every job answered with
        // its own row cut back to its length.
        let runs = runs.lock().unwrap().clone();
        assert!(runs.len() >= 2 && runs.iter().all(|&(_, length)| length <= 16), "{runs:?}");
        for (length, answer) in answers {
            let ran = answer.blocking_recv().unwrap().unwrap();
            let row = ran.tensors["x"].as_f32().unwrap();
            assert_eq!(row.shape(), [1, length]);
            assert!(row.iter().all(|&x| x == length as f32), "{length}: {row:?}");
        }
        assert_eq!(work.load(Ordering::Acquire), 0, "no work left in progress");
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded_at_once() {
        // A pool whose single queue slot nobody drains.
        let (jobs, queue) = crossbeam_channel::bounded(1);
        let metrics = ModelMetrics::new("m", 1);
        let (inline, work, label) = (None, Arc::default(), "m:1".into());
        let pool = Pool { jobs, inline, work, label, stats: Arc::default(), metrics };
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
