//! Service configuration: one [`Config`], loaded by figment.
//!
//! Sources, later ones winning: the defaults below, then a TOML file (`--config PATH`), then
//! environment variables prefixed `OXISERVE_` with `__` between levels, e.g.
//! `OXISERVE_HTTP__PORT=9000` sets `http.port`. Every key is documented in
//! `docs/configuration.md`; keep the two in step.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration of a service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The gRPC listener (KServe v2); it shares the HTTP host.
    pub grpc: GrpcConfig,
    /// What clients may send and how long they may take, on every listener.
    pub limits: LimitsConfig,
    /// Where models come from and how they run.
    pub models: ModelsConfig,
    /// The ONNX Runtime library.
    pub runtime: RuntimeConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// The response cache.
    pub cache: CacheConfig,
    /// Metrics and trace export.
    pub telemetry: TelemetryConfig,
}

/// Metrics and trace export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Whether metrics are recorded and `GET /metrics` is served.
    pub metrics: bool,
    /// A port of its own for `GET /metrics` (on `http.host`), so that scrapes stay off the
    /// traffic port; unset: the HTTP port serves it.
    pub metrics_port: Option<u16>,
    /// Where spans go, as an OTLP/gRPC endpoint such as `http://otel-collector:4317`; unset:
    /// no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of exported spans; unset: the pipeline's name.
    pub service_name: Option<String>,
    /// Which spans are exported, as a `tracing` filter. The default takes the request span
    /// and oxiserve's stage spans (debug level, so that logs at `info` do not pay for them).
    pub trace_filter: String,
    /// The share of traces exported, from 0 to 1, for requests that come without a sampling
    /// decision; a caller's `traceparent` decides for its own trace.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics: true,
            metrics_port: None,
            otlp_endpoint: None,
            service_name: None,
            trace_filter: "info,oxiserve=debug".into(),
            trace_sample_ratio: 1.0,
        }
    }
}

/// The response cache, for pipelines that opt in with `Pipeline::cache_key`: in process, and
/// optionally shared by replicas through Redis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most answers kept in process; 0 turns the whole cache off.
    pub capacity: u64,
    /// How long an answer is kept, in milliseconds (in process and in Redis).
    pub ttl_ms: u64,
    /// A Redis server shared by the replicas, as `redis://[:password@]host:port[/db]`
    ///. Unset: no shared cache.
    pub redis_url: Option<Secret>,
    /// Deadline of one Redis command, in milliseconds; past it the request goes on without
    /// Redis and Redis is skipped for a second.
    pub redis_timeout_ms: u64,
}

/// The error for a setting (`key`) that needs a Cargo feature this build was compiled without.
pub(crate) fn missing_feature(key: &str, feature: &str) -> Error {
    Error::Config(Box::new(figment::Error::from(format!(
        "`{key}` needs oxiserve's `{feature}` feature, which this build was compiled without"
    ))))
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { capacity: 10_000, ttl_ms: 60_000, redis_url: None, redis_timeout_ms: 50 }
    }
}

/// The admin API (`/admin/...`): on only when a token is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token every admin request must carry. Unset: the admin routes do not exist.
    pub token: Option<Secret>,
}

/// A secret string: usable, but never shown by `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Which versions of a model are loaded and which one serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionPolicy {
    /// Follow the newest published versions, keeping this many loaded (at least 1); the newest
    /// serves, the others answer requests that ask for them.
    Latest(usize),
    /// Load exactly these versions; the highest serves. New versions are ignored.
    Pinned(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::Latest(1)
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to bind. Loopback by default; set `0.0.0.0` in a container.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// After SIGTERM, how long readiness reports 503 while requests are still served, before
    /// new connections are refused: time for load balancers to notice. HTTP/1 answers carry
    /// `Connection: close` meanwhile, so that clients stop reusing their connections.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { host: IpAddr::from([127, 0, 0, 1]), port: 8080, shutdown_grace_ms: 2_000 }
    }
}

