//! The in-process backend: a pool of ONNX Runtime sessions, one per worker thread.
//!
//! `Session::run` needs `&mut self`, so each worker thread owns one session and takes jobs from
//! a bounded queue shared by the pool, several at a time when they can be batched (see
//! `model::batch`); replies travel back on a oneshot channel. Async request
//! handlers therefore never block, concurrent requests never wait on a session lock, and a full
//! queue turns into [`Error::Overloaded`] instead of unbounded memory. Dropping the backend
//! closes the queue: workers finish the jobs already queued, then exit and free their sessions,
//! which is how an old model version drains.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ndarray::ArrayD;
use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use tokio::sync::oneshot;

use super::batch::{self, Batcher, Job, Padding, Ran};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::model::manifest::{Manifest, TensorSpec};
use crate::tensor::{DataType, Tensor, Tensors};

/// A pool of sessions of one model version behind a bounded job queue.
#[derive(Debug)]
pub(crate) struct OnnxBackend {
    jobs: Sender<Job>,
    label: String,
    stats: Arc<RunStats>,
}

/// How many runs the sessions made and how many rows they carried: rows per run above one
/// is batching at work.
#[derive(Debug, Default)]
pub struct RunStats {
    runs: AtomicU64,
    rows: AtomicU64,
}

impl RunStats {
    /// Session runs so far.
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

impl OnnxBackend {
    /// Creates the sessions from `graph`, checks the first against the manifest's signature
    /// and `padding` against the manifest, warms every session up with a zero input, then
    /// starts the worker threads.
    ///
    /// Blocking: call from a blocking thread.
    pub(crate) fn start(
        manifest: &Manifest,
        graph: &[u8],
        config: &RunConfig,
        padding: &Padding,
        environment: &Environment,
    ) -> Result<Self> {
        let label = manifest.label();
        let failed = |detail: String| Error::Inference { model: label.clone(), detail };
        padding.check(manifest).map_err(failed)?;
        let mut builder = session_builder(environment, config)
            .map_err(|e| failed(format!("cannot configure a session: {e}")))?;
        let warmup = zero_inputs(&manifest.inputs).map_err(|e| failed(e.to_string()))?;
        let (jobs, queue) = crossbeam_channel::bounded(config.queue_capacity);
        let stats = Arc::new(RunStats::default());
        let batching = &config.batching;
        let batcher = Batcher::new(
            manifest,
            batching.max_batch_size,
            Duration::from_micros(batching.max_delay_us),
        );
        for index in 0..config.sessions {
            let session = builder
                .commit_from_memory(graph)
                .map_err(|e| failed(format!("cannot load the ONNX graph: {e}")))?;
            if index == 0 {
                check_signature(&session, manifest).map_err(failed)?;
            }
            let mut worker = Worker {
                session,
                outputs: manifest.outputs.clone(),
                label: label.clone(),
                batcher,
                padding: padding.clone(),
                stats: Arc::clone(&stats),
            };
            worker.run(&warmup).map_err(|e| failed(format!("warm-up run failed: {e}")))?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("ort-{}-{index}", manifest.name))
                .spawn(move || worker.serve(queue))
                .map_err(|e| Error::io("starting an inference worker", e))?;
        }
        Ok(Self { jobs, label, stats })
    }

