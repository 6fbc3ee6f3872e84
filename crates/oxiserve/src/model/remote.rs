//! The remote backend: a model run by a KServe v2 server over gRPC (Triton, MLServer) instead
//! of in process, chosen by `models.remote.<model>` with no change to the pipeline.
//!
//! The model still has its manifest from the repository (signature and the metadata a
//! pipeline reads); at load, the server's model metadata must match it (names through the
//! configured renames, ranks, fixed dimensions, numeric datatypes that convert). The workers of
//! the model's pool share one HTTP/2 connection; each sends its job (or batch) as one
//! `ModelInfer` call with raw tensor contents, a deadline, the request's `traceparent`, and
//! retries with doubling backoff when the call never reached the server: it answered
//! `UNAVAILABLE`, or the connection was refused, reset or closed under the call (a server that
//! stopped leaves the shared connection dead until the client notices). Any other answer of
//! the server is not retried.
//! Outputs are converted to the manifest's datatypes and names, so batching and the response
//! cache in front work as for a local model.
//!
//! Availability: a model whose server stopped answering is unavailable (readiness turns 503)
//! until a probe every second finds it ready again; its requests fail with
//! [`Error::RemoteUnavailable`] (503) meanwhile.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::selection::OutputSet;
use super::worker::Runner;
use crate::config::RemoteConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TensorSpec};
use crate::protocol::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::protocol::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use crate::protocol::proto::inference::model_metadata_response::TensorMetadata;
use crate::protocol::proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelReadyRequest,
};
use crate::protocol::{contents, tensor_data};
use crate::telemetry;
use crate::tensor::{DataType, Tensors};

/// How often an unavailable model's server is asked whether the model is ready again, and how
/// often a loading model waits for it.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A manifest tensor and the server's name and datatype for it.
#[derive(Debug)]
struct Binding {
    local: TensorSpec,
    remote: String,
    datatype: DataType,
}

/// What every worker of one remote model version shares.
#[derive(Debug)]
struct Target {
    label: String,
    config: RemoteConfig,
    model: String,
    inputs: Vec<Binding>,
    outputs: Vec<Binding>,
    available: AtomicBool,
}

/// A worker's runner: a handle on the shared connection.
pub(super) struct RemoteModel {
    client: GrpcInferenceServiceClient<Channel>,
    runtime: Handle,
    target: Arc<Target>,
}

/// Whether a remote model's server answers, kept up to date by calls and a probe; dropping it
/// stops the probe.
#[derive(Debug)]
pub(crate) struct Availability {
    target: Arc<Target>,
    probe: tokio::task::JoinHandle<()>,
}

impl Availability {
    /// Whether the server answered the last call or probe.
    pub(crate) fn is_available(&self) -> bool {
        self.target.available.load(Ordering::Acquire)
    }
}

