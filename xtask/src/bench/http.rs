//! The HTTP comparison of a service with its Python twin (`bench/fastapi/<service>/`).
//!
//! Builds the service in release, starts it and the twin (uvicorn, one worker per core) on
//! loopback and free ports, with what the service is held against: for a service with one
//! request (`workload`), the HTTP ceiling (`crates/oxiserve/examples/http_ceiling.rs`: axum
//! answering a fixed real response), and the same ceiling spending as long on each request as
//! the service's own work (`CEILING_WORK_NS`: the service's user CPU a request less the
//! ceiling's, measured in the warm-up), which shows what the machine allows a service doing
//! that much work; for a service with a corpus, oxiserve with batching off as a third server,
//! and afterwards ONNX Runtime alone on the same requests
//! (`bench/fastapi/<service>/onnxruntime_alone.py`). It warms the servers up, then drives each
//! with wrk on every workload at every connection count, rotating which goes first so that
//! drift on a noisy machine hits all, and waits after each run until the server is idle (a
//! twin that queued requests goes on serving them after the load ends). With `--rounds N` it
//! does all that N times over, and the table and charts show, for each connection count, the
//! round whose oxiserve / reference ratio (the HTTP ceiling, else FastAPI) is the median, every
//! server's numbers from that one round, with each round's ratio beside them: one machine's
//! runs of the same code spread by a quarter. Each run records
//! requests/s, p50, p99 and p99.9 latency, errors, and the server's CPU seconds (all its
//! processes); each server's peak RSS is read at the end. Everything goes to
//! `bench/results/<timestamp>.json`, with a chart per workload beside it (`.svg`, also copied
//! to `docs/bench-http-<service>[-<workload>].svg`); the ratios are printed and replace the
//! table between the `bench:http:<service>` markers of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use oxiserve_xtask::onnxruntime;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::Args;
use super::chart::{self, Series};
use super::workload::{self, Source, Workload};
use crate::{debian, models, venv};

/// The load generator, from Debian.
const WRK: (&str, &str) = ("wrk", "/usr/bin/wrk");
/// The name of the HTTP ceiling server in results.
pub(super) const HTTP_CEILING: &str = "http-ceiling";
/// The name of the HTTP ceiling with the service's own work added in results.
const HTTP_CEILING_WORK: &str = "http-ceiling-work";
/// Seconds of load on each server before measuring.
const WARM_UP_SECONDS: u64 = 2;

/// A server under test, in its own process group so that stopping it stops its workers too.
pub(super) struct Server {
    /// What results call it.
    pub(super) name: &'static str,
    child: Child,
    /// Where it listens, on 127.0.0.1.
    pub(super) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// One wrk run against one server.
#[derive(Clone)]
struct Run {
    workload: String,
    server: &'static str,
    connections: u32,
    /// Which of `--rounds` it belongs to, from 0.
    round: u32,
    report: Value,
    cpu_seconds: f64,
}

/// What a service's throughput is held against.
enum Ceiling {
    /// The HTTP ceiling server, loaded like the others.
    Http,
    /// ONNX Runtime alone on the same requests (`bench/fastapi/<service>/onnxruntime_alone.py`),
    /// in as many processes as requests can be in flight, up to one per core.
    OnnxRuntime(Vec<CeilingRun>),
}

/// One measurement of ONNX Runtime alone on a workload's requests.
struct CeilingRun {
    workload: String,
    processes: usize,
    report: Value,
}

/// The name of oxiserve with batching off in results (corpus workloads only).
const UNBATCHED: &str = "oxiserve-unbatched";

pub(super) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    models::provision(root)?;
    debian::ensure_installed(&[WRK])?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let service = &args.service;
    let twin = root.join("bench/fastapi").join(service);
    anyhow::ensure!(twin.is_dir(), "{service} has no FastAPI twin in bench/fastapi/{service}");
    let python = venv::baseline(&sh, root)?;
    let scratch = target_dir(root).join("bench");
    let (source, workloads) = workload::of_service(root, service, &scratch, &python)?;
    cmd!(sh, "cargo build --release --quiet --package {service}").run()?;

    let models = root.join("services").join(service).join("models");
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let release = Launch::release();
    let rust = start_rust(root, (service, &release), &models, &library, 0, ("oxiserve", &[]))?;
    wait_ready(&rust)?;
    let mut servers = vec![rust, start_python(&python, &twin, &models, workers)?];
    // The ceiling answers with a real response of this service, so payloads are the same.
    let response = target_dir(root).join("bench-response.json");
    match source {
        Source::Request => {
            cmd!(sh, "cargo build --release --quiet --package oxiserve --example http_ceiling")
                .run()?;
            let first = workload::first_body(&workloads[0])?;
            std::fs::write(
                &response,
                request(servers[0].port, "POST", &workloads[0].path, &first)?.1,
            )?;
            servers.push(start_ceiling(root, &release, &response, (HTTP_CEILING, 0))?);
        }
        Source::Model => {
            let unbatched = [("OXISERVE_MODELS__BATCHING__MAX_BATCH_SIZE", "1")];
            let unbatched = (UNBATCHED, unbatched.as_slice());
            servers.push(start_rust(root, (service, &release), &models, &library, 0, unbatched)?);
        }
    }
    let mut user_per_request = Vec::new();
    for server in &servers {
        user_per_request.push((server.name, warm_up(root, &workloads[0], server)?));
    }
    let ceiling_work_ns = match source {
        Source::Request => {
            let of = |name| user_per_request.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
            let work = of("oxiserve").zip(of(HTTP_CEILING)).map(|(ours, bare)| ours - bare);
            let work_ns = (work.unwrap_or(0.0).max(0.0) * 1e9).round() as u64;
            eprintln!(
                "bench: oxiserve's own work, user CPU a request beyond the ceiling's: {work_ns} ns"
            );
            let with_work = start_ceiling(root, &release, &response, (HTTP_CEILING_WORK, work_ns))?;
            warm_up(root, &workloads[0], &with_work)?;
            servers.push(with_work);
            Some(work_ns)
        }
        Source::Model => None,
    };