    /// Run counts of this version's sessions.
    pub(crate) fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Runs the model on `inputs` on a free worker.
    pub(crate) async fn infer(&self, inputs: Tensors) -> Result<Ran> {
        let (reply, answer) = oneshot::channel();
        let job = Job { inputs, reply, span: tracing::Span::current(), queued_at: Instant::now() };
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

/// A worker thread's state: its own session and the outputs to read back.
struct Worker {
    session: Session,
    outputs: Vec<TensorSpec>,
    label: String,
    batcher: Batcher,
    padding: Padding,
    stats: Arc<RunStats>,
}

impl Worker {
    /// Takes batches of jobs until the queue closes.
    fn serve(mut self, queue: Receiver<Job>) {
        while let Some(mut jobs) = self.batcher.next(&queue) {
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
        let result = job.span.in_scope(|| self.run_counted(&job.inputs));
        let ran = result.map(|tensors| Ran {
            tensors,
            queued: start - job.queued_at,
            computed: start.elapsed(),
        });
        // A closed reply channel only means the client went away meanwhile.
        let _ = job.reply.send(ran);
    }

    /// Runs several jobs as one batch; if the batch cannot be formed or fails, each job runs
    /// alone, so every client gets its own precise answer.
    fn answer_batch(&mut self, jobs: Vec<Job>) {
        let span = jobs[0].span.clone();
        let start = Instant::now();
        let outputs = span.in_scope(|| {
            batch::merge(&jobs, &self.padding).and_then(|inputs| self.run_counted(&inputs))
        });
        let computed = start.elapsed();
        match outputs.and_then(|outputs| batch::split(&jobs, &outputs, &self.padding)) {
            Ok(parts) => {
                for (job, tensors) in jobs.into_iter().zip(parts) {
                    let queued = start - job.queued_at;
                    let _ = job.reply.send(Ok(Ran { tensors, queued, computed }));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "batch failed; running its jobs one by one");
                jobs.into_iter().for_each(|job| self.answer_alone(job));
            }
        }
    }

    /// Runs the session and counts the run.
    fn run_counted(&mut self, inputs: &Tensors) -> Result<Tensors> {
        let outputs = self
            .run(inputs)
            .map_err(|e| Error::Inference { model: self.label.clone(), detail: e.to_string() })?;
        self.stats.record(inputs.values().next().map_or(0, Tensor::rows));
        Ok(outputs)
    }

    fn run(&mut self, inputs: &Tensors) -> Result<Tensors, ort::Error> {
        let values = inputs
            .iter()
            .map(|(name, tensor)| Ok((name.as_str(), input_value(tensor)?)))
            .collect::<Result<Vec<(&str, SessionInputValue<'_>)>, ort::Error>>()?;
        let outputs = self.session.run(values)?;
        self.outputs
            .iter()
            .filter_map(|spec| Some((spec, outputs.get(&spec.name)?)))
            .map(|(spec, value)| Ok((spec.name.clone(), output_tensor(spec.datatype, value)?)))
            .collect()
    }
}

/// A session builder with the threads of `config`.
fn session_builder(
    environment: &Environment,
    config: &RunConfig,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    let builder = Session::builder(environment)?.with_intra_threads(config.intra_threads)?;
    if config.inter_threads > 1 {
        Ok(builder.with_parallel_execution(true)?.with_inter_threads(config.inter_threads)?)
    } else {
        Ok(builder)
    }
}

/// Borrows a tensor as a session input without copying.
fn input_value(tensor: &Tensor) -> Result<SessionInputValue<'_>, ort::Error> {
    Ok(match tensor {
        Tensor::F32(a) => TensorRef::from_array_view(a.view())?.into(),
        Tensor::F64(a) => TensorRef::from_array_view(a.view())?.into(),
        Tensor::I32(a) => TensorRef::from_array_view(a.view())?.into(),
        Tensor::I64(a) => TensorRef::from_array_view(a.view())?.into(),
    })
}

/// Copies a session output into an owned tensor of the declared datatype.
fn output_tensor(datatype: DataType, value: &DynValue) -> Result<Tensor, ort::Error> {
    Ok(match datatype {
        DataType::Fp32 => Tensor::F32(value.try_extract_array::<f32>()?.to_owned()),
        DataType::Fp64 => Tensor::F64(value.try_extract_array::<f64>()?.to_owned()),
        DataType::Int32 => Tensor::I32(value.try_extract_array::<i32>()?.to_owned()),
        DataType::Int64 => Tensor::I64(value.try_extract_array::<i64>()?.to_owned()),
        other => {
            return Err(ort::Error::new(format!("{other} outputs are not supported yet")));
        }
    })
}

/// Zero-filled inputs of the declared shapes, with every dynamic dimension set to 1.
fn zero_inputs(specs: &[TensorSpec]) -> Result<Tensors> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> =
                spec.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
            let tensor = match spec.datatype {
                DataType::Fp32 => Tensor::F32(ArrayD::zeros(shape)),
                DataType::Fp64 => Tensor::F64(ArrayD::zeros(shape)),
                DataType::Int32 => Tensor::I32(ArrayD::zeros(shape)),
                DataType::Int64 => Tensor::I64(ArrayD::zeros(shape)),
                other => {
                    return Err(Error::pipeline(format!(
                        "input `{}` is {other}, which the ONNX backend does not support yet",
                        spec.name
                    )));
                }
            };
            Ok((spec.name.clone(), tensor))
        })
        .collect()
}

/// Compares the session's real inputs and outputs with the manifest's; the error lists every
/// difference.
fn check_signature(session: &Session, manifest: &Manifest) -> Result<(), String> {
    let actual = |outlets: &[ort::value::Outlet]| -> BTreeMap<String, String> {
        outlets.iter().map(|o| (o.name().to_string(), describe_value(o.dtype()))).collect()
    };
    let declared = |specs: &[TensorSpec]| -> BTreeMap<String, String> {
        specs.iter().map(|s| (s.name.clone(), format!("{} {:?}", s.datatype, s.shape))).collect()
    };
    let mut differences = Vec::new();
    for (kind, real, claimed) in [
        ("input", actual(session.inputs()), declared(&manifest.inputs)),
        ("output", actual(session.outputs()), declared(&manifest.outputs)),
    ] {
        for name in real.keys().chain(claimed.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (real.get(name), claimed.get(name)) {
                (Some(r), Some(c)) if r == c => {}
                (r, c) => differences.push(format!(
                    "{kind} `{name}`: model has {}, manifest says {}",
                    r.map_or("nothing", String::as_str),
                    c.map_or("nothing", String::as_str)
                )),
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("signature does not match the manifest: {}", differences.join("; ")))
    }
}

/// A session outlet's type in the manifest's words, e.g. `FP32 [-1, 9]`.
fn describe_value(value: &ValueType) -> String {
    match value {
        ValueType::Tensor { ty, shape, .. } => match datatype_of(*ty) {
            Some(datatype) => format!("{datatype} {:?}", shape.to_vec()),
            None => format!("unsupported element type {ty}"),
        },
        other => format!("a non-tensor value ({other})"),
    }
}

/// The KServe datatype of an ONNX element type, where there is one.
fn datatype_of(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_overloaded_at_once() {
        // A backend whose single queue slot nobody drains.
        let (jobs, queue) = crossbeam_channel::bounded(1);
        let backend = OnnxBackend { jobs, label: "m:1".into(), stats: Arc::default() };
        let inputs = || Tensors::from([("x".to_string(), Tensor::from(ndarray::arr1(&[1.0f32])))]);
        let first = backend.infer(inputs());
        tokio::pin!(first);
        let waited = tokio::time::timeout(Duration::from_millis(20), first.as_mut()).await;
        assert!(waited.is_err(), "the first job waits in the queue");
        let started = Instant::now();
        assert!(matches!(backend.infer(inputs()).await, Err(Error::Overloaded)));
        assert!(started.elapsed() < Duration::from_millis(100), "rejected without waiting");
        // A job dropped unanswered (its worker gone) fails its request cleanly.
        drop(queue.try_recv().expect("the first job is queued"));
        assert!(matches!(first.await, Err(Error::Inference { .. })));
    }
}
