//! `cargo xtask bench --instructions`: the instructions a request costs the service and the
//! HTTP ceiling, counted by valgrind.
//!
//! Over HTTP one machine's runs of the same build spread by a quarter, so a change of a few
//! percent cannot be seen there. Instruction counts can: callgrind counts every instruction a
//! process runs, the same from run to run whatever else the machine does. Each server (the
//! service's `profiling` build, cache off, and the HTTP ceiling answering the service's own
//! response) runs under callgrind twice, serving [`WARM_UP`] and then [`WARM_UP`] +
//! [`COUNTED`] requests of `bench/requests/<service>.json`, one after another on one kept-alive
//! connection; the difference over [`COUNTED`] is one request's cost, with start-up, model
//! loading and shut-down cancelled out. quanta's clock calibration, which runs at start-up for
//! as long as the clock takes to settle, is left out of the counts (`--toggle-collect`), with
//! the other statics made once.
//!
//! Slowed some fifty times, the service's small models would pass the run time under which
//! they run on the request's thread, and a share of their runs, different in every run, would
//! go through the queue as it never does natively: the service runs with
//! `models.batching.inline_max_us` raised to one second.
//!
//! With `--rounds N` it counts every server N times and reports each one's median round. The
//! counts go to `bench/results/<timestamp>-instructions.json`, the last callgrind files (for
//! `callgrind_annotate`) to `target/bench/instructions/`, and the table replaces the one
//! between the `bench:instructions:<service>` markers of `docs/benchmarks.md`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use oxiserve_xtask::onnxruntime;
use serde_json::json;
use xshell::{Shell, cmd};

use super::Args;
use super::http::{
    HTTP_CEILING, Launch, Server, start_ceiling, start_rust, target_dir, update_docs,
    wait_ready_within,
};
use super::workload;
use crate::debian;

/// valgrind, from Debian.
const VALGRIND: (&str, &str) = ("valgrind", "/usr/bin/valgrind");

/// Requests served before the counted ones: connections, buffers and caches settle.
const WARM_UP: usize = 500;

/// Requests whose instructions are counted.
const COUNTED: usize = 2_000;

/// Functions listed by their instructions a request.
const FUNCTIONS: usize = 25;

/// How long a server under callgrind may take to be ready.
const START_LIMIT: Duration = Duration::from_secs(300);

/// A server's counts: the whole process's instructions after [`WARM_UP`] and after
/// [`WARM_UP`] + [`COUNTED`] requests, in each round.
struct Count {
    server: &'static str,
    /// `[few, many]` instructions, a pair a round.
    rounds: Vec<[u64; 2]>,
}

impl Count {
    /// Instructions a request in each round: the difference of its two runs over [`COUNTED`].
    fn per_request(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|[few, many]| (*many as f64 - *few as f64) / COUNTED as f64)
            .collect()
    }

    /// The median round's instructions a request (the lower middle one of an even count).
    fn median(&self) -> f64 {
        let mut rounds = self.per_request();
        rounds.sort_by(f64::total_cmp);
        rounds[(rounds.len() - 1) / 2]
    }
}

