//! Running a service: command line, configuration, logging, start-up order, shutdown.
//!
//! Start-up order: load the ONNX Runtime library (a missing one stops the process at once),
//! bind and serve HTTP and gRPC (liveness answers, readiness says 503 / NOT_SERVING), load
//! and warm every model, report ready, then poll the repository for new versions every
//! `models.poll_interval`. A model with no version that loads stops the process with the
//! error, which names the file at fault.
//!
//! Shutdown: SIGTERM turns readiness off and serves on for `http.shutdown_grace_ms` (HTTP/1
//! answers say `Connection: close` meanwhile), then every server stops accepting connections;
//! Ctrl-C skips the wait. Requests already sent finish; connections still open
//! `limits.request_timeout_ms` later are dropped, so a shutdown ends within grace + deadline
//! whatever clients do. A second SIGTERM or Ctrl-C drops them at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::cache::ResponseCache;
use crate::config::Config;
use crate::connections::{Connections, Shutdown, Stage};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::http;
use crate::model::Loader;
use crate::pipeline::Pipeline;
use crate::telemetry;

/// The command line every service accepts.
#[derive(Debug, Parser)]
#[command(about = "An oxiserve inference service")]
struct Cli {
    /// A TOML configuration file; `OXISERVE_*` environment variables override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// The whole `main` of a service: parses the command line, loads the configuration, serves
/// `pipeline` until shutdown, and turns any start-up error into a message and exit code 1.
pub async fn run<P: Pipeline>(pipeline: P) -> ExitCode {
    let cli = Cli::parse();
    let mut defaults = Config::default();
    pipeline.defaults(&mut defaults);
    let outcome = match Config::load_over(defaults, cli.config.as_deref()) {
        Ok(config) => match telemetry::init(&config.log, &config.telemetry, pipeline.name()) {
            Ok(_telemetry) => serve(pipeline, config).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A service assembled from its pipeline and configuration, neither loaded nor serving yet:
/// what [`serve`] runs and the test harness drives, built in one place so the two cannot drift.
pub(crate) struct App<P> {
    /// The engine, with its response cache.
    pub(crate) engine: Arc<Engine<P>>,
    /// Brings model versions in.
    pub(crate) loader: Loader,
    /// The whole HTTP application, admin API included when `admin.token` is set.
    pub(crate) http: http::Dispatch,
}

impl<P: Pipeline> App<P> {
    /// Checks `config`, loads ONNX Runtime, installs the metrics recorder (unless
    /// `telemetry.metrics` is off), connects the response cache and builds the HTTP application.
    pub(crate) async fn assemble(pipeline: P, config: &Config) -> Result<Self> {
        config.limits.check()?;
        if config.grpc.enabled && !cfg!(feature = "grpc") {
            return Err(crate::config::missing_feature("grpc.enabled", "grpc"));
        }
        let loader = Loader::new(config).await?;
        let admin = config
            .admin
            .token
            .clone()
            .map(|token| http::AdminAccess::new(loader.clone(), token))
            .transpose()?;
        if config.telemetry.metrics {
            telemetry::install();
        }
        let cache = ResponseCache::new(&config.cache, pipeline.name()).await?;
        let engine = Arc::new(Engine::new(pipeline).with_cache(cache));
        let http = http::Dispatch::new(Arc::clone(&engine), config, admin);
        Ok(Self { engine, loader, http })
    }
}

/// Serves `pipeline` with `config` until SIGTERM or Ctrl-C.
pub async fn serve<P: Pipeline>(pipeline: P, config: Config) -> Result<()> {
    let App { engine, loader, http } = App::assemble(pipeline, &config).await?;
    let listener = bind((config.http.host, config.http.port)).await?;

    let connections = Connections::new(&config.limits);
    let (stage, shutdown) = Shutdown::new();
    let stop = Arc::new(Notify::new());
    let timing = Timing {
        grace: Duration::from_millis(config.http.shutdown_grace_ms),
        deadline: Duration::from_millis(config.limits.request_timeout_ms),
    };
    let drain = {
        let engine = Arc::clone(&engine);
        move || engine.start_draining()
    };
    tokio::spawn(drive_shutdown(stage, Arc::clone(&stop), drain, timing));

    let serve_http = |listener, dispatch| {
        let (connections, shutdown) = (connections.clone(), shutdown.clone());
        tokio::spawn(async move {
            http::serve_dispatch(listener, dispatch, connections, shutdown).await;
            Ok(())
        })
    };
    let mut servers = vec![serve_http(listener, http)];
    if let Some(port) = config.telemetry.metrics_port.filter(|_| config.telemetry.metrics) {
        let listener = bind((config.http.host, port)).await?;
        servers.push(serve_http(listener, http::metrics_router().into()));
    }
    #[cfg(feature = "grpc")]
    if config.grpc.enabled {
        let listener = bind((config.http.host, config.grpc.port)).await?;
        let (engine, limits) = (Arc::clone(&engine), config.limits.clone());
        let (connections, shutdown) = (connections.clone(), shutdown.clone());
        servers.push(tokio::spawn(async move {
            crate::grpc::serve(listener, engine, &limits, connections, shutdown).await
        }));
    }

    if let Err(error) = engine.load(&loader).await {
        stop.notify_one();
        join_all(servers).await;
        loader.settle(timing.deadline).await;
        return Err(error);
    }
    let interval = config.models.poll_interval;
    let poller = (!interval.is_zero()).then(|| {
        let (engine, loader) = (Arc::clone(&engine), loader.clone());
        tokio::spawn(async move { engine.poll(&loader, interval).await })
    });
    let served = join_all(servers).await;
    if let Some(poller) = poller {
        poller.abort();
    }
    loader.settle(timing.deadline).await;
    served.into_iter().try_for_each(|served| {
        served.map_err(|e| Error::internal(format!("a server task failed: {e}")))?
    })
}

/// Binds a listener on `address` and logs where.
async fn bind(address: (std::net::IpAddr, u16)) -> Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| Error::io(format!("binding {}:{}", address.0, address.1), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    tracing::info!(address = %local, "listening");
    Ok(listener)
}

/// How long each stage of a shutdown lasts.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// After SIGTERM, serving on while readiness says no (`http.shutdown_grace_ms`).
    grace: Duration,
    /// After the listeners close, for the requests already sent (`limits.request_timeout_ms`).
    deadline: Duration,
}

/// Moves `stage` through a shutdown. On SIGTERM (how Kubernetes stops a pod): `drain` turns
/// readiness off, and after `timing.grace` the servers stop accepting; on Ctrl-C or a
/// notification on `stop` they stop at once. Connections then get `timing.deadline` to finish
/// before the rest are dropped. A second SIGTERM or Ctrl-C at any point drops them at once.
async fn drive_shutdown(
    stage: watch::Sender<Stage>,
    stop: Arc<Notify>,
    drain: impl FnOnce(),
    timing: Timing,
) {
    let mut signals = Signals::new();
    tokio::select! {
        signal = signals.next() => match signal {
            Signal::Interrupt => tracing::info!("Ctrl-C: shutting down"),
            Signal::Terminate => {
                drain();
                let grace_ms = timing.grace.as_millis() as u64;
                tracing::info!(grace_ms, "SIGTERM: not ready any more; shutting down after the grace period");
                tokio::select! {
                    () = tokio::time::sleep(timing.grace) => {}
                    _ = signals.next() => {
                        tracing::warn!("a second signal: stopping now");
                        let _ = stage.send(Stage::Abort);
                        return;
                    }
                }
            }
        },
        () = stop.notified() => {}
    }
    let _ = stage.send(Stage::Stopping);
    tokio::select! {
        () = tokio::time::sleep(timing.deadline) => {
            tracing::warn!("connections still open past the deadline are closed");
        }
        _ = signals.next() => tracing::warn!("a second signal: stopping now"),
    }
    let _ = stage.send(Stage::Abort);
}

/// A stop signal.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
    /// SIGTERM: an orchestrator stopping the process.
    Terminate,
}

/// The process's SIGINT and SIGTERM, as a sequence.
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next signal; never resolves when neither can be listened for.
    async fn next(&mut self) -> Signal {
        async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
            let Some(signal) = signal else { return std::future::pending().await };
            if signal.recv().await.is_none() {
                std::future::pending().await
            }
        }
        tokio::select! {
            () = received(self.interrupt.as_mut()) => Signal::Interrupt,
            () = received(self.terminate.as_mut()) => Signal::Terminate,
        }
    }
}