/// Every limit on what clients may send and how long they may take, in one place; each is
/// checked before anything is allocated or awaited on a client's behalf. They apply to every
/// listener (HTTP, gRPC, metrics) alike.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body (HTTP) or message (gRPC), in bytes; larger get 413 /
    /// `RESOURCE_EXHAUSTED`. Tensors are decoded only once their data is known to fit it.
    pub body_bytes: usize,
    /// Deadline of a whole request, in milliseconds; later ones get 504 / `DEADLINE_EXCEEDED`.
    /// After shutdown stops accepting, connections get this long to finish, then are closed.
    pub request_timeout_ms: u64,
    /// Connections open at once, across the listeners; past it a new connection is closed at
    /// once. Keep it below the open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// How long a new connection may stay silent before its first bytes, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// HTTP/1: how long a connection may go without a request's headers arriving while no
    /// request is in flight, in milliseconds: headers that never end (a client trickling them)
    /// or a kept-alive connection left idle close past it (within twice it: the timer is
    /// re-armed once a period, not per request).
    pub header_read_timeout_ms: u64,
    /// How long a read or write may wait without progress, in milliseconds: an idle HTTP/2 or
    /// gRPC connection, or a client that stopped reading its answer, is closed past it (within
    /// twice it: the timer is re-armed once a period, not per request). Must exceed
    /// `request_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// How long one look at the local model repository may take, in milliseconds: listing a
    /// model's versions, or loading one (reading, verifying, creating sessions, warming up).
    /// Past it that look fails (a hung mount, a file that never answers) and the other models
    /// and shutdown go on.
    pub store_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            max_connections: 1_000,
            handshake_timeout_ms: 5_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            store_timeout_ms: 120_000,
        }
    }
}

impl LimitsConfig {
    /// Fails, naming the key, on a limit that would refuse everything or cut requests short.
    pub fn check(&self) -> Result<()> {
        let zero = [
            ("body_bytes", self.body_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("store_timeout_ms", self.store_timeout_ms),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, value)| *value == 0) {
            return Err(figment::Error::from(format!("limits.{key} must be above 0")).into());
        }
        if self.idle_timeout_ms <= self.request_timeout_ms {
            return Err(figment::Error::from(format!(
                "limits.idle_timeout_ms ({}) must exceed limits.request_timeout_ms ({}), or \
                 connections waiting for an answer would be closed",
                self.idle_timeout_ms, self.request_timeout_ms
            ))
            .into());
        }
        Ok(())
    }
}

/// The gRPC listener: KServe v2 over gRPC, `grpc.health.v1` and reflection. It binds
/// `http.host`; `limits` apply to it as to HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Whether to serve gRPC at all. By default, whenever the build has the `grpc` feature; a
    /// build without it refuses `true`.
    pub enabled: bool,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self { enabled: cfg!(feature = "grpc"), port: 8081 }
    }
}

/// The model repository and the inference workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The model repository, laid out `<model>/<version>/`: a local directory, or
    /// `s3://bucket/prefix`.
    pub uri: String,
    /// Where versions from a remote repository are mirrored and checked before loading; a
    /// restart with the remote unreachable serves from here.
    pub cache_dir: PathBuf,
    /// The S3 client, when `uri` is `s3://...`.
    pub s3: S3Config,
    /// ONNX Runtime sessions per loaded model, each on its own worker thread (for a remote
    /// model: calls in flight at once); 0 means one per CPU core.
    pub sessions: usize,
    /// Threads ONNX Runtime may use inside one operator of a session run. Small models do
    /// best with 1 and more sessions; large ones with fewer sessions and more threads.
    pub intra_threads: usize,
    /// Threads ONNX Runtime may use to run independent operators of one run in parallel; 1
    /// runs them in sequence (the default, and best for small graphs).
    pub inter_threads: usize,
    /// Inference jobs that may wait for a worker, per model; beyond it requests get 503.
    pub queue_capacity: usize,
    /// What runs the graphs made only of the ONNX-ML operators of linear models and tree
    /// ensembles: `rust` (oxiserve's interpreter, after it gave ONNX Runtime's answers on
    /// probe rows; the default) or `onnxruntime`. Other graphs always run on ONNX Runtime.
    pub onnx_ml: OnnxMl,
    /// How often to look for newly published versions, as `500ms`, `10s` or `1m`; `0s` turns
    /// polling off.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Dynamic batching of the requests waiting for one model version.
    pub batching: BatchingConfig,
    /// The version policy of every model without its own entry in `policies`.
    pub policy: VersionPolicy,
    /// Version policies by model name.
    pub policies: BTreeMap<String, VersionPolicy>,
    /// Run settings of one model that differ from the ones above, by model name.
    pub overrides: BTreeMap<String, RunOverrides>,
    /// Models that run on a KServe v2 gRPC server (Triton, MLServer) instead of in process,
    /// by model name. Their manifests still come from `uri`.
    pub remote: BTreeMap<String, RemoteConfig>,
    /// The automatic rollback of every model without its own entry in `watches`.
    pub watch: WatchConfig,
    /// Automatic rollback settings by model name.
    pub watches: BTreeMap<String, WatchConfig>,
}