pub(super) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    debian::ensure_installed(&[VALGRIND])?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let service = &args.service;
    let workload = workload::request(root, service).with_context(|| {
        format!("--instructions sends one request to {service}, from bench/requests/{service}.json")
    })?;
    let body = workload::first_body(&workload)?;
    cmd!(sh, "cargo build --profile profiling --quiet --package {service}").run()?;
    cmd!(sh, "cargo build --profile profiling --quiet --package oxiserve --example http_ceiling")
        .run()?;
    let scratch = target_dir(root).join("bench/instructions");
    std::fs::create_dir_all(&scratch)?;

    let models = root.join("services").join(service).join("models");
    let response = scratch.join("response.json");
    let mut counts = ["oxiserve", HTTP_CEILING].map(|server| Count { server, rounds: Vec::new() });
    for round in 0..args.rounds {
        for count in &mut counts {
            let server = count.server;
            let mut pair = [0; 2];
            for (total, requests) in pair.iter_mut().zip([WARM_UP, WARM_UP + COUNTED]) {
                let out = scratch.join(format!("{server}-{requests}.callgrind"));
                let _ = std::fs::remove_file(&out);
                let launch = Launch { profile: "profiling", under: callgrind(&out) };
                let running = if server == HTTP_CEILING {
                    start_ceiling(root, &launch, &response, (server, 0))?
                } else {
                    let settings = [("OXISERVE_MODELS__BATCHING__INLINE_MAX_US", "1000000")];
                    let name = (server, settings.as_slice());
                    start_rust(root, (service, &launch), &models, &library, 0, name)?
                };
                let answer = serve(&running, &workload.path, &body, requests)?;
                // The ceiling, counted after the service, answers with the service's answer.
                if server != HTTP_CEILING {
                    std::fs::write(&response, answer)?;
                }
                // Stopped (SIGTERM, then waited for), callgrind writes its counts as it exits.
                drop(running);
                *total = total_instructions(&out)?;
                eprintln!("bench: round {round}, {server}, {requests} requests: {total}");
            }
            count.rounds.push(pair);
        }
    }

    // Where the last round's instructions went, function by function.
    let mut functions = Vec::new();
    for count in &counts {
        let annotate = |requests: usize| {
            let out = scratch.join(format!("{}-{requests}.callgrind", count.server));
            cmd!(sh, "callgrind_annotate --threshold=100 --inclusive=no --auto=no {out}")
                .quiet()
                .read()
        };
        let mut top = per_function(&annotate(WARM_UP)?, &annotate(WARM_UP + COUNTED)?);
        top.truncate(FUNCTIONS);
        eprintln!("bench: {}'s instructions a request, by function (self cost):", count.server);
        for (function, instructions) in &top {
            eprintln!("{instructions:>8.0}  {function}");
        }
        let top: Vec<_> = top
            .into_iter()
            .map(|(function, n)| json!({"function": function, "instructions": n.round()}))
            .collect();
        functions.push(json!({"server": count.server, "functions": top}));
    }

    let command =
        format!("cargo xtask bench --service {service} --instructions --rounds {}", args.rounds);
    let fields = json!({
        "warm_up_requests": WARM_UP,
        "counted_requests": COUNTED,
        "servers": counts.iter().map(|c| json!({
            "server": c.server,
            "rounds": c.rounds.iter().map(|[few, many]| json!({
                "instructions_after_warm_up": few,
                "instructions_after_counted": many,
            })).collect::<Vec<_>>(),
            "instructions_per_request":
                c.per_request().iter().map(|n| n.round()).collect::<Vec<_>>(),
            "median": c.median().round(),
        })).collect::<Vec<_>>(),
        "by_function": functions,
    });
    let mut results = super::results(&sh, service, command, fields)?;
    results["machine"]["load_generator"] =
        json!("one client on one kept-alive connection, requests one after another");
    let path = super::save(root, &results, "-instructions")?;
    let run = results["timestamp"].as_str().unwrap_or("undated");
    let table = format!(
        "Run `{run}` (`{}`), median of {} rounds:\n\n{}",
        results["command"].as_str().unwrap_or_default(),
        args.rounds,
        table(&counts)
    );
    println!("{table}");
    update_docs(&root.join("docs/benchmarks.md"), &format!("instructions:{service}"), &table)?;
    eprintln!(
        "bench: results in {}, callgrind files in {}, table in docs/benchmarks.md",
        path.display(),
        scratch.display()
    );
    Ok(())
}