    let mut runs = Vec::new();
    // Each connection count starts with the next server, so that drift hits all of them.
    let mut first = 0;
    for round in 0..args.rounds {
        for workload in &workloads {
            for connections in workload.connections(&args.connections) {
                let start = first;
                first += 1;
                let order = (0..servers.len()).map(|i| &servers[(start + i) % servers.len()]);
                run_each(root, (workload, connections, round), order, args.duration, &mut runs)?;
            }
        }
    }
    let stages: Vec<Value> = match source {
        Source::Request => Vec::new(),
        Source::Model => workloads
            .iter()
            .map(|workload| stage_times(servers[0].port, workload))
            .collect::<anyhow::Result<_>>()?,
    };
    let peak_rss: Vec<Value> = servers
        .iter()
        .map(|s| Ok(json!({"server": s.name, "peak_rss_mb": peak_rss_mb(s.child.id())?})))
        .collect::<anyhow::Result<_>>()?;
    drop(servers);
    let ceiling = match source {
        Source::Request => Ceiling::Http,
        Source::Model => {
            let mut alone = Vec::new();
            for workload in &workloads {
                let mut counts: Vec<usize> = workload
                    .connections(&args.connections)
                    .into_iter()
                    .map(|c| alone_processes(c, workers))
                    .collect();
                counts.dedup();
                for &processes in &counts {
                    let report = onnxruntime_alone(
                        &python,
                        &twin,
                        &models,
                        workload,
                        processes,
                        args.duration,
                    )?;
                    eprintln!(
                        "bench: ONNX Runtime alone on {}, {processes} processes: {report}",
                        workload.name
                    );
                    alone.push(CeilingRun { workload: workload.name.clone(), processes, report });
                }
            }
            Ceiling::OnnxRuntime(alone)
        }
    };

    let (every_round, reference) = (runs, ceiling.round_reference().0);
    let runs = median_rounds(&every_round, reference);
    let mut ratios = ratios(&runs, &ceiling, &workloads, &args.connections, workers);
    if args.rounds > 1 {
        add_round_ratios(&mut ratios, &every_round, reference);
    }
    let command = format!(
        "cargo xtask bench --service {service} {}{}",
        args.load_flags(),
        if args.rounds > 1 { format!(" --rounds {}", args.rounds) } else { String::new() }
    );
    let mut fields = json!({
        "fastapi_workers": workers,
        "workloads": workloads.iter().map(|w| json!({"name": w.name, "path": w.path})).collect::<Vec<_>>(),
        "rounds": args.rounds,
        "runs": every_round.iter().map(|r| json!({
            "workload": r.workload,
            "server": r.server,
            "connections": r.connections,
            "round": r.round,
            "wrk": r.report,
            "cpu_seconds": r.cpu_seconds,
        })).collect::<Vec<_>>(),
        "peak_rss": peak_rss,
        "stage_times": stages,
        "ratios": ratios,
        "ceiling_work_ns": ceiling_work_ns,
    });
    if let Ceiling::OnnxRuntime(alone) = &ceiling {
        fields["onnxruntime_alone"] = alone
            .iter()
            .map(|c| json!({"workload": c.workload, "processes": c.processes, "report": c.report}))
            .collect();
    }
    let results = super::results(&sh, service, command, fields)?;
    let path = super::save(root, &results, "")?;
    for (index, workload) in workloads.iter().enumerate() {
        let svg = chart(
            service,
            workload,
            &runs,
            &ceiling,
            &workload.connections(&args.connections),
            &results["machine"],
            workers,
        );
        let suffix = chart_suffix(index, workload);
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        std::fs::write(path.with_file_name(format!("{stem}{suffix}.svg")), &svg)?;
        std::fs::write(root.join(format!("docs/bench-http-{service}{suffix}.svg")), &svg)?;
    }
    let table = table(service, &results, (&workloads, &runs), &ceiling, &ratios);
    println!("{table}");
    update_docs(&root.join("docs/benchmarks.md"), &format!("http:{service}"), &table)?;
    eprintln!("bench: results in {}, table in docs/benchmarks.md", path.display());
    Ok(())
}

/// Runs wrk on `workload` at `connections` against each server in `order`, in round `round`,
/// waiting after each until that server is idle, and adds the runs to `runs`.
fn run_each<'a>(
    root: &Path,
    (workload, connections, round): (&Workload, u32, u32),
    order: impl Iterator<Item = &'a Server>,
    seconds: u64,
    runs: &mut Vec<Run>,
) -> anyhow::Result<()> {
    for server in order {
        let before = cpu_seconds(server.child.id(), Cpu::All)?;
        let report = drive(root, workload, server.port, connections, seconds)?;
        let cpu_seconds = cpu_seconds(server.child.id(), Cpu::All)? - before;
        let settled = settle(server)?;
        eprintln!(
            "bench: round {}, {} on {} at {connections} connections: {report} (idle {:.1} s \
             after)",
            round + 1,
            server.name,
            workload.name,
            settled.as_secs_f64()
        );
        let workload = workload.name.clone();
        runs.push(Run { workload, server: server.name, connections, round, report, cpu_seconds });
    }
    Ok(())
}