/// The automatic rollback: for `window` after a version adopted from the store starts
/// serving, its requests are compared with its predecessor's. If its share of failed requests
/// (500s) is higher by more than `error_margin` (judged as soon as `min_requests` were seen),
/// or its p99 latency over the window more than `latency_factor` times its predecessor's
/// (judged when the window ends), the predecessor serves again and the new version is never
/// adopted.
///
/// On by default: a version that fails requests should stop serving without waiting for an
/// operator, and the margins are wide enough that noise does not trigger it (five points more
/// failures over at least `min_requests` requests, a p99 twice the old one over a whole
/// window).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Whether newly adopted versions are watched and rolled back on their own.
    pub enabled: bool,
    /// How long a new version is watched after it starts serving, as `5m`.
    #[serde(with = "duration_text")]
    pub window: Duration,
    /// Requests the new version must have taken part in before it is judged.
    pub min_requests: u64,
    /// How much higher the new version's share of failed requests may be than its
    /// predecessor's: 0.05 is five percentage points.
    pub error_margin: f64,
    /// How many times its predecessor's p99 latency the new version's may reach (at least 1).
    pub latency_factor: f64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(300),
            min_requests: 50,
            error_margin: 0.05,
            latency_factor: 2.0,
        }
    }
}

impl WatchConfig {
    /// Fails, naming `key`, on a margin that would roll back every version or none.
    fn check(&self, key: &str) -> Result<()> {
        let problem = if !(0.0..1.0).contains(&self.error_margin) {
            Some(format!("{key}.error_margin must be in [0, 1), not {}", self.error_margin))
        } else if self.latency_factor.is_nan() || self.latency_factor < 1.0 {
            Some(format!("{key}.latency_factor must be at least 1, not {}", self.latency_factor))
        } else {
            None
        };
        problem.map_or(Ok(()), |detail| Err(figment::Error::from(detail).into()))
    }
}

/// A model run by a remote KServe v2 server over gRPC. The manifest (signature, metadata) still
/// comes from the repository; the server's model metadata must match it at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// The server's gRPC address, `http://host:port`.
    pub endpoint: String,
    /// The model's name on the server; empty: the local name.
    pub model: String,
    /// The version to ask the server for; empty: the server's choice.
    pub version: String,
    /// Deadline of one call to the server, in milliseconds.
    pub timeout_ms: u64,
    /// Further attempts when a call did not reach the server: it answered `UNAVAILABLE`, or
    /// the connection was refused or lost under the call. Other answers are not retried.
    pub retries: u32,
    /// Wait before the first retry, in milliseconds; it doubles after each.
    pub backoff_ms: u64,
    /// The server's name of each input whose name differs from the manifest's.
    pub inputs: BTreeMap<String, String>,
    /// The server's name of each output whose name differs from the manifest's.
    pub outputs: BTreeMap<String, String>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            model: String::new(),
            version: String::new(),
            timeout_ms: 1_000,
            retries: 2,
            backoff_ms: 50,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }
}

/// How one model version runs: the `models.*` settings with the model's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// ONNX Runtime sessions, each on its own worker thread (never 0).
    pub sessions: usize,
    /// Threads inside one operator.
    pub intra_threads: usize,
    /// Threads across independent operators; above 1 turns on parallel execution.
    pub inter_threads: usize,
    /// Jobs that may wait for a worker.
    pub queue_capacity: usize,
    /// What runs a graph of the ONNX-ML operators oxiserve interprets.
    pub onnx_ml: OnnxMl,
    /// Dynamic batching.
    pub batching: BatchingConfig,
    /// The remote server that runs the model, if it does not run in process.
    pub remote: Option<RemoteConfig>,
}