/// Each function's own instructions a request (not those of what it calls), most first: the
/// difference between two `callgrind_annotate` reports, of [`WARM_UP`] and of [`WARM_UP`] +
/// [`COUNTED`] requests, over [`COUNTED`]. A function is its source file and name, as the
/// report gives them (a function inlined into several others is counted where it was inlined).
fn per_function(few: &str, many: &str) -> Vec<(String, f64)> {
    let counts = |report: &str| {
        let mut counts = std::collections::HashMap::new();
        // The functions' list ends where annotated source lines, of the same form, begin.
        for line in report.lines().take_while(|line| !line.starts_with("-- ")) {
            let Some((count, rest)) = line.trim_start().split_once(' ') else { continue };
            let Ok(count) = count.replace(',', "").parse::<i64>() else { continue };
            let Some((_, function)) = rest.split_once(")  ") else { continue };
            let function = function.split(" [").next().unwrap_or(function).trim();
            if function != "PROGRAM TOTALS" {
                *counts.entry(short_path(function)).or_insert(0) += count;
            }
        }
        counts
    };
    let (few, many) = (counts(few), counts(many));
    let mut functions: Vec<(String, f64)> = many
        .into_iter()
        .map(|(function, count)| {
            let per_request = (count - few.get(&function).copied().unwrap_or(0)) as f64;
            (function, per_request / COUNTED as f64)
        })
        .collect();
    functions.sort_by(|a, b| b.1.total_cmp(&a.1));
    functions
}

/// `file:function` with the file's path from its crate or library on: `serde_json-1.0.154/...`
/// for a crate from the registry, `std/...` or `core/...` for Rust's library.
fn short_path(function: &str) -> String {
    let from = [("/registry/src/", 1), ("/rustc/", 2)].into_iter().find_map(|(marker, skip)| {
        let rest = &function[function.find(marker)? + marker.len()..];
        // The registry's index directory, or the compiler's commit and `library/`.
        rest.splitn(skip + 1, '/').nth(skip)
    });
    from.unwrap_or(function).to_string()
}

/// valgrind's command line for a process counted by callgrind into `out`.
fn callgrind(out: &Path) -> Vec<String> {
    [
        VALGRIND.1,
        "--tool=callgrind",
        // Lazily made statics, quanta's calibration among them (inlined into `get_or_init`):
        // made once, at start-up or by the first requests, in both runs alike.
        "--toggle-collect=once_cell::imp::OnceCell<T>::initialize",
        // A toggle turns collection off at start unless told otherwise.
        "--collect-atstart=yes",
        &format!("--callgrind-out-file={}", out.display()),
    ]
    .map(String::from)
    .to_vec()
}

/// Sends `body` to `path` of `server` `requests` times, one after another on one kept-alive
/// connection, once the server is ready; every answer must be a 200. Returns the last
/// answer's body.
fn serve(server: &Server, path: &str, body: &[u8], requests: usize) -> anyhow::Result<Vec<u8>> {
    wait_ready_within(server, START_LIMIT)?;
    let stream = TcpStream::connect(("127.0.0.1", server.port))?;
    // One write a request: a head and a body written apart would wait on delayed ACKs.
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut reader = BufReader::new(stream);
    let mut answer = Vec::new();
    for sent in 0..requests {
        reader.get_mut().write_all(&request)?;
        let (status, length) = read_head(&mut reader)
            .with_context(|| format!("{}'s answer to request {sent}", server.name))?;
        answer.resize(length, 0);
        reader.read_exact(&mut answer)?;
        ensure!(
            status == 200,
            "{} answered request {sent} with {status}: {}",
            server.name,
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(answer)
}

/// Reads an answer's status line and headers: its status and its `Content-Length`.
fn read_head(reader: &mut impl BufRead) -> anyhow::Result<(u16, usize)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split(' ').nth(1).and_then(|code| code.parse().ok());
    let status = status.with_context(|| format!("no status line: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        ensure!(reader.read_line(&mut line)? > 0, "the connection closed within the head");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse()?);
        }
    }
    Ok((status, length.context("no Content-Length")?))
}

/// The instructions callgrind counted in `out`: its `totals:` line, written as the process
/// exited.
fn total_instructions(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out).with_context(|| format!("{}", out.display()))?;
    let total = text.lines().find_map(|l| l.strip_prefix("totals:"));
    let total = total.with_context(|| format!("callgrind wrote no totals to {}", out.display()))?;
    total.trim().parse().with_context(|| format!("{}: totals", out.display()))
}

