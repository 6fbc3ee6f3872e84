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
//! Handing a job to a worker thread costs tens of microseconds (two channel operations and
//! two thread wake-ups), more than a small model's run. So a model whose recent runs took less
//! than `inline_max_us` runs on the requests' own threads when the runner allows it (a local
//! session, not a network call) and no batching delay is set (`max_delay_us` asks for
//! batches):
//! - **alone**, at once, when the version has no other work in progress (nothing gathered,
//!   queued or running) and its last batch held one job: a lightly loaded service pays only
//!   the run;
//! - **gathered** otherwise: the request puts its job in the version's gathering and, if it is
//!   the first there, yields to the async runtime once, so that the other requests it has
//!   ready (the connections that became readable together) add theirs; then it runs them all
//!   as one batch on a free runner and answers each. A request that finds the gathering full
//!   (`max_batch_size` rows) runs it at once and starts the next. Under load this batches as
//!   the workers would, without the hand-off. When every runner is taken, or the batch would
//!   run longer than `inline_max_us`, the gathered jobs go to the queue instead.
//!
//! A slow model always goes through the queue, off the async runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::batch::{self, Batcher, Claim, Job, Padding, Ran};
use super::selection::OutputSet;
use crate::config::RunConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TensorSpec};
use crate::shards::{Counters, Padded};
use crate::telemetry::ModelMetrics;
use crate::tensor::{Tensor, Tensors};

/// What runs a model once. A runner is used by one thread at a time, so it may be `&mut`.
pub(super) trait Runner: Send + 'static {
    /// Whether a request may run it on its own thread when its runs are short: true for a
    /// session in process, false for a runner that waits on the network.
    const INLINE: bool;

    /// Runs the model on `inputs` (one job's, or a batch stacked along the first dimension)
    /// and returns at least the `outputs` asked for. `context` is the request's (the first
    /// request's, for a batch).
    fn run(&mut self, inputs: &Tensors, outputs: OutputSet, context: &Context) -> Result<Tensors>;
}

/// A pool of runners of one model version behind a bounded job queue.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Sender<Job>,
    /// The runners, for requests that run the model on their own threads; `None` when they
    /// may not.
    inline: Option<Arc<dyn InlineRun>>,
    /// Jobs gathered by requests for one run on the first one's thread.
    gathering: Mutex<Gathering>,
    /// The most rows one batch may hold.
    max_rows: usize,
    /// Work in progress: jobs gathered, queued or running, and runs alone.
    work: Arc<AtomicUsize>,
    label: String,
    stats: Arc<RunStats>,
    metrics: ModelMetrics,
}

/// The jobs waiting for the request that gathers them to run them.
#[derive(Default)]
struct Gathering {
    jobs: Vec<Job>,
    rows: usize,
}

impl std::fmt::Debug for Gathering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathering")
            .field("jobs", &self.jobs.len())
            .field("rows", &self.rows)
            .finish()
    }
}

/// How many runs the runners made and how many rows they carried: rows per run above one
/// is batching at work. Counted in per-thread shards (`crate::shards`), since every request's
/// runs add to them.
#[derive(Debug)]
pub struct RunStats {
    /// Runs, rows, and runs made on a request's own thread.
    counts: Counters,
}

impl Default for RunStats {
    fn default() -> Self {
        Self { counts: Counters::new(3) }
    }
}

impl RunStats {
    /// The slot counting runs.
    const RUNS: usize = 0;
    /// The slot counting rows.
    const ROWS: usize = 1;
    /// The slot counting runs made on a request's own thread.
    const INLINE: usize = 2;

    /// Runs so far.
    pub fn runs(&self) -> u64 {
        self.counts.total(Self::RUNS)
    }

    /// Rows (requests' first dimensions) run so far.
    pub fn rows(&self) -> u64 {
        self.counts.total(Self::ROWS)
    }

    /// Runs that a request made on its own thread, without the queue.
    pub fn inline_runs(&self) -> u64 {
        self.counts.total(Self::INLINE)
    }

    fn record(&self, rows: usize) {
        self.counts.add(Self::RUNS, 1);
        self.counts.add(Self::ROWS, rows as u64);
    }