/// oxiserve's throughput over `reference`'s on `workload` at `connections`, round by round
/// (NaN for a round that lacks either run).
fn round_ratios(runs: &[Run], workload: &str, connections: u32, reference: &str) -> Vec<f64> {
    let rate = |server: &str, round: u32| {
        runs.iter()
            .find(|r| {
                r.workload == workload
                    && r.server == server
                    && r.connections == connections
                    && r.round == round
            })
            .map(|r| number(&r.report, "requests_per_second"))
    };
    let rounds = runs.iter().map(|r| r.round).max().map_or(0, |last| last + 1);
    (0..rounds)
        .map(|round| match (rate("oxiserve", round), rate(reference, round)) {
            (Some(ours), Some(theirs)) => ours / theirs,
            _ => f64::NAN,
        })
        .collect()
}

/// Adds to each of `ratios` (of one workload at one connection count) the ratio of oxiserve to
/// `reference` in each round of `every_round`.
fn add_round_ratios(ratios: &mut [Value], every_round: &[Run], reference: &str) {
    for ratio in ratios {
        let (workload, connections) = (text_of(&ratio["workload"]), &ratio["connections"]);
        let connections = connections.as_u64().unwrap_or_default() as u32;
        ratio["rounds"] = json!({
            "reference": reference,
            "oxiserve_over_reference": round_ratios(every_round, &workload, connections, reference),
        });
    }
}

/// The runs of each workload's and connection count's median round: the round whose ratio of
/// oxiserve's throughput to `reference`'s is the median (the lower of the two middle ones for
/// an even count), every server's run from that round. With one round, all of them.
fn median_rounds(runs: &[Run], reference: &str) -> Vec<Run> {
    let mut kept = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for run in runs {
        let key = (run.workload.as_str(), run.connections);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let ratios = round_ratios(runs, key.0, key.1, reference);
        let mut order: Vec<usize> = (0..ratios.len()).collect();
        order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
        let median = order.get(order.len().saturating_sub(1) / 2).map_or(0, |&i| i as u32);
        kept.extend(
            runs.iter()
                .filter(|r| (r.workload.as_str(), r.connections) == key && r.round == median)
                .cloned(),
        );
    }
    kept
}

/// What follows the service's name in the file name of `workload`'s chart: nothing for the
/// first workload, `-<name>` for the others.
fn chart_suffix(index: usize, workload: &Workload) -> String {
    if index == 0 { String::new() } else { format!("-{}", workload.name) }
}

/// ONNX Runtime alone on `workload`'s requests in `processes` processes for `seconds`: the
/// report its script prints.
fn onnxruntime_alone(
    python: &Path,
    twin: &Path,
    models: &Path,
    workload: &Workload,
    processes: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    let output = Command::new(python)
        .arg(twin.join("onnxruntime_alone.py"))
        .arg("--bodies")
        .arg(&workload.bodies)
        .args(["--seconds", &seconds.to_string(), "--processes", &processes.to_string()])
        .env("MODELS_DIR", models)
        .output()
        .context("running onnxruntime_alone.py")?;
    printed_report(&output, "CEILING ", "onnxruntime_alone.py")
}

/// The JSON report that `program` printed on its line starting with `prefix`.
fn printed_report(
    output: &std::process::Output,
    prefix: &str,
    program: &str,
) -> anyhow::Result<Value> {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix(prefix)).with_context(|| {
        format!("{program} printed no report: {text}{}", String::from_utf8_lossy(&output.stderr))
    })?;
    Ok(serde_json::from_str(line)?)
}

impl Ceiling {
    /// Its name in tables and charts.
    fn label(&self) -> &'static str {
        match self {
            Ceiling::Http => "HTTP ceiling",
            Ceiling::OnnxRuntime(_) => "ONNX Runtime alone",
        }
    }

    /// The server each round's ratio is taken against, and its name in tables: this ceiling
    /// when it is a server loaded in the rounds, else FastAPI (ONNX Runtime alone runs once,
    /// after them).
    fn round_reference(&self) -> (&'static str, &'static str) {
        match self {
            Ceiling::Http => (HTTP_CEILING, self.label()),
            Ceiling::OnnxRuntime(_) => ("fastapi", "FastAPI"),
        }
    }

    /// Its requests/s and p99 (ms; none for ONNX Runtime alone) on `workload` at
    /// `connections`, of which at most `cores` are in flight in ONNX Runtime alone.
    fn at(
        &self,
        runs: &[Run],
        workload: &str,
        connections: u32,
        cores: usize,
    ) -> Option<(f64, Option<f64>)> {
        match self {
            Ceiling::Http => find(runs, workload, HTTP_CEILING, connections).map(|run| {
                (
                    number(&run.report, "requests_per_second"),
                    Some(number(&run.report, "p99_us") / 1000.0),
                )
            }),
            Ceiling::OnnxRuntime(alone) => {
                let processes = alone_processes(connections, cores);
                alone
                    .iter()
                    .find(|c| c.workload == workload && c.processes == processes)
                    .map(|c| (number(&c.report, "requests_per_second"), None))
            }
        }
    }
}

/// The processes ONNX Runtime alone runs in to match `connections` on `cores`: one per request
/// in flight, up to one per core.
fn alone_processes(connections: u32, cores: usize) -> usize {
    (connections as usize).min(cores)
}