/// The Markdown table of instructions a request: each server's median round, its share of the
/// ceiling's, and every round's count.
fn table(counts: &[Count]) -> String {
    let mut table = String::from("| server | instructions a request | / HTTP ceiling | rounds |\n");
    table += "| --- | --- | --- | --- |\n";
    let ceiling = counts.iter().find(|c| c.server == HTTP_CEILING).map(Count::median);
    for count in counts {
        let median = count.median();
        let share = ceiling.map_or(String::from("-"), |c| format!("{:.2}", median / c));
        let rounds: Vec<String> = count.per_request().into_iter().map(thousands).collect();
        let (server, median) = (count.server, thousands(median));
        table += &format!("| {server} | {median} | {share} | {} |\n", rounds.join(", "));
    }
    table
}

/// `n` rounded, with a comma between thousands: 47,391.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_costs_the_difference_over_the_counted_requests_median_of_the_rounds() {
        let per = |n: u64| [1_000_000, 1_000_000 + n * COUNTED as u64];
        let rounds = vec![per(2_100), per(1_900), per(2_000), per(5_000)];
        let count = Count { server: "oxiserve", rounds };
        assert_eq!(count.per_request(), [2_100.0, 1_900.0, 2_000.0, 5_000.0]);
        assert_eq!(count.median(), 2_000.0);
        let ceiling = Count { server: HTTP_CEILING, rounds: vec![per(500)] };
        let table = table(&[count, ceiling]);
        assert!(
            table.contains("| oxiserve | 2,000 | 4.00 | 2,100, 1,900, 2,000, 5,000 |"),
            "{table}"
        );
        assert!(table.contains("| http-ceiling | 500 | 1.00 | 500 |"), "{table}");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
    }

    #[test]
    fn functions_cost_the_difference_of_the_two_reports_most_first() {
        let report = |parse: u64, write: u64| {
            format!(
                "Ir\n----\n{} (100.0%)  PROGRAM TOTALS\n\n----\nIr  file:function\n----\n\
                 {} (50.00%)  src/h1.rs:hyper::parse [/bin/service]\n\
                 {} (20.00%)  ./string/memcpy.S:__memcpy_avx [/usr/lib/libc.so.6]\n\
                 \n-- Auto-annotated source: src/h1.rs\n{} (50.00%)  fn parse() {{\n",
                parse + write,
                thousands(parse as f64),
                thousands(write as f64),
                thousands(parse as f64)
            )
        };
        let few = report(1_000_000, 2_000_000);
        let many = report(1_000_000 + 3_000 * COUNTED as u64, 2_000_000 + 500 * COUNTED as u64);
        let functions = per_function(&few, &many);
        assert_eq!(
            functions,
            [
                ("src/h1.rs:hyper::parse".to_string(), 3_000.0),
                ("./string/memcpy.S:__memcpy_avx".to_string(), 500.0),
            ]
        );
    }

    #[test]
    fn paths_start_at_the_crate_or_library() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/\
                        serde_json-1.0.154/src/ser.rs:serde_json::ser::format_escaped_str";
        assert_eq!(
            short_path(registry),
            "serde_json-1.0.154/src/ser.rs:serde_json::ser::format_escaped_str"
        );
        let library =
            "/rustc/59807616e1fa/library/core/src/str/validations.rs:core::str::from_utf8";
        assert_eq!(short_path(library), "core/src/str/validations.rs:core::str::from_utf8");
        let own = "crates/oxiserve/src/engine/mod.rs:oxiserve::engine::Engine<P>::run";
        assert_eq!(short_path(own), own);
    }

    #[test]
    fn heads_give_their_status_and_length() {
        let head = "HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 17\r\nx: y\r\n\r\nbody";
        let mut reader = BufReader::new(head.as_bytes());
        assert_eq!(read_head(&mut reader).unwrap(), (422, 17));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
        let cut = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n";
        assert!(read_head(&mut BufReader::new(cut.as_bytes())).is_err());
        let without = "HTTP/1.1 200 OK\r\n\r\n";
        assert!(read_head(&mut BufReader::new(without.as_bytes())).is_err());
    }
}