    fn ran_inline(&self) {
        self.counts.add(Self::INLINE, 1);
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
            padding: padding.clone(),
            outputs: manifest.outputs.clone(),
            stats: Arc::default(),
            metrics: ModelMetrics::new(&manifest.name, manifest.version),
            run_time: Padded::default(),
            inline_max: Duration::from_micros(batching.inline_max_us),
            batching: Padded::default(),
        });
        for index in 0..count {
            let worker = Worker {
                index,
                runners: Arc::clone(&shared),
                batcher,
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
        let (gathering, max_rows) = (Mutex::default(), batcher.max_rows());
        Ok(Self { jobs, inline, gathering, max_rows, work, label, stats, metrics })
    }

    /// Run counts of this version's runners.
    pub(crate) fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Begins a run of the model on `inputs` for `outputs`: alone on this thread when its runs
    /// are short and the version is idle, gathered into a batch on the requests' threads, or
    /// on a free worker (see the module documentation). What can be done at once is done
    /// before it returns: a run alone is over, a job is gathered or queued.
    pub(crate) fn begin(&self, inputs: Tensors, outputs: OutputSet) -> Started<'_> {
        let context = Context::current();
        let Some(inline) = &self.inline else {
            return self.queue(inputs, outputs, context);
        };
        match inline.try_run(&inputs, outputs, &context) {
            Inline::Ran(ran) => Started::Done(self.counted(ran)),
            Inline::Gather => self.gather(inline.as_ref(), inputs, outputs, context),
            Inline::Queue => self.queue(inputs, outputs, context),
        }
    }

    /// A job for `inputs` and `outputs`, and where its answer will come.
    fn job(
        &self,
        inputs: Tensors,
        outputs: OutputSet,
        context: Arc<Context>,
    ) -> (Job, oneshot::Receiver<Result<Ran>>) {
        let (reply, answer) = oneshot::channel();
        let span = tracing::Span::current();
        let (queued_at, claim) = (Instant::now(), Claim::new(&self.work));
        (Job { inputs, outputs, reply, span, context, queued_at, claim }, answer)
    }

    /// Queues the run of the model on `inputs` for a free worker.
    fn queue(&self, inputs: Tensors, outputs: OutputSet, context: Arc<Context>) -> Started<'_> {
        let (job, answer) = self.job(inputs, outputs, context);
        if let Err(error) = self.jobs.try_send(job) {
            return Started::Done(self.counted(Err(match error {
                TrySendError::Full(_) => Error::Overloaded,
                TrySendError::Disconnected(_) => self.workers_gone(),
            })));
        }
        Started::Waiting(Box::pin(async move { self.counted(self.answer_of(answer).await) }))
    }

    /// Hands gathered `jobs` to the workers; a job that finds the queue full is answered
    /// [`Error::Overloaded`].
    fn queue_all(&self, jobs: Vec<Job>) {
        for job in jobs {
            match self.jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => job.answer(Err(Error::Overloaded)),
                Err(TrySendError::Disconnected(job)) => job.answer(Err(self.workers_gone())),
            }
        }
    }

    /// Gathers the run of the model on `inputs` into a batch run on this thread: the first
    /// request to gather yields once for others to join, then runs them all (see the module
    /// documentation). A request whose job would make the batch too large runs the batch
    /// gathered so far at once, and gathers anew.
    fn gather<'a>(
        &'a self,
        inline: &'a dyn InlineRun,
        inputs: Tensors,
        outputs: OutputSet,
        context: Arc<Context>,
    ) -> Started<'a> {
        let (job, answer) = self.job(inputs, outputs, context);
        let rows = job.rows();
        let (full, leads) = {
            let mut gathering = self.gathering.lock().unwrap_or_else(PoisonError::into_inner);
            let full = if gathering.rows + rows > self.max_rows {
                gathering.rows = 0;
                std::mem::take(&mut gathering.jobs)
            } else {
                Vec::new()
            };
            gathering.jobs.push(job);
            gathering.rows += rows;
            (full, gathering.jobs.len() == 1)
        };
        if !full.is_empty() {
            self.run_or_queue(inline, full);
        }
        // Made now, and only by the lead: a lead dropped (its request gone, even before its first
        // poll) hands what is gathered to the workers.
        let lead = leads.then(|| Lead { pool: self, inline, ran: false });
        Started::Waiting(Box::pin(async move {
            if let Some(lead) = lead {
                tokio::task::yield_now().await;
                lead.run();
            }
            self.counted(self.answer_of(answer).await)
        }))
    }

    /// Runs gathered `jobs` on this thread, or hands them to the workers when that cannot be.
    fn run_or_queue(&self, inline: &dyn InlineRun, jobs: Vec<Job>) {
        if let Err(jobs) = inline.run_gathered(jobs) {
            self.queue_all(jobs);
        }
    }

    /// Takes every job gathered so far.
    fn take_gathered(&self) -> Vec<Job> {
        let mut gathering = self.gathering.lock().unwrap_or_else(PoisonError::into_inner);
        gathering.rows = 0;
        std::mem::take(&mut gathering.jobs)
    }

    /// The answer that comes on `answer`: what the run gave, or an error for a job dropped
    /// unanswered.
    async fn answer_of(&self, answer: oneshot::Receiver<Result<Ran>>) -> Result<Ran> {
        answer.await.map_err(|_| self.workers_gone())?
    }

    /// `ran`, counted in the version's metrics.
    fn counted(&self, ran: Result<Ran>) -> Result<Ran> {
        match &ran {
            Ok(ran) => {
                self.metrics.queue.record(ran.queued.as_secs_f64());
                self.metrics.inference.record(ran.computed.as_secs_f64());
            }
            Err(error) => self.metrics.failed(error),
        }
        ran
    }

    fn workers_gone(&self) -> Error {
        Error::Inference { model: self.label.clone(), detail: "inference workers stopped".into() }
    }
}