/// The run of `server` on `workload` at `connections`.
fn find<'a>(runs: &'a [Run], workload: &str, server: &str, connections: u32) -> Option<&'a Run> {
    runs.iter()
        .find(|r| r.workload == workload && r.server == server && r.connections == connections)
}

/// A number of a report, NaN when absent.
fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or(f64::NAN)
}

/// `value` as text (empty when it is not a string).
fn text_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Throughput and p99 of the servers and the ceiling against connections, on `workload`.
fn chart(
    service: &str,
    workload: &Workload,
    runs: &[Run],
    ceiling: &Ceiling,
    connections: &[u32],
    machine: &Value,
    cores: usize,
) -> String {
    let series = |server: &'static str, colour: &'static str| {
        let of = |c: u32, key: &str| {
            find(runs, &workload.name, server, c).map_or(0.0, |r| number(&r.report, key))
        };
        Series {
            name: server,
            colour,
            throughput: connections.iter().map(|&c| of(c, "requests_per_second")).collect(),
            p99_ms: connections.iter().map(|&c| of(c, "p99_us") / 1000.0).collect(),
        }
    };
    let title = format!(
        "{service}, {}: oxiserve vs FastAPI ({} cores, {})",
        workload.name,
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU")
    );
    let mut lines = vec![series("oxiserve", "#d9480f"), series("fastapi", "#1c7ed6")];
    match ceiling {
        Ceiling::Http => {
            lines.push(series(HTTP_CEILING, "#868e96"));
            if runs.iter().any(|r| r.server == HTTP_CEILING_WORK) {
                lines.push(series(HTTP_CEILING_WORK, "#ced4da"));
            }
        }
        Ceiling::OnnxRuntime(_) => {
            lines.push(series(UNBATCHED, "#f59f00"));
            let at = |c: u32| ceiling.at(runs, &workload.name, c, cores);
            lines.push(Series {
                name: "onnxruntime-alone",
                colour: "#868e96",
                throughput: connections
                    .iter()
                    .map(|&c| at(c).map_or(0.0, |(rate, _)| rate))
                    .collect(),
                // No latency: it is not a server.
                p99_ms: Vec::new(),
            });
        }
    }
    chart::render(&title, connections, &lines)
}

/// How a benchmark starts a binary of the workspace: the Cargo profile it was built with, and
/// the program it runs under, if any (valgrind, with its arguments).
pub(super) struct Launch {
    /// `release`, or `profiling` (release with symbols).
    pub(super) profile: &'static str,
    /// The program and its arguments, the binary's path last; empty: the binary itself.
    pub(super) under: Vec<String>,
}

impl Launch {
    /// The release binary, on its own.
    pub(super) fn release() -> Self {
        Self { profile: "release", under: Vec::new() }
    }

    /// The command that starts `binary` (a path under the profile's directory).
    fn command(&self, root: &Path, binary: &str) -> Command {
        let path = target_dir(root).join(self.profile).join(binary);
        match self.under.split_first() {
            None => Command::new(path),
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(path);
                command
            }
        }
    }
}

