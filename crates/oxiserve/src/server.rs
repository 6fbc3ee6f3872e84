//! Running a service: command line, configuration, logging, start-up order, shutdown.
//!
//! Start-up order: load the ONNX Runtime library (a missing one stops the process at once),
//! bind and serve HTTP and gRPC (liveness answers, readiness says 503 / NOT_SERVING), load
//! and warm every model, report ready, then poll the repository for new versions every
//! `models.poll_interval`. A model with no version that loads stops the process with the
//! error, which names the file at fault.
//!
//! Shutdown: SIGTERM turns readiness off, waits `http.shutdown_grace_ms` while still serving,
//! then both servers stop accepting connections; Ctrl-C skips the wait. In-flight requests finish, each
//! within its deadline.

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
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Loader;
use crate::pipeline::Pipeline;
use crate::telemetry;
use crate::{grpc, http};

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
    let outcome = match Config::load(cli.config.as_deref()) {
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

/// Serves `pipeline` with `config` until SIGTERM or Ctrl-C.
pub async fn serve<P: Pipeline>(pipeline: P, config: Config) -> Result<()> {
    let loader = Loader::new(&config).await?;
    if config.telemetry.metrics {
        telemetry::install();
    }
    let cache = ResponseCache::new(&config.cache, pipeline.name()).await?;
    let engine = Arc::new(Engine::new(pipeline).with_cache(cache));
    let listener = bind((config.http.host, config.http.port)).await?;

    let stop = Arc::new(Notify::new());
    let admin = config
        .admin
        .token
        .clone()
        .map(|token| http::AdminAccess::new(loader.clone(), token))
        .transpose()?;
    let router = http::router(Arc::clone(&engine), &config, admin);
    let drain = {
        let engine = Arc::clone(&engine);
        move || engine.start_draining()
    };
    let grace = Duration::from_millis(config.http.shutdown_grace_ms);
    // Both servers stop together, when the shutdown signal resolves.
    let (stopping, stopped) = watch::channel(false);
    let signal = shutdown_signal(Arc::clone(&stop), drain, grace);
    tokio::spawn(async move {
        signal.await;
        let _ = stopping.send(true);
    });
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|&stopped| stopped).await;
    };
    let mut servers =
        vec![tokio::spawn(http::serve(listener, router, until_stopped(stopped.clone())))];
    if let Some(port) = config.telemetry.metrics_port.filter(|_| config.telemetry.metrics) {
        let listener = bind((config.http.host, port)).await?;
        let metrics = http::metrics_router();
        servers.push(tokio::spawn(http::serve(listener, metrics, until_stopped(stopped.clone()))));
    }
    if config.grpc.enabled {
        let address = (config.http.host, config.grpc.port);
        let listener = bind(address).await?;
        let (engine, limits) = (Arc::clone(&engine), config.http.clone());
        let shutdown = until_stopped(stopped);
        servers.push(tokio::spawn(async move {
            grpc::serve(listener, engine, &limits, shutdown).await
        }));
    }

    if let Err(error) = engine.load(&loader).await {
        stop.notify_one();
        join_all(servers).await;
        return Err(error);
    }
    let interval = config.models.poll_interval;
    let poller = (!interval.is_zero()).then(|| {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.poll(&loader, interval).await })
    });
    let served = join_all(servers).await;
    if let Some(poller) = poller {
        poller.abort();
    }
    served.into_iter().try_for_each(|served| {
        served.map_err(|e| Error::pipeline(format!("a server task failed: {e}")))?
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

/// Resolves when the server should stop accepting connections: at once on Ctrl-C or a
/// notification on `stop`; on SIGTERM (how Kubernetes stops a pod) only after `drain` has
/// turned readiness off and `grace` has passed, so that load balancers stop sending traffic
/// before connections are refused.
async fn shutdown_signal(stop: Arc<Notify>, drain: impl FnOnce(), grace: Duration) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => {
            drain();
            let grace_ms = grace.as_millis() as u64;
            tracing::info!(grace_ms, "SIGTERM: not ready any more; shutting down after the grace period");
            tokio::time::sleep(grace).await;
        }
        () = stop.notified() => {}
    }
}
