//! Start-up failures of the real binary: each stops the process with exit code 1 and a message
//! naming the file at fault, never a panic.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the service binary with `env` on a free port and returns how it ended.
fn run_service(env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tabular-scoring"));
    command.env("OXISERVE_HTTP__PORT", "0").env("OXISERVE_GRPC__PORT", "0");
    command.env("OXISERVE_MODELS__SESSIONS", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("the service binary starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "the service stops with exit code 1: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    output
}

#[test]
fn a_corrupted_model_file_is_named_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::models_dir(), tmp.path());
    let graph = tmp.path().join("penguins-forest/1/model.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&graph, bytes).unwrap();

    let output = run_service(&[("OXISERVE_MODELS__URI", tmp.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&graph.display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("sha256 mismatch"), "says what is wrong: {stderr}");
}

#[test]
fn a_missing_onnx_runtime_library_says_how_to_provision_it() {
    let missing = Path::new("/nonexistent/libonnxruntime.so");
    let output = run_service(&[
        ("ORT_DYLIB_PATH", missing),
        ("OXISERVE_MODELS__URI", &common::models_dir()),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/libonnxruntime.so"), "names the file: {stderr}");
    assert!(stderr.contains("cargo xtask setup"), "names the fix: {stderr}");
}

#[test]
fn a_manifest_that_lies_about_the_signature_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::models_dir(), tmp.path());
    let manifest_path = tmp.path().join("penguins-linear/1/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["inputs"][0]["shape"] = serde_json::json!([-1, 12]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    let output = run_service(&[("OXISERVE_MODELS__URI", tmp.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("penguins-linear/1/model.onnx"), "names the model: {stderr}");
    assert!(stderr.contains("signature does not match"), "says what is wrong: {stderr}");
}

#[test]
fn settings_for_a_model_the_pipeline_lacks_stop_the_start() {
    let models = common::models_dir();
    let output = run_service(&[
        ("OXISERVE_MODELS__URI", &models),
        ("OXISERVE_MODELS__OVERRIDES__PENGUINS_FORRST__SESSIONS", Path::new("2")),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("models.overrides.penguins_forrst"), "names the key: {stderr}");
    assert!(stderr.contains("penguins-forest"), "lists the models: {stderr}");
}

#[test]
fn the_start_up_log_names_the_repository() {
    let missing = Path::new("/nonexistent/oxiserve-models");
    let output = run_service(&[("OXISERVE_MODELS__URI", missing)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| {
            line["fields"]["message"] == "models from a local directory"
                && line["fields"]["repository"] == "/nonexistent/oxiserve-models"
        });
    assert!(named, "the log names the repository before anything fails: {stderr}");
}

#[test]
fn an_empty_or_short_admin_token_stops_the_start() {
    let models = common::models_dir();
    for token in ["", "hunter2"] {
        let output = run_service(&[
            ("OXISERVE_MODELS__URI", &models),
            ("OXISERVE_ADMIN__TOKEN", Path::new(token)),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("admin.token"), "names the key: {stderr}");
        assert!(stderr.contains("16"), "says what is required: {stderr}");
        assert!(!stderr.contains("hunter2"), "does not echo the token: {stderr}");
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status code.
fn http_status(address: &str, method: &str, path: &str, body: &str) -> u16 {
    oxiserve_test_support::http_request(address, method, path, body).0
}

/// The log lines of a running service.
type LogLines = Box<dyn Iterator<Item = String>>;

/// Starts the service binary on the bundled models, one session, with `env`; waits until it
/// reports ready. Returns the process, its HTTP address and the rest of its log.
fn start_service(env: &[(&str, &str)]) -> (std::process::Child, String, LogLines) {
    let (child, mut addresses, lines) = start_service_listening(env);
    (child, addresses.remove(0), lines)
}

/// As [`start_service`], with every address the service listens on, in the order logged
/// (HTTP first, then gRPC).
fn start_service_listening(env: &[(&str, &str)]) -> (std::process::Child, Vec<String>, LogLines) {
    use std::io::{BufRead, BufReader};
    let mut command = Command::new(env!("CARGO_BIN_EXE_tabular-scoring"));
    command
        .env("OXISERVE_HTTP__PORT", "0")
        .env("OXISERVE_GRPC__PORT", "0")
        .env("OXISERVE_MODELS__SESSIONS", "1")
        .env("OXISERVE_MODELS__URI", common::models_dir())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the service binary starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines: LogLines = Box::new(BufReader::new(stderr).lines().map_while(Result::ok));
    let addresses = addresses_until_ready(&mut lines);
    (child, addresses, lines)
}

/// The addresses a starting service logs before it reports ready.
fn addresses_until_ready(lines: &mut LogLines) -> Vec<String> {
    let mut addresses = Vec::new();
    for line in lines.by_ref() {
        let line = log_line(&line);
        if let Some(address) = line["fields"]["address"].as_str() {
            addresses.push(address.to_string());
        }
        if line["fields"]["message"] == "ready" {
            assert!(!addresses.is_empty(), "the service logs its addresses");
            return addresses;
        }
    }
    panic!("the service never reported ready");
}

/// A log line of the service: one JSON object, as production logs are by default.
fn log_line(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"))
}

/// Sends SIGTERM to `child`.
fn terminate(child: &std::process::Child) {
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
}

/// A prediction request body.
const BODY: &str = r#"{"island": "Dream", "bill_length_mm": 49.0}"#;

#[test]
fn every_log_line_of_a_request_names_its_request_id() {
    use std::io::{Read, Write};
    let (mut child, address, mut lines) = start_service(&[("RUST_LOG", "info,oxiserve=debug")]);
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let request = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         x-request-id: log-test-7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.to_lowercase().contains("x-request-id: log-test-7"), "echoed: {reply}");
    // The access line, written inside the request's span.
    let answered = lines
        .by_ref()
        .map(|line| log_line(&line))
        .find(|line| line["fields"]["message"] == "answered")
        .expect("the request is logged at debug level");
    let request_span = &answered["spans"][0];
    assert_eq!(request_span["name"], "request", "{answered}");
    assert_eq!(request_span["request_id"], "log-test-7", "{answered}");
    assert_eq!(request_span["route"], "/v1/predict", "{answered}");
    assert_eq!(answered["fields"]["status"], 200, "{answered}");
    terminate(&child);
    child.wait().unwrap();
}

#[test]
fn a_metrics_port_serves_metrics_and_the_traffic_port_does_not() {
    let port = oxiserve_test_support::free_port().unwrap();
    let (mut child, address, _lines) =
        start_service(&[("OXISERVE_TELEMETRY__METRICS_PORT", &port.to_string())]);
    assert_eq!(http_status(&address, "POST", "/v1/predict", BODY), 200);
    assert_eq!(http_status(&address, "GET", "/metrics", ""), 404);
    let (status, metrics) =
        oxiserve_test_support::http_request(&format!("127.0.0.1:{port}"), "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"oxiserve_http_requests_total{route="/v1/predict""#), "{metrics}");
    terminate(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn sigterm_turns_readiness_off_then_stops_cleanly() {
    let (mut child, address, mut lines) =
        start_service(&[("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "1500")]);
    assert_eq!(http_status(&address, "GET", "/health/ready", ""), 200);

    terminate(&child);
    let signal_logged = lines.by_ref().any(|line| {
        log_line(&line)["fields"]["message"].as_str().is_some_and(|m| m.starts_with("SIGTERM"))
    });
    assert!(signal_logged, "the signal is logged");
    assert_eq!(
        http_status(&address, "GET", "/health/ready", ""),
        503,
        "not ready during the grace"
    );
    assert_eq!(
        http_status(&address, "POST", "/v1/predict", BODY),
        200,
        "still serving during the grace"
    );

    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.collect();
    assert_eq!(status.code(), Some(0), "a clean exit after SIGTERM: {rest:?}");
}

#[test]
fn sigterm_under_load_completes_every_in_flight_request() {
    use std::time::{Duration, Instant};
    // Each batch waits 1 s for more requests, so all of them are still in flight when the
    // signal arrives; no grace period, so the server stops accepting at once.
    let (mut child, address, lines) = start_service(&[
        ("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "0"),
        ("OXISERVE_MODELS__BATCHING__MAX_BATCH_SIZE", "1000"),
        ("OXISERVE_MODELS__BATCHING__MAX_DELAY_US", "1000000"),
        ("OXISERVE_CACHE__CAPACITY", "0"),
    ]);
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let status = http_status(&address, "POST", "/v1/predict", BODY);
                (status, Instant::now())
            })
        })
        .collect();
    // Time for every client to connect and send; their batch is still gathering.
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    terminate(&child);
    for client in clients {
        let (status, answered) = client.join().expect("no client saw a dropped connection");
        assert_eq!(status, 200, "every in-flight request completes");
        assert!(answered > signalled, "the request was still in flight at SIGTERM");
    }
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.collect();
    assert_eq!(status.code(), Some(0), "a clean exit after SIGTERM: {rest:?}");
}

/// Seconds from SIGTERM to the exit of `child`, which must exit cleanly.
fn seconds_to_exit(child: &mut std::process::Child, signalled: std::time::Instant) -> f64 {
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit after SIGTERM");
    signalled.elapsed().as_secs_f64()
}

#[test]
fn sigterm_ends_within_grace_and_deadline_whatever_clients_do() {
    use std::io::Write;
    // Timeouts that would not end these connections in time: only the shutdown deadline can.
    let (mut child, addresses, _lines) = start_service_listening(&[
        ("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "300"),
        ("OXISERVE_LIMITS__REQUEST_TIMEOUT_MS", "1000"),
        ("OXISERVE_LIMITS__IDLE_TIMEOUT_MS", "60000"),
        ("OXISERVE_LIMITS__HANDSHAKE_TIMEOUT_MS", "60000"),
        ("OXISERVE_LIMITS__HEADER_READ_TIMEOUT_MS", "60000"),
    ]);
    let (http, grpc) = (&addresses[0], &addresses[1]);
    // Headers that never end; a gRPC connection that never sends the HTTP/2 preface; a
    // request whose body never comes.
    let mut partial = std::net::TcpStream::connect(http).unwrap();
    partial.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Ty").unwrap();
    let _silent = std::net::TcpStream::connect(grpc).unwrap();
    let mut bodiless = std::net::TcpStream::connect(http).unwrap();
    bodiless
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let signalled = std::time::Instant::now();
    terminate(&child);
    let seconds = seconds_to_exit(&mut child, signalled);
    assert!(seconds < 0.3 + 1.0 + 1.0, "grace + deadline, with a second to spare: {seconds} s");
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let (mut child, _address, _lines) =
        start_service(&[("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "30000")]);
    let signalled = std::time::Instant::now();
    terminate(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    terminate(&child);
    let seconds = seconds_to_exit(&mut child, signalled);
    assert!(seconds < 2.0, "not the 30 s grace: {seconds} s");
}

/// What a kept-alive client saw.
#[derive(Debug, Default)]
struct Outcome {
    answered: usize,
    failed: Vec<String>,
    told_to_close: bool,
}

/// Sends predictions on one kept-alive connection until the server answers with
/// `Connection: close`, as a load balancer's connection pool does (it then sends to other
/// replicas), or until `stop`. Any request without a whole answer is a failure.
fn keep_alive_client(address: &str, stop: &std::sync::atomic::AtomicBool) -> Outcome {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let mut outcome = Outcome::default();
    let stream = std::net::TcpStream::connect(address).expect("the server accepts connections");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let request = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    while !stop.load(Ordering::Relaxed) {
        if let Err(error) = writer.write_all(request.as_bytes()) {
            outcome.failed.push(format!("sending: {error}"));
            break;
        }
        let (mut status, mut length, mut close) = (String::new(), 0usize, false);
        if let Err(error) = reader.read_line(&mut status).and_then(|n| {
            if n == 0 { Err(std::io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) }
        }) {
            outcome.failed.push(format!("no answer: {error}"));
            break;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                outcome.failed.push("the headers were cut short".into());
                return outcome;
            }
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            close |= line == "connection: close";
        }
        let mut body = vec![0; length];
        if let Err(error) = reader.read_exact(&mut body) {
            outcome.failed.push(format!("the body was cut short: {error}"));
            break;
        }
        if status.starts_with("HTTP/1.1 200") {
            outcome.answered += 1;
        } else {
            outcome.failed.push(format!("{}: {}", status.trim(), String::from_utf8_lossy(&body)));
        }
        if close {
            outcome.told_to_close = true;
            break;
        }
    }
    outcome
}

#[test]
fn sigterm_under_load_fails_no_request_on_kept_alive_connections() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let (mut child, address, _lines) = start_service(&[
        ("OXISERVE_HTTP__SHUTDOWN_GRACE_MS", "1000"),
        ("OXISERVE_LIMITS__REQUEST_TIMEOUT_MS", "2000"),
        ("OXISERVE_CACHE__CAPACITY", "0"),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (address, stop) = (address.clone(), Arc::clone(&stop));
            std::thread::spawn(move || keep_alive_client(&address, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    terminate(&child);
    let seconds = seconds_to_exit(&mut child, signalled);
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let failed: Vec<&String> = outcomes.iter().flat_map(|o| &o.failed).collect();
    assert!(failed.is_empty(), "{} requests failed: {failed:?}", failed.len());
    let answered: usize = outcomes.iter().map(|o| o.answered).sum();
    assert!(answered > 64, "the clients kept the service busy: {answered} answers");
    assert!(outcomes.iter().all(|o| o.told_to_close), "every client was told to close");
    assert!(seconds < 1.0 + 2.0 + 1.0, "grace + deadline, with a second to spare: {seconds} s");
}