/// The service's binary (`launch`ed) with its models, cache off, gRPC on `grpc_port` (0:
/// any), logging warnings only, with the further `settings` (environment variables); its
/// results go under `name`.
pub(super) fn start_rust(
    root: &Path,
    (service, launch): (&str, &Launch),
    models: &Path,
    library: &Path,
    grpc_port: u16,
    (name, settings): (&'static str, &[(&str, &str)]),
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut command = launch.command(root, service);
    command
        .env("ORT_DYLIB_PATH", library)
        .env("OXISERVE_HTTP__PORT", port.to_string())
        .env("OXISERVE_GRPC__PORT", grpc_port.to_string())
        .env("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "0")
        .env("OXISERVE_MODELS__URI", models)
        .env("OXISERVE_LOG__FILTER", "warn")
        // Equal work: the peers have no response cache, and the load repeats one body.
        .env("OXISERVE_CACHE__CAPACITY", "0")
        .envs(settings.iter().copied());
    spawn(name, command, port)
}

fn start_python(
    python: &Path,
    twin: &Path,
    models: &Path,
    workers: usize,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut command = Command::new(python);
    command
        .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--no-access-log"])
        .args(["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"])
        .args(["--port", &port.to_string(), "--workers", &workers.to_string()])
        .arg("--app-dir")
        .arg(twin)
        .env("MODELS_DIR", models);
    spawn("fastapi", command, port)
}

/// The HTTP ceiling (`launch`ed) answering `response`, spending `work_ns` on each request, as
/// `name`.
pub(super) fn start_ceiling(
    root: &Path,
    launch: &Launch,
    response: &Path,
    (name, work_ns): (&'static str, u64),
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut command = launch.command(root, "examples/http_ceiling");
    command
        .env("CEILING_PORT", port.to_string())
        .env("CEILING_RESPONSE", response)
        .env("CEILING_WORK_NS", work_ns.to_string());
    spawn(name, command, port)
}

/// Waits until `server` is ready and loads it for [`WARM_UP_SECONDS`] at 8 connections with
/// `workload`'s first request; returns its user CPU seconds a request over that load.
fn warm_up(root: &Path, workload: &Workload, server: &Server) -> anyhow::Result<f64> {
    wait_ready(server)?;
    let before = cpu_seconds(server.child.id(), Cpu::User)?;
    let report = drive(root, workload, server.port, 8, WARM_UP_SECONDS)?;
    let user = cpu_seconds(server.child.id(), Cpu::User)? - before;
    Ok(user / number(&report, "requests"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the repository.
pub(super) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Starts `command` in its own process group as the server `name` listening on `port`.
pub(super) fn spawn(name: &'static str, mut command: Command, port: u16) -> anyhow::Result<Server> {
    use std::os::unix::process::CommandExt;
    let child = command
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Server { name, child, port })
}

/// A port nobody listens on right now.
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// One HTTP/1.1 request on a fresh connection: the status code and the body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    exchange(port, method, path, body).map(|(status, _, body)| (status, body))
}

/// One HTTP/1.1 request with a JSON `body` on a fresh connection: the status, the response's
/// head (status line and headers) and its body.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(reply.len());
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok((status, head, reply.get(split + 4..).unwrap_or_default().to_vec()))
}

/// Requests sent one at a time to read where oxiserve's time goes.
const TIMED_REQUESTS: usize = 16;

/// Where oxiserve's time goes on `workload`'s requests sent one at a time: the median of each
/// `Server-Timing` entry (`pre`, the pipeline's own laps such as `decode`, `queue`, `infer`,
/// `post`; in ms) over [`TIMED_REQUESTS`] requests cycling through its bodies, in the header's
/// order. The median, because the first requests after a load pay for memory the allocator
/// gave back meanwhile (a photo's first decode took 4 times its usual).
fn stage_times(port: u16, workload: &Workload) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(&workload.bodies)?;
    let bodies: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut times: Vec<(String, Vec<f64>)> = Vec::new();
    for body in bodies.iter().cycle().take(TIMED_REQUESTS) {
        let (status, head, _) = exchange(port, "POST", &workload.path, body.as_bytes())?;
        anyhow::ensure!(status == 200, "a timed request of {} answered {status}", workload.name);
        let timing = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("server-timing:").map(String::from))
            .context("no Server-Timing header")?;
        for entry in timing.split(',') {
            let (name, duration) = entry.trim().split_once(";dur=").unwrap_or_default();
            let duration = duration.parse::<f64>().unwrap_or(f64::NAN);
            match times.iter_mut().find(|(stage, _)| stage == name) {
                Some((_, durations)) => durations.push(duration),
                None => times.push((name.to_string(), vec![duration])),
            }
        }
    }
    let stages: Vec<Value> = times
        .into_iter()
        .map(|(name, mut durations)| {
            durations.sort_by(f64::total_cmp);
            json!({"name": name, "ms": durations[durations.len() / 2]})
        })
        .collect();
    Ok(json!({"workload": workload.name, "requests": TIMED_REQUESTS, "stages": stages}))
}

/// Waits until `GET /health/ready` answers 200, for a minute at most.
pub(super) fn wait_ready(server: &Server) -> anyhow::Result<()> {
    wait_ready_within(server, Duration::from_secs(60))
}

/// Waits until `GET /health/ready` answers 200, for `limit` at most.
pub(super) fn wait_ready_within(server: &Server, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if request(server.port, "GET", "/health/ready", b"").is_ok_and(|(status, _)| status == 200)
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{} was not ready within {limit:?}", server.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One wrk run of `workload`; returns the report its script prints.
pub(super) fn drive(
    root: &Path,
    workload: &Workload,
    port: u16,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<Value> {
    let script: PathBuf = root.join("bench/wrk/report.lua");
    let output = Command::new(WRK.1)
        // wrk needs at least one connection per thread.
        .arg(format!("-t{}", connections.min(2)))
        .args([&format!("-c{connections}"), &format!("-d{seconds}s")])
        // Requests of a slow model may take seconds under load: slow answers, not errors.
        .arg("-T30s")
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}{}", workload.path))
        .env("BENCH_BODY", &workload.bodies)
        .output()
        .context("running wrk")?;
    printed_report(&output, "BENCH ", "wrk")
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(child) = entry?.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let parent = stat_fields(&stat).get(1).and_then(|p| p.parse::<u32>().ok());
        parents.extend(parent.map(|parent| (child, parent)));
    }
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        index += 1;
    }
    Ok(tree)
}

/// The fields of `/proc/<pid>/stat` after the command name (state is the first).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect())
}

/// Which CPU time of a process to count.
#[derive(Clone, Copy)]
enum Cpu {
    /// In the process's own code.
    User,
    /// In its own code and in the kernel on its behalf.
    All,
}

/// The `kind` CPU seconds of `pid` and its descendants.
fn cpu_seconds(pid: u32, kind: Cpu) -> anyhow::Result<f64> {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut ticks = 0.0;
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command name.
    let indices: &[usize] = match kind {
        Cpu::User => &[11],
        Cpu::All => &[11, 12],
    };
    for process in process_tree(pid)? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{process}/stat")) else { continue };
        let fields = stat_fields(&stat);
        for &index in indices {
            ticks += fields.get(index).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    Ok(ticks / ticks_per_second)
}

/// Waits until `server` has finished what the last run left it: a server that queues requests
/// goes on answering clients that are gone (uvicorn, after 64 connections of photos, for
/// seconds), and would take the cores from the next server's run. Idle is under a tenth of a
/// core over a quarter of a second; after a minute it goes on anyway. Returns how long it took.
fn settle(server: &Server) -> anyhow::Result<Duration> {
    const WINDOW: Duration = Duration::from_millis(250);
    let start = Instant::now();
    let mut used = cpu_seconds(server.child.id(), Cpu::All)?;
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(WINDOW);
        let now = cpu_seconds(server.child.id(), Cpu::All)?;
        if now - used < 0.1 * WINDOW.as_secs_f64() {
            break;
        }
        used = now;
    }
    Ok(start.elapsed())
}