/// What runs a graph made only of the ONNX-ML operators of linear models and tree ensembles
/// (`LinearClassifier`, `LinearRegressor`, `TreeEnsembleClassifier`, `TreeEnsembleRegressor`,
/// `Scaler`, `Normalizer`, and the `Identity` or `Cast` to FP32 that renames a value).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnnxMl {
    /// oxiserve's interpreter, on the request's thread, once it gave ONNX Runtime's answers
    /// on probe rows at load: tabular-scoring's requests run about a third fewer
    /// instructions than on ONNX Runtime.
    #[default]
    Rust,
    /// ONNX Runtime, as every other graph.
    OnnxRuntime,
}

/// Settings of one model that replace the `models.*` ones; unset fields keep those.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunOverrides {
    /// Replaces `models.sessions`.
    pub sessions: Option<usize>,
    /// Replaces `models.intra_threads`.
    pub intra_threads: Option<usize>,
    /// Replaces `models.inter_threads`.
    pub inter_threads: Option<usize>,
    /// Replaces `models.queue_capacity`.
    pub queue_capacity: Option<usize>,
    /// Replaces `models.onnx_ml`.
    pub onnx_ml: Option<OnnxMl>,
    /// Replaces `models.batching.max_batch_size`.
    pub max_batch_size: Option<usize>,
    /// Replaces `models.batching.max_delay_us`.
    pub max_delay_us: Option<u64>,
    /// Replaces `models.batching.inline_max_us`.
    pub inline_max_us: Option<u64>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            uri: "models".into(),
            cache_dir: PathBuf::from(".cache/models"),
            s3: S3Config::default(),
            sessions: 0,
            intra_threads: 1,
            inter_threads: 1,
            queue_capacity: 1024,
            onnx_ml: OnnxMl::default(),
            poll_interval: Duration::from_secs(10),
            batching: BatchingConfig::default(),
            policy: VersionPolicy::default(),
            policies: BTreeMap::new(),
            overrides: BTreeMap::new(),
            remote: BTreeMap::new(),
            watch: WatchConfig::default(),
            watches: BTreeMap::new(),
        }
    }
}

impl ModelsConfig {
    /// The version policy of `model`.
    pub fn policy_for(&self, model: &str) -> &VersionPolicy {
        for_model(&self.policies, model).unwrap_or(&self.policy)
    }

    /// The automatic rollback settings of `model`.
    pub fn watch_for(&self, model: &str) -> &WatchConfig {
        for_model(&self.watches, model).unwrap_or(&self.watch)
    }

    /// Fails, naming the key, if `models.policies`, `models.overrides`, `models.remote` or
    /// `models.watches` speaks of a model that is not among `models` (a typo would otherwise
    /// be ignored), or if a watch's margins are out of range.
    pub fn check_model_names(&self, models: &[String]) -> Result<()> {
        self.watch.check("models.watch")?;
        for (name, watch) in &self.watches {
            watch.check(&format!("models.watches.{name}"))?;
        }
        let keys = [
            ("policies", self.policies.keys().collect::<Vec<_>>()),
            ("overrides", self.overrides.keys().collect()),
            ("remote", self.remote.keys().collect()),
            ("watches", self.watches.keys().collect()),
        ];
        for (table, names) in keys {
            for name in names {
                if !models.iter().any(|model| same_model(name, model)) {
                    let detail = format!(
                        "models.{table}.{name}: the pipeline has no model `{name}` (its models: {})",
                        models.join(", ")
                    );
                    return Err(figment::Error::from(detail).into());
                }
            }
        }
        Ok(())
    }

    /// How `model` runs: these settings with its overrides, `sessions = 0` resolved to the
    /// CPU count.
    pub fn run_config(&self, model: &str) -> RunConfig {
        let overrides = for_model(&self.overrides, model).cloned().unwrap_or_default();
        let sessions = match overrides.sessions.unwrap_or(self.sessions) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        RunConfig {
            sessions,
            intra_threads: overrides.intra_threads.unwrap_or(self.intra_threads),
            inter_threads: overrides.inter_threads.unwrap_or(self.inter_threads),
            queue_capacity: overrides.queue_capacity.unwrap_or(self.queue_capacity),
            onnx_ml: overrides.onnx_ml.unwrap_or(self.onnx_ml),
            batching: BatchingConfig {
                max_batch_size: overrides.max_batch_size.unwrap_or(self.batching.max_batch_size),
                max_delay_us: overrides.max_delay_us.unwrap_or(self.batching.max_delay_us),
                inline_max_us: overrides.inline_max_us.unwrap_or(self.batching.inline_max_us),
            },
            remote: for_model(&self.remote, model).cloned(),
        }
    }
}