impl Drop for Availability {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// Connects to the server of `config`, waits until it reports the model ready (logging while
/// it does not), checks its metadata against `manifest`, and returns `sessions` runners on one
/// connection with the model's availability.
pub(super) async fn connect(
    manifest: &Manifest,
    config: &RemoteConfig,
    sessions: usize,
) -> Result<(Vec<RemoteModel>, Availability)> {
    let label = manifest.label();
    let model = if config.model.is_empty() { manifest.name.clone() } else { config.model.clone() };
    let channel = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| {
            let detail =
                format!("models.remote: `{}` is not a gRPC endpoint: {e}", config.endpoint);
            Error::from(figment::Error::from(detail))
        })?
        .connect_timeout(Duration::from_millis(config.timeout_ms))
        .connect_lazy();
    let mut client = GrpcInferenceServiceClient::new(channel);
    while let Err(why) = model_ready(&mut client, &model, &config.version).await {
        tracing::warn!(model = %label, endpoint = %config.endpoint, %why, "waiting for the remote model");
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    let request = ModelMetadataRequest { name: model.clone(), version: config.version.clone() };
    let metadata = client
        .model_metadata(request)
        .await
        .map_err(|status| {
            let detail = format!("remote metadata: {}", status.message());
            Error::RemoteUnavailable {
                model: label.clone(),
                endpoint: config.endpoint.clone(),
                detail,
            }
        })?
        .into_inner();
    let (inputs, outputs) = match (
        bind(&manifest.inputs, &metadata.inputs, &config.inputs),
        bind(&manifest.outputs, &metadata.outputs, &config.outputs),
    ) {
        (Ok(inputs), Ok(outputs)) => (inputs, outputs),
        (inputs, outputs) => {
            let problems: Vec<String> =
                [inputs.err(), outputs.err()].into_iter().flatten().flatten().collect();
            return Err(Error::pipeline(format!(
                "{label}: model `{model}` on {} does not match the manifest: {}",
                config.endpoint,
                problems.join("; ")
            )));
        }
    };
    tracing::info!(model = %label, endpoint = %config.endpoint, remote = %model, "remote model bound");
    let target = Arc::new(Target {
        label,
        config: config.clone(),
        model,
        inputs,
        outputs,
        available: AtomicBool::new(true),
    });
    let runtime = Handle::current();
    let runners = (0..sessions)
        .map(|_| RemoteModel {
            client: client.clone(),
            runtime: runtime.clone(),
            target: Arc::clone(&target),
        })
        .collect();
    let probe = tokio::spawn(probe(client, Arc::clone(&target)));
    Ok((runners, Availability { target, probe }))
}

/// Ok when the server says the model is ready; else why not.
async fn model_ready(
    client: &mut GrpcInferenceServiceClient<Channel>,
    model: &str,
    version: &str,
) -> Result<(), String> {
    let request = ModelReadyRequest { name: model.to_string(), version: version.to_string() };
    match client.model_ready(request).await {
        Ok(response) if response.get_ref().ready => Ok(()),
        Ok(_) => Err("the server says the model is not ready".into()),
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// Every [`PROBE_INTERVAL`] while the model is unavailable, asks the server whether it is
/// ready again.
async fn probe(mut client: GrpcInferenceServiceClient<Channel>, target: Arc<Target>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if target.available.load(Ordering::Acquire) {
            continue;
        }
        if model_ready(&mut client, &target.model, &target.config.version).await.is_ok() {
            tracing::info!(model = %target.label, "remote model available again");
            target.available.store(true, Ordering::Release);
        }
    }
}

/// Pairs each manifest tensor with the server's, by name through `renames`; the error lists
/// every mismatch.
fn bind(
    specs: &[TensorSpec],
    remote: &[TensorMetadata],
    renames: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Binding>, Vec<String>> {
    let mut problems = Vec::new();
    let mut bindings = Vec::new();
    for spec in specs {
        let name = renames.get(&spec.name).unwrap_or(&spec.name);
        let Some(theirs) = remote.iter().find(|t| &t.name == name) else {
            problems.push(format!("the server has no tensor `{name}` for `{}`", spec.name));
            continue;
        };
        let datatype = DataType::parse(&theirs.datatype);
        let convertible = |d: DataType| {
            matches!(d, DataType::Fp32 | DataType::Fp64 | DataType::Int32 | DataType::Int64)
        };
        let datatype = match datatype {
            Some(datatype) if datatype == spec.datatype => datatype,
            Some(datatype) if convertible(datatype) && convertible(spec.datatype) => datatype,
            _ => {
                problems.push(format!(
                    "`{name}` is {} on the server, {} in the manifest",
                    theirs.datatype, spec.datatype
                ));
                continue;
            }
        };
        let fits = theirs.shape.len() == spec.shape.len()
            && theirs.shape.iter().zip(&spec.shape).all(|(&a, &b)| a < 0 || b < 0 || a == b);
        if !fits {
            problems.push(format!(
                "`{name}` has shape {:?} on the server, {:?} in the manifest",
                theirs.shape, spec.shape
            ));
            continue;
        }
        bindings.push(Binding { local: spec.clone(), remote: name.clone(), datatype });
    }
    if problems.is_empty() { Ok(bindings) } else { Err(problems) }
}

impl Runner for RemoteModel {
    const INLINE: bool = false;

    /// Asks the server for `outputs` alone.
    fn run(&mut self, inputs: &Tensors, outputs: OutputSet, context: &Context) -> Result<Tensors> {
        let request = self.target.request(inputs, outputs)?;
        let response = self.call(request, context)?;
        self.target.outputs(response, outputs)
    }
}

impl RemoteModel {
    /// Sends `request`, retrying on `UNAVAILABLE` with doubling waits. Each attempt waits for
    /// the configured timeout, or for what is left of the request's deadline when that is less.
    fn call(
        &mut self,
        request: ModelInferRequest,
        context: &Context,
    ) -> Result<ModelInferResponse> {
        let config = &self.target.config;
        let mut wait = Duration::from_millis(config.backoff_ms);
        let mut attempt = 0;
        // The calling span's context when spans are exported, else the caller's, unchanged.
        let traceparent = telemetry::traceparent(&tracing::Span::current())
            .or_else(|| context.traceparent().map(str::to_string));
        loop {
            let mut outgoing = tonic::Request::new(request.clone());
            let limit = Duration::from_millis(config.timeout_ms);
            let left = context.remaining().map_or(limit, |left| left.max(Duration::from_millis(1)));
            outgoing.set_timeout(limit.min(left));
            if let Some(value) = traceparent.as_deref().and_then(|t| t.parse().ok()) {
                outgoing.metadata_mut().insert("traceparent", value);
            }
            match self.runtime.block_on(self.client.model_infer(outgoing)) {
                Ok(response) => {
                    self.target.available.store(true, Ordering::Release);
                    return Ok(response.into_inner());
                }
                Err(status) if unreached(&status) && attempt < config.retries => {
                    attempt += 1;
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(status) => return Err(self.target.failure(&status)),
            }
        }
    }
}

impl Target {
    /// The bindings of the outputs in `wanted` (the bindings follow the manifest's order).
    fn wanted(&self, wanted: OutputSet) -> impl Iterator<Item = &Binding> {
        self.outputs.iter().enumerate().filter(move |&(i, _)| wanted.contains(i)).map(|(_, b)| b)
    }

    /// The call for `inputs`: every input under the server's name and datatype, as raw bytes,
    /// and the outputs in `wanted`.
    fn request(&self, inputs: &Tensors, wanted: OutputSet) -> Result<ModelInferRequest> {
        let mut request = ModelInferRequest {
            model_name: self.model.clone(),
            model_version: self.config.version.clone(),
            ..Default::default()
        };
        for binding in &self.inputs {
            let tensor = inputs.get(&binding.local.name).ok_or_else(|| Error::Inference {
                model: self.label.clone(),
                detail: format!("input `{}` is missing", binding.local.name),
            })?;
            let tensor = tensor.clone().cast(binding.datatype)?;
            let mut bytes = Vec::new();
            tensor_data::write_raw(&tensor, &mut bytes);
            request.raw_input_contents.push(bytes);
            request.inputs.push(InferInputTensor {
                name: binding.remote.clone(),
                datatype: binding.datatype.to_string(),
                shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                ..Default::default()
            });
        }
        request.outputs = self
            .wanted(wanted)
            .map(|b| InferRequestedOutputTensor { name: b.remote.clone(), ..Default::default() })
            .collect();
        Ok(request)
    }

    /// The manifest's outputs in `wanted` from the server's answer.
    fn outputs(&self, response: ModelInferResponse, wanted: OutputSet) -> Result<Tensors> {
        let bad = |detail: String| Error::Inference { model: self.label.clone(), detail };
        let raw = response.raw_output_contents;
        let mut outputs = Tensors::new();
        for (index, output) in response.outputs.into_iter().enumerate() {
            let Some(binding) = self.wanted(wanted).find(|b| b.remote == output.name) else {
                continue;
            };
            let datatype = DataType::parse(&output.datatype)
                .ok_or_else(|| bad(format!("the server answered datatype {}", output.datatype)))?;
            let mut shape: Vec<usize> = output.shape.iter().map(|&d| d.max(0) as usize).collect();
            // Some servers answer a label vector as `[n, 1]` where the manifest says `[n]`.
            while shape.len() > binding.local.shape.len() && shape.last() == Some(&1) {
                shape.pop();
            }
            let tensor = match (raw.get(index), output.contents) {
                (Some(bytes), _) => tensor_data::from_raw(datatype, &shape, bytes),
                (None, Some(typed)) => contents::read(datatype, &shape, typed),
                (None, None) => Err(format!("output `{}` came without data", output.name)),
            }
            .map_err(bad)?;
            outputs.insert(binding.local.name.clone(), tensor.cast(binding.local.datatype)?);
        }
        match self.wanted(wanted).find(|b| !outputs.contains_key(&b.local.name)) {
            Some(missing) => Err(bad(format!("the server did not answer `{}`", missing.remote))),
            None => Ok(outputs),
        }
    }

    /// The error for a failed call; a server that is unavailable or unreachable makes the
    /// model unavailable until the probe finds it ready again.
    fn failure(&self, status: &Status) -> Error {
        let detail = format!("{:?}: {}", status.code(), status.message());
        let busy = matches!(status.code(), Code::DeadlineExceeded | Code::ResourceExhausted);
        if status.code() == Code::NotFound || unreached(status) {
            self.available.store(false, Ordering::Release);
            self.unavailable(detail)
        } else if busy || timed_out(status) {
            self.unavailable(detail)
        } else {
            Error::Inference { model: self.label.clone(), detail }
        }
    }

    fn unavailable(&self, detail: String) -> Error {
        Error::RemoteUnavailable {
            model: self.label.clone(),
            endpoint: self.config.endpoint.clone(),
            detail,
        }
    }
}

/// Whether a call failed before the server could answer it: the server said `UNAVAILABLE`,
/// or the client's transport failed (a connection refused, reset or closed under the call).
/// tonic makes the latter's status from the transport's error and keeps that error as the
/// status's source, whatever code it picks (`UNKNOWN`, `INTERNAL`, `CANCELLED`); a status the
/// server answered has no source. The client's own deadline is a source too, and not this.
fn unreached(status: &Status) -> bool {
    status.code() == Code::Unavailable || (status.source().is_some() && !timed_out(status))
}

/// Whether the call ran out of the deadline the client set on it.
fn timed_out(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_call_that_lost_its_connection_never_reached_the_server() {
        // What tonic makes of a connection reset under a call: its own code, the error kept.
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer");
        let lost = Status::from_error(Box::new(reset));
        assert_ne!(lost.code(), Code::Unavailable);
        assert!(unreached(&lost) && !timed_out(&lost));
        assert!(unreached(&Status::unavailable("the server is shutting down")));
    }

    #[test]
    fn the_servers_own_answers_and_the_clients_deadline_reached_it() {
        for answered in [Status::internal("model failed"), Status::invalid_argument("shape")] {
            assert!(!unreached(&answered) && !timed_out(&answered), "{answered:?}");
        }
        let expired = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert!(timed_out(&expired) && !unreached(&expired), "{expired:?}");
    }
}
