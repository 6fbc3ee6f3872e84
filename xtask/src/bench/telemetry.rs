//! `cargo xtask bench --telemetry`: what telemetry costs in throughput.
//!
//! One release build of the service runs five times side by side on loopback, each with
//! different telemetry settings:
//! - `defaults`: metrics recorded, `info` logs (so the request span exists; the stage spans
//!   are at debug level and are not created);
//! - `metrics off`: `telemetry.metrics = false`;
//! - `all off`: metrics off and `warn` logs, so no span is created;
//! - `export`: the defaults plus every trace exported over OTLP/gRPC (request and stage spans)
//!   to `crates/oxiserve/examples/otlp_sink.rs`, a collector that only counts them, so that
//!   the service's side of export is measured and not a collector's;
//! - `export 10%`: the same with `telemetry.trace_sample_ratio = 0.1`.
//!
//! wrk drives them in turn at each connection count, for several rounds that rotate which goes
//! first; the median throughput of each is compared. Results go to
//! `bench/results/<timestamp>-telemetry.json`; the table replaces the one between the
//! `bench:telemetry` markers of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use oxiserve_xtask::onnxruntime;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::Args;
use super::http::{
    Launch, Server, drive, free_port, spawn, start_rust, target_dir, update_docs, wait_ready,
};
use super::workload;
use crate::debian;

/// Rounds per connection count; the median of each setting's runs is reported.
const ROUNDS: usize = 3;

/// The settings compared, by name, in the table's order.
const SETTINGS: [&str; 5] = ["defaults", "metrics off", "all off", "export", "export 10%"];

pub(super) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    debian::ensure_installed(&[("wrk", "/usr/bin/wrk")])?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let service = &args.service;
    let workload = workload::request(root, service)?;
    cmd!(sh, "cargo build --release --quiet --package {service}").run()?;
    cmd!(sh, "cargo build --release --quiet --package oxiserve --example otlp_sink").run()?;
    let sink = start_sink(root)?;
    let endpoint = format!("http://127.0.0.1:{}", sink.port);
    let info = ("OXISERVE_LOG__FILTER", "info");
    let metrics_off = ("OXISERVE_TELEMETRY__METRICS", "false");
    let export = ("OXISERVE_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str());
    let environments: [&[(&str, &str)]; 5] = [
        &[info],
        &[info, metrics_off],
        &[("OXISERVE_LOG__FILTER", "warn"), metrics_off],
        &[info, export],
        &[info, export, ("OXISERVE_TELEMETRY__TRACE_SAMPLE_RATIO", "0.1")],
    ];
    let models = root.join("services").join(service).join("models");
    let release = Launch::release();
    let servers: Vec<Server> = SETTINGS
        .iter()
        .zip(environments)
        .map(|(&name, environment)| {
            start_rust(root, (service, &release), &models, &library, 0, (name, environment))
        })
        .collect::<anyhow::Result<_>>()?;
    for server in &servers {
        wait_ready(server)?;
        drive(root, &workload, server.port, 8, 2)?;
    }

    let mut runs = Vec::new();
    for &connections in &args.connections {
        for round in 0..ROUNDS {
            for index in 0..servers.len() {
                let server = &servers[(round + index) % servers.len()];
                let report = drive(root, &workload, server.port, connections, args.duration)?;
                eprintln!("bench: {} at {connections} connections: {report}", server.name);
                runs.push(
                    json!({"setting": server.name, "connections": connections, "wrk": report}),
                );
            }
        }
    }
    drop(servers);
    // Stopping the sink prints how many spans reached it.
    drop(sink);

    let medians: Vec<Value> = args
        .connections
        .iter()
        .map(|&connections| {
            let median = |setting: &str| median_throughput(&runs, setting, connections);
            let [defaults, metrics_off, all_off, export, sampled] = SETTINGS.map(median);
            json!({
                "connections": connections,
                "requests_per_second": {
                    "defaults": defaults,
                    "metrics off": metrics_off,
                    "all off": all_off,
                    "export": export,
                    "export 10%": sampled,
                },
                "defaults_over_metrics_off": defaults / metrics_off,
                "defaults_over_all_off": defaults / all_off,
                "export_over_defaults": export / defaults,
                "export_10_over_defaults": sampled / defaults,
            })
        })
        .collect();
    let command =
        format!("cargo xtask bench --telemetry --service {service} {}", args.load_flags());
    let fields = json!({"rounds": ROUNDS, "runs": runs, "medians": medians});
    let results = super::results(&sh, service, command, fields)?;
    let path = super::save(root, &results, "-telemetry")?;
    let table = table(&results);
    println!("{table}");
    update_docs(&root.join("docs/benchmarks.md"), "telemetry", &table)?;
    eprintln!("bench: results in {}, table in docs/benchmarks.md", path.display());
    Ok(())
}

/// The median requests per second of `setting`'s runs at `connections`.
fn median_throughput(runs: &[Value], setting: &str, connections: u32) -> f64 {
    let mut rates: Vec<f64> = runs
        .iter()
        .filter(|run| run["setting"] == setting && run["connections"] == connections)
        .filter_map(|run| run["wrk"]["requests_per_second"].as_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The OTLP sink on a free port, once it listens.
fn start_sink(root: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut command = Command::new(target_dir(root).join("release/examples/otlp_sink"));
    command.env("SINK_PORT", port.to_string());
    let sink = spawn("otlp-sink", command, port)?;
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the OTLP sink did not listen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(sink)
}

/// The Markdown table of the medians and ratios.
fn table(results: &Value) -> String {
    let mut table = format!(
        "Run `{}` ({}), median of {ROUNDS} rounds:\n\n\
         | connections | defaults (req/s) | metrics off | all off | export | export 10% | defaults / metrics off | defaults / all off | export / defaults | export 10% / defaults |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        results["timestamp"].as_str().unwrap_or_default(),
        results["command"].as_str().unwrap_or_default(),
    );
    for row in results["medians"].as_array().into_iter().flatten() {
        let rate = |setting: &str| row["requests_per_second"][setting].as_f64().unwrap_or(f64::NAN);
        let ratio = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row["connections"],
            rate("defaults"),
            rate("metrics off"),
            rate("all off"),
            rate("export"),
            rate("export 10%"),
            ratio("defaults_over_metrics_off"),
            ratio("defaults_over_all_off"),
            ratio("export_over_defaults"),
            ratio("export_10_over_defaults"),
        );
    }
    table
}