/// The sum of the peak resident memory of `pid` and its descendants, in MB.
fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let mut kilobytes = 0.0;
    for process in process_tree(pid)? {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{process}/status")) else {
            continue;
        };
        let peak = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
        kilobytes +=
            peak.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0.0);
    }
    Ok(kilobytes / 1024.0)
}

/// The machine, for the record.
pub(super) fn machine(sh: &Shell) -> anyhow::Result<Value> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).unwrap_or(": unknown");
    Ok(json!({
        "cpu": model.trim_start_matches([' ', '\t', ':']),
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "kernel": cmd!(sh, "uname -r").read()?,
        "load_generator": "wrk -t2 on the same machine",
    }))
}

/// oxiserve over FastAPI on each workload at each connection count: throughput, p99 the
/// other way round and CPU per request (above 1 means oxiserve is better on each), and
/// oxiserve's share of the ceiling; with the ceiling with oxiserve's work added, oxiserve's
/// share of it and its share of the bare ceiling (what that much work allows); with corpus
/// workloads, what batching buys (oxiserve over oxiserve with batching off).
fn ratios(
    runs: &[Run],
    ceiling: &Ceiling,
    workloads: &[Workload],
    connections: &[u32],
    cores: usize,
) -> Vec<Value> {
    let cpu_per_request = |run: &Run| run.cpu_seconds / number(&run.report, "requests");
    let rate = |run: &Run| number(&run.report, "requests_per_second");
    workloads
        .iter()
        .flat_map(|w| w.connections(connections).into_iter().map(move |c| (w.name.as_str(), c)))
        .filter_map(|(workload, c)| {
            let (ours, theirs) =
                (find(runs, workload, "oxiserve", c)?, find(runs, workload, "fastapi", c)?);
            let bound = ceiling.at(runs, workload, c, cores);
            let mut ratio = json!({
                "workload": workload,
                "connections": c,
                "throughput": rate(ours) / rate(theirs),
                "p99_fastapi_over_oxiserve":
                    number(&theirs.report, "p99_us") / number(&ours.report, "p99_us"),
                "oxiserve_share_of_ceiling": bound.map(|(bound, _)| rate(ours) / bound),
                "ceiling_requests_per_second": bound.map(|(bound, _)| bound),
                "ceiling_p99_ms": bound.and_then(|(_, p99)| p99),
                "cpu_per_request_fastapi_over_oxiserve": cpu_per_request(theirs) / cpu_per_request(ours),
                "oxiserve_cpu_ms_per_request": cpu_per_request(ours) * 1000.0,
            });
            if let Some(unbatched) = find(runs, workload, UNBATCHED, c) {
                ratio["batching_on_over_off"] = json!(rate(ours) / rate(unbatched));
            }
            if let Some(with_work) = find(runs, workload, HTTP_CEILING_WORK, c) {
                ratio["oxiserve_share_of_ceiling_with_work"] = json!(rate(ours) / rate(with_work));
                ratio["ceiling_with_work_share_of_ceiling"] =
                    json!(bound.map(|(bound, _)| rate(with_work) / bound));
            }
            Some(ratio)
        })
        .collect()
}