/// The entry of a per-model table for `model`. Environment variables cannot spell `-`, so
/// `OXISERVE_MODELS__REMOTE__PENGUINS_LINEAR__ENDPOINT` names `penguins-linear`: a key matches
/// a model whose name equals it with `-` written as `_`.
fn for_model<'a, T>(table: &'a BTreeMap<String, T>, model: &str) -> Option<&'a T> {
    table
        .get(model)
        .or_else(|| table.iter().find(|(key, _)| same_model(key, model)).map(|(_, v)| v))
}

/// Whether a per-model key names `model` (see [`for_model`]).
fn same_model(key: &str, model: &str) -> bool {
    key == model || key == model.replace('-', "_")
}

/// Dynamic batching: requests waiting for the same model version run as one batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most rows in one batch; 1 turns batching off.
    pub max_batch_size: usize,
    /// How long a worker waits for more requests after the first, in microseconds. 0 batches
    /// only requests already waiting, adding no latency.
    pub max_delay_us: u64,
    /// A model whose runs are expected to take less than this many microseconds (from its
    /// recent runs) runs on the requests' own threads, skipping the queue and the hand-off to
    /// a worker thread: alone when no other work is in progress on it, else in a batch
    /// gathered from the requests ready at the same time. 0 sends every run through the
    /// queue, and so does a `max_delay_us` above 0 (it asks for batches), or a model run by a
    /// remote server.
    pub inline_max_us: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self { max_batch_size: 32, max_delay_us: 0, inline_max_us: 100 }
    }
}

/// The S3 client. Credentials come from the standard AWS chain (`AWS_ACCESS_KEY_ID`, profile,
/// instance role) and are never part of this configuration or its logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// A custom endpoint (MinIO, moto, Ceph); `AWS_ENDPOINT_URL` also works. Custom endpoints
    /// use path-style addressing.
    pub endpoint: Option<String>,
    /// Region when the AWS chain gives none.
    pub region: String,
    /// Files downloaded at once, across all models.
    pub max_concurrent_downloads: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        Self { endpoint: None, region: "us-east-1".into(), max_concurrent_downloads: 4 }
    }
}

/// Where the ONNX Runtime shared library is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. When unset, `ORT_DYLIB_PATH` is used, then the cache that
    /// `cargo xtask setup` fills (`.cache/onnxruntime/` in the working directory or a parent).
    pub onnxruntime_library: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `oxiserve=debug,info`. `RUST_LOG` overrides it.
    pub filter: String,
    /// How lines are written: `json` (one object a line, for log collectors) or `pretty`
    /// (for people; `cargo xtask serve` picks it).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object a line, with the fields of every open span (the request id among them).
    #[default]
    Json,
    /// Human-readable lines, coloured on a terminal.
    Pretty,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".into(), format: LogFormat::Json }
    }
}

impl Config {
    /// Loads defaults, then `file` if given, then `OXISERVE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_over(Config::default(), file)
    }

    /// Loads `defaults` (a service's, see `Pipeline::defaults`), then `file` if given, then
    /// `OXISERVE_*` environment variables.
    pub fn load_over(defaults: Config, file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        Ok(figment.merge(Env::prefixed("OXISERVE_").split("__")).extract()?)
    }
}