/// A request that put its job in an empty gathering, until it runs what is gathered then.
/// Whoever finds the gathering empty leads, so jobs gathered always have a lead to come.
/// Dropped before its run (its client gone while it yielded), a lead hands what is gathered to
/// the workers, so no job waits for nobody.
struct Lead<'a> {
    pool: &'a Pool,
    inline: &'a dyn InlineRun,
    ran: bool,
}

impl Lead<'_> {
    /// Runs the jobs gathered so far on this thread, or queues them when that cannot be.
    /// Another request may have run them already (see [`Pool::gather`]): then none are left.
    fn run(mut self) {
        self.ran = true;
        let jobs = self.pool.take_gathered();
        if !jobs.is_empty() {
            self.pool.run_or_queue(self.inline, jobs);
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.ran {
            self.pool.queue_all(self.pool.take_gathered());
        }
    }
}

/// A model run as [`Pool::begin`] leaves it.
pub(crate) enum Started<'a> {
    /// Over: it ran on the request's thread, or could not be made.
    Done(Result<Ran>),
    /// Gathered into a batch or queued for a worker: its answer comes through the future.
    Waiting(BoxFuture<'a, Result<Ran>>),
}

impl Started<'_> {
    /// The run's answer, once it has come.
    pub(crate) async fn answer(self) -> Result<Ran> {
        match self {
            Self::Done(ran) => ran,
            Self::Waiting(answer) => answer.await,
        }
    }
}

/// Where a request's job runs when its model may run on the request's thread.
enum Inline {
    /// It ran alone, at once.
    Ran(Result<Ran>),
    /// It joins a batch gathered on the requests' threads.
    Gather,
    /// It goes to the workers: the model's runs are too long, or not known yet.
    Queue,
}

/// Model runs on the requests' own threads.
trait InlineRun: Send + Sync + std::fmt::Debug {
    /// Runs the model on `inputs` for `outputs` now if its runs are short and the version is
    /// idle and not batching; else says where the job goes.
    fn try_run(&self, inputs: &Tensors, outputs: OutputSet, context: &Context) -> Inline;

    /// Runs gathered `jobs` as one batch on a free runner and answers each; gives them back
    /// when every runner is taken or the batch would run longer than runs on a request's
    /// thread may.
    fn run_gathered(&self, jobs: Vec<Job>) -> std::result::Result<(), Vec<Job>>;
}