/// The Markdown summary: when, where, how, and the ratios with the numbers behind them.
fn table(
    service: &str,
    results: &Value,
    (workloads, runs): (&[Workload], &[Run]),
    ceiling: &Ceiling,
    ratios: &[Value],
) -> String {
    let machine = &results["machine"];
    let batching = runs.iter().any(|r| r.server == UNBATCHED);
    let with_work = runs.iter().any(|r| r.server == HTTP_CEILING_WORK);
    let bound = ceiling.label();
    let mut text = format!(
        "Run {} on {} ({} cores, kernel {}), {}; FastAPI with {} uvicorn workers.\n\
         Command: `{}`. Raw results: `bench/results/{}.json`.\n\n",
        text_of(&results["timestamp"]),
        text_of(&machine["cpu"]),
        machine["cores"],
        text_of(&machine["kernel"]),
        text_of(&machine["load_generator"]),
        results["fastapi_workers"],
        text_of(&results["command"]),
        text_of(&results["timestamp"]),
    );
    // With several rounds: which round each row shows, and every round's ratio.
    let rounds = ratios.first().is_some_and(|ratio| ratio["rounds"].is_object());
    let reference = rounds.then(|| ceiling.round_reference().1);
    if let Some(reference) = reference {
        let _ = writeln!(
            text,
            "{} rounds: each row is its connection count's median round by oxiserve / \
             {reference}, every number in it from that round; the ratio of each round is in the \
             column beside it.\n",
            results["rounds"],
        );
    }
    for (index, workload) in workloads.iter().enumerate() {
        let _ = writeln!(
            text,
            "![{}: throughput and p99 against connections](bench-http-{service}{}.svg)\n",
            workload.name,
            chart_suffix(index, workload)
        );
    }
    let mut header = vec![
        "workload",
        "connections",
        "throughput oxiserve / FastAPI",
        "p99 FastAPI / oxiserve",
        "CPU per request FastAPI / oxiserve",
    ];
    let share = format!("oxiserve / {bound}");
    header.push(&share);
    let each_round = reference.map(|reference| format!("oxiserve / {reference}, each round"));
    header.extend(each_round.as_deref());
    if batching {
        header.push("batching on / off");
    }
    if with_work {
        header.extend(["oxiserve / ceiling with its work", "ceiling with its work / ceiling"]);
    }
    header.extend([
        "oxiserve req/s, p50, p99",
        "oxiserve CPU per request",
        "FastAPI req/s, p50, p99",
    ]);
    let p99 = matches!(ceiling, Ceiling::Http);
    let bound_cell = format!("{bound} req/s{}", if p99 { ", p99" } else { "" });
    header.push(&bound_cell);
    header.push("errors");
    let _ = writeln!(text, "| {} |", header.join(" | "));
    let _ = writeln!(text, "|{}", " --- |".repeat(header.len()));
    for ratio in ratios {
        let value = |key: &str| ratio[key].as_f64().unwrap_or(f64::NAN);
        let workload = text_of(&ratio["workload"]);
        let connections = ratio["connections"].as_u64().unwrap_or_default() as u32;
        let cell = |server: &str| {
            find(runs, &workload, server, connections).map_or(("n/a".to_string(), 0), |r| {
                let p50 = number(&r.report, "p50_us") / 1000.0;
                let p99 = number(&r.report, "p99_us") / 1000.0;
                let rate = number(&r.report, "requests_per_second");
                (
                    format!("{}, {p50:.1} ms, {p99:.1} ms", rate_text(rate)),
                    r.report["errors"].as_u64().unwrap_or(0),
                )
            })
        };
        let ((ours, our_errors), (theirs, their_errors)) = (cell("oxiserve"), cell("fastapi"));
        let errors = our_errors
            + their_errors
            + cell(HTTP_CEILING).1
            + cell(HTTP_CEILING_WORK).1
            + cell(UNBATCHED).1;
        let bound =
            match (ratio["ceiling_requests_per_second"].as_f64(), ratio["ceiling_p99_ms"].as_f64())
            {
                (Some(rate), Some(p99)) => format!("{}, {p99:.1} ms", rate_text(rate)),
                (Some(rate), None) => rate_text(rate),
                (None, _) => "n/a".into(),
            };
        let mut cells = vec![
            workload.clone(),
            connections.to_string(),
            format!("{:.1}", value("throughput")),
            format!("{:.1}", value("p99_fastapi_over_oxiserve")),
            format!("{:.1}", value("cpu_per_request_fastapi_over_oxiserve")),
            format!("{:.2}", value("oxiserve_share_of_ceiling")),
        ];
        if each_round.is_some() {
            let each = ratio["rounds"]["oxiserve_over_reference"].as_array();
            let each: Vec<String> = each
                .into_iter()
                .flatten()
                .map(|r| format!("{:.2}", r.as_f64().unwrap_or(f64::NAN)))
                .collect();
            cells.push(each.join(", "));
        }
        if batching {
            cells.push(format!("{:.2}", value("batching_on_over_off")));
        }
        if with_work {
            cells.push(format!("{:.2}", value("oxiserve_share_of_ceiling_with_work")));
            cells.push(format!("{:.2}", value("ceiling_with_work_share_of_ceiling")));
        }
        cells.extend([
            ours,
            format!("{:.3} ms", value("oxiserve_cpu_ms_per_request")),
            theirs,
            bound,
            errors.to_string(),
        ]);
        let _ = writeln!(text, "| {} |", cells.join(" | "));
    }
    let peaks: Vec<String> = results["peak_rss"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|peak| format!("{} {:.0} MB", text_of(&peak["server"]), number(peak, "peak_rss_mb")))
        .collect();
    let _ = writeln!(
        text,
        "\nPeak RSS over the run, all of a server's processes: {}.",
        peaks.join(", ")
    );
    if let Some(work_ns) = results["ceiling_work_ns"].as_u64().filter(|_| with_work) {
        let _ = writeln!(
            text,
            "\nThe ceiling with its work (`{HTTP_CEILING_WORK}`) spends {:.1} µs on each request \
             before it answers: oxiserve's user CPU a request less the ceiling's, in the warm-up \
             at 8 connections.",
            work_ns as f64 / 1000.0
        );
    }
    let workloads = results["stage_times"].as_array().filter(|stages| !stages.is_empty());
    if let Some(workloads) = workloads {
        let _ = write!(
            text,
            "\nWhere oxiserve's time goes on one request at a time (`Server-Timing`, median of \
             {TIMED_REQUESTS} requests after the load):\n\n{}",
            stage_table(workloads)
        );
    }
    text
}