/// Durations written as text: a number followed by `ms`, `s`, `m` or `h`; a bare number is
/// seconds.
mod duration_text {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", duration.as_millis()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(u64),
            Text(String),
        }
        match Text::deserialize(deserializer)? {
            Text::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
            Text::Text(text) => parse(&text).ok_or_else(|| {
                D::Error::custom(format!("`{text}` is not a duration such as `500ms`, `10s`, `1m`"))
            }),
        }
    }

    pub(super) fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let millis = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        Some(Duration::from_millis(number.checked_mul(millis)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn later_sources_override_earlier_ones() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oxiserve.toml",
                "[http]\nport = 9000\nhost = \"0.0.0.0\"\n\
                 [models.policies]\npenguins = { pinned = [3, 4] }\n\
                 [models.overrides.penguins]\nsessions = 3\nmax_delay_us = 250\n",
            )?;
            jail.set_env("OXISERVE_HTTP__PORT", "9100");
            jail.set_env("OXISERVE_MODELS__URI", "/srv/models");
            jail.set_env("OXISERVE_MODELS__POLL_INTERVAL", "250ms");
            jail.set_env("OXISERVE_MODELS__POLICY__LATEST", "2");
            jail.set_env("OXISERVE_ADMIN__TOKEN", "hunter2");
            let config =
                Config::load(Some(Path::new("oxiserve.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.http.port, 9100, "env beats file");
            assert_eq!(config.http.host, IpAddr::from([0, 0, 0, 0]), "file beats defaults");
            assert_eq!(config.models.uri, "/srv/models");
            assert_eq!(config.models.poll_interval, Duration::from_millis(250));
            assert_eq!(config.models.policy_for("other"), &VersionPolicy::Latest(2));
            assert_eq!(config.models.policy_for("penguins"), &VersionPolicy::Pinned(vec![3, 4]));
            let penguins = config.models.run_config("penguins");
            assert_eq!((penguins.sessions, penguins.batching.max_delay_us), (3, 250));
            let defaults = &config.models;
            assert_eq!(penguins.batching.max_batch_size, defaults.batching.max_batch_size);
            assert_eq!(penguins.queue_capacity, defaults.queue_capacity, "unset keeps the default");
            assert_eq!(config.models.run_config("other").batching, defaults.batching);
            let token = config.admin.token.as_ref().expect("the token is set");
            assert_eq!(token.expose(), "hunter2");
            assert!(!format!("{config:?}").contains("hunter2"), "Debug redacts the token");
            assert_eq!(config.limits, LimitsConfig::default());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn environment_variables_name_models_with_dashes_and_typos_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "OXISERVE_MODELS__REMOTE__PENGUINS_LINEAR__ENDPOINT",
                "http://triton:8001",
            );
            jail.set_env("OXISERVE_MODELS__OVERRIDES__PENGUINS_FOREST__SESSIONS", "3");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            let models = ["penguins-linear".to_string(), "penguins-forest".to_string()];
            config.models.check_model_names(&models).map_err(|e| e.to_string())?;
            let linear = config.models.run_config("penguins-linear");
            assert_eq!(linear.remote.map(|r| r.endpoint).as_deref(), Some("http://triton:8001"));
            assert_eq!(config.models.run_config("penguins-forest").sessions, 3);
            assert!(config.models.run_config("penguins-forest").remote.is_none());

            jail.set_env("OXISERVE_MODELS__POLICIES__PENGUINS_LINER__LATEST", "2");
            let typo = Config::load(None).map_err(|e| e.to_string())?;
            let error = typo.models.check_model_names(&models).unwrap_err().to_string();
            assert!(error.contains("models.policies.penguins_liner"), "{error}");
            assert!(error.contains("penguins-linear, penguins-forest"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[http]\nprot = 1\n")?;
            let typo = Config::load(Some(Path::new("typo.toml"))).unwrap_err().to_string();
            assert!(typo.contains("prot"), "{typo}");
            let missing = Config::load(Some(Path::new("absent.toml"))).unwrap_err().to_string();
            assert!(missing.contains("absent.toml"), "{missing}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn the_documented_example_file_loads() {
        let docs = include_str!("../../../docs/configuration.md");
        let example = docs
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/configuration.md has a TOML example");
        figment::Jail::expect_with(|jail| {
            jail.create_file("example.toml", example)?;
            let config =
                Config::load(Some(Path::new("example.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.models.run_config("penguins-forest").intra_threads, 2);
            Ok(())
        });
    }

    #[test]
    fn limits_that_refuse_everything_or_cut_answers_short_are_errors() {
        assert!(LimitsConfig::default().check().is_ok());
        let none = LimitsConfig { max_connections: 0, ..LimitsConfig::default() };
        assert!(none.check().unwrap_err().to_string().contains("limits.max_connections"));
        let short = LimitsConfig { idle_timeout_ms: 5_000, ..LimitsConfig::default() };
        assert!(short.check().unwrap_err().to_string().contains("limits.idle_timeout_ms"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let parse = duration_text::parse;
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        assert_eq!(parse("ten seconds"), None);
        assert_eq!(parse("5d"), None);
    }
}