/// The runners of one version, each behind its own lock, and what their runs are counted in;
/// shared by the worker threads and by requests that run the model on their own threads.
struct Runners<R> {
    runners: Box<[Mutex<R>]>,
    /// How batches of variable-length inputs are padded.
    padding: Padding,
    /// The manifest's outputs, which a job's [`OutputSet`] picks from.
    outputs: Vec<TensorSpec>,
    /// The version's work in progress (see [`Claim`]).
    work: Arc<AtomicUsize>,
    stats: Arc<RunStats>,
    metrics: ModelMetrics,
    /// Written by every run: on lines of its own, apart from the fields runs only read.
    run_time: Padded<RunTime>,
    /// Runs expected to take longer than this go through the queue.
    inline_max: Duration,
    /// Whether the last batch held more than one job: requests come faster than runs end, so
    /// they batch rather than run alone. The next batch of one job clears it. On lines of its
    /// own, and written only when it changes.
    batching: Padded<AtomicBool>,
}

impl<R> std::fmt::Debug for Runners<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runners")
            .field("runners", &self.runners.len())
            .field("run_time", &self.run_time.0)
            .field("inline_max", &self.inline_max)
            .finish_non_exhaustive()
    }
}

impl<R: Runner> Runners<R> {
    /// Locks runner `index`, waiting while a request runs it.
    fn lock(&self, index: usize) -> MutexGuard<'_, R> {
        // A runner whose run panicked holds no broken invariant of ours: keep using it.
        self.runners[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first runner nobody holds: with no work in progress, the first, warm from the last
    /// run on a request's thread, unless a worker has not let go of it yet.
    fn try_lock_any(&self) -> Option<MutexGuard<'_, R>> {
        self.runners.iter().find_map(|runner| match runner.try_lock() {
            Ok(runner) => Some(runner),
            // As in `lock`: a run that panicked leaves the runner usable.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    /// Whether a run of `rows` rows may be made on a request's thread.
    fn short(&self, rows: usize) -> bool {
        self.run_time.0.expected(rows).is_some_and(|expected| expected <= self.inline_max)
    }

    /// Runs the model on `runner` for `outputs` (and returns those alone, with the run's time),
    /// in an `inference` span when the request is traced, and counts the run and its time.
    fn run_counted(
        &self,
        runner: &mut R,
        inputs: &Tensors,
        outputs: OutputSet,
        context: &Context,
    ) -> Result<(Tensors, Duration)> {
        let rows = inputs.values().next().map_or(0, Tensor::rows);
        let start = Instant::now();
        let mut tensors = if context.traced {
            let span = tracing::debug_span!("inference", rows);
            span.in_scope(|| runner.run(inputs, outputs, context))?
        } else {
            runner.run(inputs, outputs, context)?
        };
        outputs.keep(&self.outputs, &mut tensors);
        let took = start.elapsed();
        self.run_time.0.record(took, rows);
        self.stats.record(rows);
        self.metrics.batch_rows.record(rows as f64);
        Ok((tensors, took))
    }

    /// Runs `jobs` on `runner`, as one batch when there are several, and answers each.
    fn answer(&self, runner: &mut R, mut jobs: Vec<Job>) {
        let batching = jobs.len() > 1;
        if self.batching.0.load(Ordering::Relaxed) != batching {
            self.batching.0.store(batching, Ordering::Relaxed);
        }
        // Clients that gave up (deadline or disconnect) while waiting: skip their work.
        jobs.retain(|job| !job.reply.is_closed());
        match jobs.len() {
            0 => {}
            1 => self.answer_alone(runner, jobs.remove(0)),
            _ => self.answer_batch(runner, jobs),
        }
    }

    /// Runs one job on its own.
    fn answer_alone(&self, runner: &mut R, job: Job) {
        let queued = job.queued_at.elapsed();
        let result =
            job.span.in_scope(|| self.run_counted(runner, &job.inputs, job.outputs, &job.context));
        job.answer(result.map(|(tensors, computed)| Ran { tensors, queued, computed }));
    }

    /// Runs several jobs as one batch, for every output one of them asks for; if the batch
    /// cannot be formed or fails, each job runs alone, so every client gets its own precise
    /// answer.
    fn answer_batch(&self, runner: &mut R, jobs: Vec<Job>) {
        let start = Instant::now();
        let wanted = jobs.iter().fold(jobs[0].outputs, |set, job| set.union(job.outputs));
        let outputs = jobs[0].span.clone().in_scope(|| {
            batch::merge(&jobs, &self.padding)
                .and_then(|inputs| self.run_counted(runner, &inputs, wanted, &jobs[0].context))
                .map(|(outputs, _)| outputs)
        });
        let computed = start.elapsed();
        match outputs.and_then(|outputs| batch::split(&jobs, &outputs, &self.padding)) {
            Ok(parts) => {
                for (job, mut tensors) in jobs.into_iter().zip(parts) {
                    job.outputs.keep(&self.outputs, &mut tensors);
                    let queued = start - job.queued_at;
                    job.answer(Ok(Ran { tensors, queued, computed }));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "batch failed; running its jobs one by one");
                jobs.into_iter().for_each(|job| self.answer_alone(runner, job));
            }
        }
    }
}

impl<R: Runner> InlineRun for Runners<R> {
    fn try_run(&self, inputs: &Tensors, outputs: OutputSet, context: &Context) -> Inline {
        let rows = inputs.values().next().map_or(0, Tensor::rows);
        if !self.short(rows) {
            return Inline::Queue;
        }
        if self.batching.0.load(Ordering::Relaxed) {
            return Inline::Gather;
        }
        let Some(_claim) = Claim::idle(&self.work) else {
            return Inline::Gather;
        };
        let Some(mut runner) = self.try_lock_any() else {
            return Inline::Gather;
        };
        let ran = self.run_counted(&mut runner, inputs, outputs, context);
        drop(runner);
        self.stats.ran_inline();
        Inline::Ran(ran.map(|(tensors, computed)| Ran {
            tensors,
            queued: Duration::ZERO,
            computed,
        }))
    }

    fn run_gathered(&self, jobs: Vec<Job>) -> std::result::Result<(), Vec<Job>> {
        if !self.short(jobs.iter().map(Job::rows).sum()) {
            return Err(jobs);
        }
        let Some(mut runner) = self.try_lock_any() else {
            return Err(jobs);
        };
        self.stats.ran_inline();
        self.answer(&mut runner, jobs);
        Ok(())
    }
}

/// How long a model's runs take lately, as a run's fixed cost plus a cost per row: moving
/// averages (each new run weighing 1/8) of runs of one row, in nanoseconds, and of runs of
/// several rows, their time and their rows. Unknown until the first run.
#[derive(Debug)]
struct RunTime {
    /// Runs of one row (or none).
    alone: AtomicU64,
    /// Runs of several rows: their time and their rows (in 1/256 of a row).
    batch: AtomicU64,
    batch_rows: AtomicU64,
}

/// A moving average not yet started.
const UNKNOWN: u64 = u64::MAX;

/// Fixed-point scale of [`RunTime::batch_rows`].
const ROW: u64 = 256;

impl Default for RunTime {
    fn default() -> Self {
        let unknown = || AtomicU64::new(UNKNOWN);
        Self { alone: unknown(), batch: unknown(), batch_rows: unknown() }
    }
}

impl RunTime {
    /// Adds a run of `rows` rows that took `took`. Concurrent runs may overwrite each other's
    /// update: the averages stay ones of recent runs, which is all they are for.
    fn record(&self, took: Duration, rows: usize) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(UNKNOWN - 1);
        let update = |average: &AtomicU64, sample: u64| {
            let old = average.load(Ordering::Relaxed);
            let new = if old == UNKNOWN { sample } else { old - old / 8 + sample / 8 };
            average.store(new, Ordering::Relaxed);
        };
        if rows <= 1 {
            update(&self.alone, nanos);
        } else {
            update(&self.batch, nanos);
            update(&self.batch_rows, rows as u64 * ROW);
        }
    }

    /// How long a run of `rows` rows should take: a run of one row plus what each row more
    /// added in recent batches. With only runs of one size known so far, that size's time per
    /// row times `rows`, at least one such run (an overestimate for batches: a run's fixed
    /// cost counts once per row). `None` before the first run.
    fn expected(&self, rows: usize) -> Option<Duration> {
        let known =
            |average: &AtomicU64| Some(average.load(Ordering::Relaxed)).filter(|&n| n != UNKNOWN);
        let rows = rows.max(1) as u64;
        let nanos = match (known(&self.alone), known(&self.batch), known(&self.batch_rows)) {
            (Some(alone), Some(batch), Some(batch_rows)) if batch_rows > ROW => {
                let per_row = batch.saturating_sub(alone).saturating_mul(ROW) / (batch_rows - ROW);
                alone.saturating_add(per_row.saturating_mul(rows - 1))
            }
            (Some(alone), ..) => alone.saturating_mul(rows),
            (None, Some(batch), Some(batch_rows)) => {
                let per_row = batch.saturating_mul(ROW) / batch_rows.max(ROW);
                batch.max(per_row.saturating_mul(rows))
            }
            _ => return None,
        };
        Some(Duration::from_nanos(nanos))
    }
}

/// A worker thread's state: which runner is its own, and how it batches.
struct Worker<R> {
    index: usize,
    runners: Arc<Runners<R>>,
    batcher: Batcher,
    /// Where the length groups after the first of a gathered batch go, for any worker.
    regrouped: Sender<Vec<Job>>,
}

impl<R: Runner> Worker<R> {
    /// Takes batches of jobs until the queue closes.
    fn serve(self, queue: &Receiver<Job>, groups: &Receiver<Vec<Job>>) {
        // Only padded batches are split into groups; other models wait on the queue alone.
        let groups = self.runners.padding.pads().then_some(groups);
        while let Some(mut jobs) = self.batcher.next(queue, groups) {
            self.runners.metrics.queue_depth.set(queue.len() as f64);
            if groups.is_some() {
                jobs = self.first_group(jobs);
            }
            self.runners.answer(&mut self.runners.lock(self.index), jobs);
        }
    }

    /// Splits padded `jobs` into groups of similar lengths and keeps the first; the others go
    /// to whichever worker is free first. This one comes back for them too, so none is left
    /// behind when the queue closes.
    fn first_group(&self, jobs: Vec<Job>) -> Vec<Job> {
        let mut groups = batch::by_length(jobs, &self.runners.padding).into_iter();
        let first = groups.next().unwrap_or_default();
        for group in groups {
            // Cannot fail while this worker, which holds a receiver, runs.
            let _ = self.regrouped.send(group);
        }
        first
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

        fn run(&mut self, inputs: &Tensors, _: OutputSet, _: &Context) -> Result<Tensors> {
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
            padding: Padding::new().input("x", 0.0).output("x"),
            outputs: manifest.outputs.clone(),
            work: Arc::clone(&work),
            stats: Arc::default(),
            metrics: ModelMetrics::new("m", 1),
            run_time: Padded::default(),
            inline_max: Duration::ZERO,
            batching: Padded::default(),
        });
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (regrouped, groups) = crossbeam_channel::unbounded();
        let worker = |index| Worker {
            index,
            runners: Arc::clone(&shared),
            batcher: Batcher::new(&manifest, 64, Duration::ZERO),
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
            let outputs = OutputSet::ALL;
            jobs.send(Job { inputs, outputs, reply, span, context, queued_at, claim }).unwrap();
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

    /// A runner that runs on a request's thread when it may, notes the thread and rows of
    /// each run and the outputs asked for, and answers its input `x` as its output `x`, and
    /// twice `x` as its output `twice`, whatever it is asked for.
    struct Echo {
        runs: Arc<Mutex<Vec<(String, usize)>>>,
        asked: Arc<Mutex<Vec<OutputSet>>>,
    }

    impl Runner for Echo {
        const INLINE: bool = true;

        fn run(&mut self, inputs: &Tensors, outputs: OutputSet, _: &Context) -> Result<Tensors> {
            let thread = std::thread::current().name().unwrap_or_default().to_string();
            self.runs.lock().unwrap().push((thread, inputs["x"].rows()));
            self.asked.lock().unwrap().push(outputs);
            let twice = inputs["x"].as_f32()?.mapv(|x| 2.0 * x);
            Ok(Tensors::from([
                ("x".to_string(), inputs["x"].clone()),
                ("twice".to_string(), Tensor::from(twice)),
            ]))
        }
    }

    /// The outputs of the `Echo` model called `names`.
    fn echo_outputs(names: &[&str]) -> OutputSet {
        let specs = echo_manifest().outputs;
        OutputSet::named(&specs, names.iter().copied()).unwrap()
    }

    impl Pool {
        /// A run of the model begun only when the future is first polled, so that a test's
        /// futures, made together, begin in the order they are polled.
        async fn infer(&self, inputs: Tensors, outputs: OutputSet) -> Result<Ran> {
            self.begin(inputs, outputs).answer().await
        }
    }

    /// The manifest of a batchable model `m` run by `Echo`.
    fn echo_manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "m", "version": 1, "created_at": "2026-12-03T00:00:00Z",
            "files": {},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            "outputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 1]},
                {"name": "twice", "datatype": "FP32", "shape": [-1, 1]}
            ],
        }))
        .unwrap()
    }

    /// A pool of two `Echo` runners on a batchable model `m` with `max_batch_size`, whose run
    /// time is known (one run made), and the runs it makes from now on.
    async fn echo_pool(max_batch_size: usize) -> (Pool, Arc<Mutex<Vec<(String, usize)>>>) {
        let (pool, runs, _) = echo_pool_asked(max_batch_size).await;
        (pool, runs)
    }

    /// [`echo_pool`], with the outputs each run is asked for from now on.
    async fn echo_pool_asked(
        max_batch_size: usize,
    ) -> (Pool, Arc<Mutex<Vec<(String, usize)>>>, Arc<Mutex<Vec<OutputSet>>>) {
        let manifest = echo_manifest();
        let (runs, asked) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let echo = || Echo { runs: Arc::clone(&runs), asked: Arc::clone(&asked) };
        let runners = (0..2).map(|_| echo()).collect();
        let config = RunConfig {
            sessions: 2,
            intra_threads: 1,
            inter_threads: 1,
            queue_capacity: 64,
            onnx_ml: Default::default(),
            batching: crate::config::BatchingConfig {
                max_batch_size,
                max_delay_us: 0,
                inline_max_us: 1_000_000,
            },
            remote: None,
        };
        let pool = Pool::start(&manifest, runners, &config, &Padding::new()).unwrap();
        // The first run's time is unknown, so it goes to a worker; from then on runs are short.
        pool.infer(row(0.0), OutputSet::ALL).await.unwrap();
        runs.lock().unwrap().clear();
        asked.lock().unwrap().clear();
        (pool, runs, asked)
    }

    /// One row holding `x`.
    fn row(x: f32) -> Tensors {
        Tensors::from([("x".to_string(), Tensor::from(ndarray::arr2(&[[x]])))])
    }

    /// Sends requests `0..count` to `pool` at once from this thread and checks that each is
    /// answered its own row.
    async fn answered_at_once(pool: &Pool, count: usize) {
        let answers = (0..count).map(|i| pool.infer(row(i as f32), OutputSet::ALL));
        let answers = futures_util::future::join_all(answers);
        for (i, ran) in answers.await.into_iter().enumerate() {
            assert_eq!(ran.unwrap().tensors["x"].as_f32().unwrap().as_slice().unwrap(), [i as f32]);
        }
    }

    #[tokio::test]
    async fn requests_that_meet_work_in_progress_gather_one_batch_on_their_thread() {
        let (pool, runs) = echo_pool(32).await;
        let this = std::thread::current().name().unwrap().to_string();
        // An idle version runs a request alone, at once, on its thread.
        pool.infer(row(1.0), OutputSet::ALL).await.unwrap();
        assert_eq!(*runs.lock().unwrap(), [(this.clone(), 1)]);
        runs.lock().unwrap().clear();
        // With work in progress (as if a worker ran a job), eight requests gather into one
        // batch, run on this thread, not a worker's.
        let busy = Claim::new(&pool.work);
        answered_at_once(&pool, 8).await;
        assert_eq!(*runs.lock().unwrap(), [(this, 8)]);
        drop(busy);
        assert_eq!(pool.work.load(Ordering::Acquire), 0, "no work left in progress");
    }

    #[tokio::test]
    async fn a_run_returns_the_outputs_asked_for_and_a_batch_runs_for_all_its_jobs_ask() {
        let (pool, _, asked) = echo_pool_asked(32).await;
        let outputs = |ran: Ran| ran.tensors.into_keys().collect::<Vec<_>>();
        // Alone: the runner is asked for `twice` alone, and only `twice` comes back.
        let alone = pool.infer(row(1.0), echo_outputs(&["twice"])).await.unwrap();
        assert_eq!(outputs(alone), ["twice"]);
        assert_eq!(*asked.lock().unwrap(), [echo_outputs(&["twice"])]);
        asked.lock().unwrap().clear();
        // Gathered into one batch: the run is asked for both, each job gets its own.
        let busy = Claim::new(&pool.work);
        let (x, twice) = futures_util::join!(
            pool.infer(row(3.0), echo_outputs(&["x"])),
            pool.infer(row(4.0), echo_outputs(&["twice"])),
        );
        let twice = twice.unwrap();
        assert_eq!(twice.tensors["twice"].as_f32().unwrap().as_slice().unwrap(), [8.0]);
        assert_eq!(outputs(twice), ["twice"]);
        assert_eq!(outputs(x.unwrap()), ["x"]);
        assert_eq!(*asked.lock().unwrap(), [echo_outputs(&["x", "twice"])]);
        drop(busy);
    }

    #[tokio::test]
    async fn a_full_gathering_runs_at_once_and_the_next_one_starts() {
        let (pool, runs) = echo_pool(3).await;
        let busy = Claim::new(&pool.work);
        answered_at_once(&pool, 8).await;
        let rows: Vec<usize> = runs.lock().unwrap().iter().map(|&(_, rows)| rows).collect();
        assert_eq!(rows, [3, 3, 2], "batches of at most max_batch_size rows");
        drop(busy);
    }

    #[tokio::test]
    async fn a_lead_whose_client_is_gone_hands_the_gathering_to_the_workers() {
        let (pool, runs) = echo_pool(32).await;
        let busy = Claim::new(&pool.work);
        let mut lead = Box::pin(pool.infer(row(1.0), OutputSet::ALL));
        let mut follower = Box::pin(pool.infer(row(2.0), OutputSet::ALL));
        // The lead yields, the follower joins its gathering; then the lead's client goes.
        assert!(futures_util::poll!(lead.as_mut()).is_pending());
        assert!(futures_util::poll!(follower.as_mut()).is_pending());
        drop(lead);
        let ran = tokio::time::timeout(Duration::from_secs(10), follower).await;
        let ran = ran.expect("the follower is answered").unwrap();
        assert_eq!(ran.tensors["x"].as_f32().unwrap().as_slice().unwrap(), [2.0]);
        // A worker ran it (the lead's own job was skipped: nobody waits for it).
        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert!(runs[0].0.starts_with("model-m-"), "{runs:?}");
        drop(busy);
    }

    #[test]
    fn run_time_is_a_runs_cost_plus_each_rows() {
        let run_time = RunTime::default();
        assert_eq!(run_time.expected(1), None, "unknown before the first run");
        run_time.record(Duration::from_micros(10), 1);
        // Runs of one row only: that run per row, an overestimate for batches.
        assert_eq!(run_time.expected(4), Some(Duration::from_micros(40)));
        // Batches of 9 rows take 26 us: 2 us for each row past the first.
        run_time.record(Duration::from_micros(26), 9);
        assert_eq!(run_time.expected(1), Some(Duration::from_micros(10)));
        assert_eq!(run_time.expected(31), Some(Duration::from_micros(70)));
        // Batches alone known: their time per row, at least one batch's time.
        let batches = RunTime::default();
        batches.record(Duration::from_micros(40), 8);
        assert_eq!(batches.expected(2), Some(Duration::from_micros(40)));
        assert_eq!(batches.expected(16), Some(Duration::from_micros(80)));
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded_at_once() {
        // A pool whose single queue slot nobody drains.
        let (jobs, queue) = crossbeam_channel::bounded(1);
        let metrics = ModelMetrics::new("m", 1);
        let (inline, work, label) = (None, Arc::default(), "m:1".into());
        let (gathering, max_rows) = (Mutex::default(), 64);
        let stats = Arc::default();
        let pool = Pool { jobs, inline, gathering, max_rows, work, label, stats, metrics };
        let inputs = || Tensors::from([("x".to_string(), Tensor::from(ndarray::arr1(&[1.0f32])))]);
        let first = pool.infer(inputs(), OutputSet::ALL);
        tokio::pin!(first);
        let waited = tokio::time::timeout(Duration::from_millis(20), first.as_mut()).await;
        assert!(waited.is_err(), "the first job waits in the queue");
        let started = Instant::now();
        assert!(matches!(pool.infer(inputs(), OutputSet::ALL).await, Err(Error::Overloaded)));
        assert!(started.elapsed() < Duration::from_millis(100), "rejected without waiting");
        // A job dropped unanswered (its worker gone) fails its request cleanly.
        drop(queue.try_recv().expect("the first job is queued"));
        assert!(matches!(first.await, Err(Error::Inference { .. })));
    }
}