/// The table of `stage_times`' means: one row per workload, one column per `Server-Timing`
/// entry in the order the headers gave them (a workload without an entry shows `-`).
fn stage_table(workloads: &[Value]) -> String {
    let stages_of = |workload: &Value| -> Vec<(String, f64)> {
        let stages = workload["stages"].as_array().map(Vec::as_slice).unwrap_or_default();
        stages.iter().map(|stage| (text_of(&stage["name"]), number(stage, "ms"))).collect()
    };
    let mut names: Vec<String> = Vec::new();
    for workload in workloads {
        for (name, _) in stages_of(workload) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut table =
        format!("| workload | {} |\n|{}\n", names.join(" | "), " --- |".repeat(names.len() + 1));
    for workload in workloads {
        let stages = stages_of(workload);
        let cells: Vec<String> = names
            .iter()
            .map(|name| match stages.iter().find(|(stage, _)| stage == name) {
                Some((_, ms)) => format!("{ms:.2} ms"),
                None => "-".into(),
            })
            .collect();
        let _ = writeln!(table, "| {} | {} |", text_of(&workload["workload"]), cells.join(" | "));
    }
    table
}

/// Requests per second as a table shows them: one decimal below 100.
fn rate_text(rate: f64) -> String {
    if rate < 100.0 { format!("{rate:.1}") } else { format!("{rate:.0}") }
}

/// Replaces the text between the `bench:<marker>` markers of `docs` with `table`.
pub(super) fn update_docs(docs: &Path, marker: &str, table: &str) -> anyhow::Result<()> {
    let start_marker = format!("<!-- bench:{marker}:start -->\n");
    let end_marker = format!("<!-- bench:{marker}:end -->");
    let text = std::fs::read_to_string(docs)?;
    let (Some(start), Some(end)) = (text.find(&start_marker), text.find(&end_marker)) else {
        bail!("{} lacks the bench:{marker} markers", docs.display());
    };
    let updated = format!("{}{start_marker}{table}{}", &text[..start], &text[end..]);
    std::fs::write(docs, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_with_the_services_work_gets_two_ratios_and_a_sentence() {
        let run = |server, requests_per_second: f64| Run {
            workload: "predict".into(),
            server,
            connections: 8,
            round: 0,
            report: json!({"requests_per_second": requests_per_second, "requests": 1000,
                "p50_us": 100, "p99_us": 1000, "errors": 0}),
            cpu_seconds: 0.02,
        };
        let runs = [
            run("oxiserve", 60_000.0),
            run("fastapi", 6_000.0),
            run(HTTP_CEILING, 100_000.0),
            run(HTTP_CEILING_WORK, 64_000.0),
        ];
        let workloads = [Workload {
            name: "predict".into(),
            path: "/v1/predict".into(),
            bodies: PathBuf::new(),
            max_connections: u32::MAX,
        }];
        let ratios = ratios(&runs, &Ceiling::Http, &workloads, &[8], 2);
        let share = |key: &str| ratios[0][key].as_f64().unwrap();
        assert!((share("oxiserve_share_of_ceiling") - 0.60).abs() < 1e-9);
        assert!((share("oxiserve_share_of_ceiling_with_work") - 60.0 / 64.0).abs() < 1e-9);
        assert!((share("ceiling_with_work_share_of_ceiling") - 0.64).abs() < 1e-9);
        let results = json!({"ceiling_work_ns": 7_040, "fastapi_workers": 2});
        let table =
            table("tabular-scoring", &results, (&workloads, &runs), &Ceiling::Http, &ratios);
        assert!(
            table
                .contains("| oxiserve / ceiling with its work | ceiling with its work / ceiling |")
        );
        assert!(table.contains("| 0.60 | 0.94 | 0.64 |"), "{table}");
        assert!(table.contains("spends 7.0 µs on each request"), "{table}");
    }

    #[test]
    fn rows_show_the_median_round_with_each_rounds_ratio_beside_it() {
        let run = |server, round, requests_per_second: f64| Run {
            workload: "predict".into(),
            server,
            connections: 8,
            round,
            report: json!({"requests_per_second": requests_per_second, "requests": 1000,
                "p50_us": 100, "p99_us": 1000, "errors": 0}),
            cpu_seconds: 0.02,
        };
        // oxiserve / ceiling: 0.90, 0.60 and 0.70; the median is round 3's.
        let every_round = [
            run("oxiserve", 0, 90_000.0),
            run(HTTP_CEILING, 0, 100_000.0),
            run("fastapi", 0, 5_000.0),
            run("oxiserve", 1, 30_000.0),
            run(HTTP_CEILING, 1, 50_000.0),
            run("fastapi", 1, 4_000.0),
            run("oxiserve", 2, 56_000.0),
            run(HTTP_CEILING, 2, 80_000.0),
            run("fastapi", 2, 7_000.0),
        ];
        let kept = median_rounds(&every_round, Ceiling::Http.round_reference().0);
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(|run| run.round == 2), "every server's run of the median round");
        let workloads = [Workload {
            name: "predict".into(),
            path: "/v1/predict".into(),
            bodies: PathBuf::new(),
            max_connections: u32::MAX,
        }];
        let mut ratios = ratios(&kept, &Ceiling::Http, &workloads, &[8], 2);
        assert!((ratios[0]["throughput"].as_f64().unwrap() - 8.0).abs() < 1e-9);
        add_round_ratios(&mut ratios, &every_round, Ceiling::Http.round_reference().0);
        let results = json!({"fastapi_workers": 2, "rounds": 3});
        let table =
            table("tabular-scoring", &results, (&workloads, &kept), &Ceiling::Http, &ratios);
        assert!(table.contains("3 rounds: each row is"), "{table}");
        assert!(table.contains("| oxiserve / HTTP ceiling, each round |"), "{table}");
        assert!(table.contains("| 0.70 | 0.90, 0.60, 0.70 |"), "{table}");
    }

    #[test]
    fn the_stage_table_has_a_column_per_entry_in_header_order() {
        let workloads = [
            json!({"workload": "small", "stages": [
                {"name": "pre", "ms": 3.7}, {"name": "decode", "ms": 1.2},
                {"name": "infer", "ms": 4.0}]}),
            json!({"workload": "plain", "stages": [
                {"name": "pre", "ms": 0.5}, {"name": "infer", "ms": 1.0},
                {"name": "post", "ms": 0.1}]}),
        ];
        assert_eq!(
            stage_table(&workloads),
            "| workload | pre | decode | infer | post |\n\
             | --- | --- | --- | --- | --- |\n\
             | small | 3.70 ms | 1.20 ms | 4.00 ms | - |\n\
             | plain | 0.50 ms | - | 1.00 ms | 0.10 ms |\n"
        );
    }
}
