//! `cargo xtask bench --telemetry`: what telemetry costs in throughput.
//!
//! One release build of the service runs three times side by side on loopback, each with
//! different telemetry settings: production defaults (metrics recorded, `info` logs, so the
//! request and stage spans exist), metrics off (`telemetry.metrics = false`), and everything
//! off (metrics off and `warn` logs, so spans are never created). wrk drives them in turn at
//! each connection count, for several rounds that rotate which goes first; the median
//! throughput of each is compared. Results go to `bench/results/<timestamp>-telemetry.json`;
//! the table replaces the one between the `bench:telemetry` markers of `docs/benchmarks.md`.
//! Span export (OTLP) is not measured here: it needs a collector, and its cost is the
//! collector's as much as the service's.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::Args;
use super::http::{Server, drive, start_rust, update_docs, wait_ready};
use crate::{debian, setup};

/// Rounds per connection count; the median of each setting's runs is reported.
const ROUNDS: usize = 3;

/// The settings compared: a name and the environment that makes it.
const SETTINGS: [(&str, &[(&str, &str)]); 3] = [
    ("defaults", &[("OXISERVE_LOG__FILTER", "info")]),
    ("metrics off", &[("OXISERVE_LOG__FILTER", "info"), ("OXISERVE_TELEMETRY__METRICS", "false")]),
    ("all off", &[("OXISERVE_LOG__FILTER", "warn"), ("OXISERVE_TELEMETRY__METRICS", "false")]),
];

pub(super) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = setup::run(root)?;
    debian::ensure_installed(&[("wrk", "/usr/bin/wrk")])?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let service = &args.service;
    let body = root.join("bench/requests").join(format!("{service}.json"));
    cmd!(sh, "cargo build --release --quiet --package {service}").run()?;
    let models = root.join("services").join(service).join("models");
    let servers: Vec<Server> = SETTINGS
        .iter()
        .map(|&setting| start_rust(root, service, &models, &library, 0, setting))
        .collect::<anyhow::Result<_>>()?;
    for server in &servers {
        wait_ready(server)?;
        drive(root, &body, server.port, 8, 2)?;
    }

    let mut runs = Vec::new();
    for &connections in &args.connections {
        for round in 0..ROUNDS {
            for index in 0..servers.len() {
                let server = &servers[(round + index) % servers.len()];
                let report = drive(root, &body, server.port, connections, args.duration)?;
                eprintln!("bench: {} at {connections} connections: {report}", server.name);
                runs.push(
                    json!({"setting": server.name, "connections": connections, "wrk": report}),
                );
            }
        }
    }
    drop(servers);

    let medians: Vec<Value> = args
        .connections
        .iter()
        .map(|&connections| {
            let median = |setting: &str| median_throughput(&runs, setting, connections);
            let [defaults, metrics_off, all_off] = SETTINGS.map(|(name, _)| median(name));
            json!({
                "connections": connections,
                "requests_per_second": {"defaults": defaults, "metrics off": metrics_off, "all off": all_off},
                "defaults_over_metrics_off": defaults / metrics_off,
                "defaults_over_all_off": defaults / all_off,
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

/// The Markdown table of the medians and ratios.
fn table(results: &Value) -> String {
    let mut table = format!(
        "Run `{}` ({}), median of {ROUNDS} rounds:\n\n\
         | connections | defaults (req/s) | metrics off | all off | defaults / metrics off | defaults / all off |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        results["timestamp"].as_str().unwrap_or_default(),
        results["command"].as_str().unwrap_or_default(),
    );
    for row in results["medians"].as_array().into_iter().flatten() {
        let rate = |setting: &str| row["requests_per_second"][setting].as_f64().unwrap_or(f64::NAN);
        let ratio = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            row["connections"],
            rate("defaults"),
            rate("metrics off"),
            rate("all off"),
            ratio("defaults_over_metrics_off"),
            ratio("defaults_over_all_off"),
        );
    }
    table
}
