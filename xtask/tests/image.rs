//! The image that `cargo xtask deploy` builds, run for real: pushed to a registry on loopback
//! (Debian's `docker-registry`), pulled back and run under podman, where it becomes ready,
//! answers a prediction from its bundled models, serves models from S3 (moto on the host)
//! when configured so, and on `podman stop` exits 0 within the grace period with no request
//! that it accepted left unanswered. `cargo xtask test` installs buildah, podman, skopeo, runc
//! and the registry.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oxiserve::config::S3Config;
use oxiserve::store::Publication;
use oxiserve_test_support::{S3Server, ServerProcess, free_port};

use self::common::{podman, root};

mod common;

const SERVICE: &str = "tabular-scoring";
const MODELS: [&str; 2] = ["penguins-linear", "penguins-forest"];

/// Runs `command`, failing the test with its output unless it succeeds.
fn succeed(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A registry on 127.0.0.1 and a free port, storing into a temporary directory; stopped when
/// dropped.
async fn registry(storage: &Path) -> ServerProcess {
    let port = free_port().unwrap();
    let config = storage.join("config.yml");
    let settings = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.join("data").display()
    );
    std::fs::write(&config, settings).unwrap();
    let args = ["serve".to_string(), config.display().to_string()];
    let hint = "apt-get install docker-registry";
    ServerProcess::start("docker-registry", &args, port, hint).await.expect("the registry starts")
}

/// A container of the image on the host's network, removed when dropped.
struct Container {
    name: String,
    port: u16,
}

impl Container {
    /// Starts `image` with its HTTP port on a free port and the `environment` given.
    fn start(image: &str, environment: &[(&str, String)]) -> Self {
        let (port, grpc) = (free_port().unwrap(), free_port().unwrap());
        let name = format!("oxiserve-test-{}-{port}", std::process::id());
        let mut run = podman();
        run.args(["run", "--detach", "--network", "host", "--name", &name]);
        let ports =
            [("OXISERVE_HTTP__PORT", port.to_string()), ("OXISERVE_GRPC__PORT", grpc.to_string())];
        for (key, value) in environment.iter().cloned().chain(ports) {
            run.args(["--env", &format!("{key}={value}")]);
        }
        succeed(run.arg(image));
        Self { name, port }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until `/health/ready` says 200.
    fn wait_ready(&self) {
        let start = Instant::now();
        while exchange(&self.address(), "GET", "/health/ready", "").map(|(status, _)| status)
            != Some(200)
        {
            let logs = || {
                String::from_utf8_lossy(&succeed(podman().args(["logs", &self.name])).stderr)
                    .into_owned()
            };
            assert!(start.elapsed() < Duration::from_secs(60), "never ready:\n{}", logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A prediction of the bundled request: its body and the model versions that answered.
    fn predict(&self) -> (u16, String) {
        let body =
            std::fs::read_to_string(root().join("bench/requests/tabular-scoring.json")).unwrap();
        exchange(&self.address(), "POST", "/v1/predict", &body).expect("the service answers")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "--force", &self.name]).output();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the whole answer (headers and
/// body); `None` when the connection is refused, the answer is cut or never comes.
fn exchange(address: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    Some((status, reply))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_image_is_pushed_pulled_served_and_stopped_cleanly() {
    let storage = tempfile::tempdir().unwrap();
    let registry = registry(storage.path()).await;
    let pushed_to = format!("127.0.0.1:{}", registry.port());
    let tag = format!("test-{}", std::process::id());

    // The command, as a team runs it (the dev profile: the release build is the default).
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let deploy = succeed(Command::new(xtask).current_dir(root()).args([
        "deploy",
        "--service",
        SERVICE,
        "--debug",
        "--bundle-models",
        "--tag",
        &tag,
        "--push",
        &pushed_to,
    ]));
    let said = String::from_utf8_lossy(&deploy.stdout);
    assert!(said.contains("MB)") && said.contains("3/5 push"), "{said}");

    // What was pushed comes back, with the local copy gone.
    let pulled = Pulled(format!("{pushed_to}/{SERVICE}:{tag}"));
    let image = &pulled.0;
    succeed(podman().args(["rmi", "--force", &format!("localhost/{SERVICE}:{tag}")]));
    succeed(podman().args(["pull", "--quiet", "--tls-verify=false", image]));
    let labels =
        succeed(podman().args(["image", "inspect", "--format", "{{json .Labels}}", image]));
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["org.opencontainers.image.version"], tag.as_str(), "{labels}");
    assert_eq!(labels["org.opencontainers.image.title"], SERVICE, "{labels}");
    let user = succeed(podman().args(["image", "inspect", "--format", "{{.Config.User}}", image]));
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");

    // The bundled models answer.
    let bundled = Container::start(image, &[]);
    bundled.wait_ready();
    let (status, answer) = bundled.predict();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"species\"") && answer.contains("penguins-forest=1"), "{answer}");

    // Stopped while a client keeps sending, as a load balancer would until it sees the
    // replica unready (1 s here, within the 2 s of `http.shutdown_grace_ms`): every request is
    // answered, and the service exits 0 well within the grace period.
    let stopping = Arc::new(AtomicBool::new(false));
    let client = {
        let (address, stopping) = (bundled.address(), Arc::clone(&stopping));
        let body =
            std::fs::read_to_string(root().join("bench/requests/tabular-scoring.json")).unwrap();
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            let mut stopped_at = None;
            while stopped_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(1)) {
                if stopped_at.is_none() && stopping.load(Ordering::Relaxed) {
                    stopped_at = Some(Instant::now());
                }
                match exchange(&address, "POST", "/v1/predict", &body) {
                    Some((200, _)) => answered += 1,
                    other => failed
                        .push(other.map_or("no answer".into(), |(status, _)| status.to_string())),
                }
            }
            (answered, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    stopping.store(true, Ordering::Relaxed);
    let started = Instant::now();
    succeed(podman().args(["stop", "--time", "20", &bundled.name]));
    let took = started.elapsed();
    let (answered, failed) = client.join().unwrap();
    let code =
        succeed(podman().args(["inspect", "--format", "{{.State.ExitCode}}", &bundled.name]));
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "the service's exit code");
    assert!(took < Duration::from_secs(15), "stopped in {took:?}, past the grace period");
    assert!(answered > 10, "the client was answered {answered} times before the stop");
    assert!(failed.is_empty(), "requests failed during the stop: {failed:?}");
    drop(bundled);

    // Models from S3: version 7 of both models, published to moto, replace the bundled ones.
    let s3 = S3Server::start().await.expect("moto starts");
    s3.create_bucket("models").await.unwrap();
    let s3_config = S3Config { endpoint: Some(s3.endpoint()), ..S3Config::default() };
    for model in MODELS {
        let from = root().join("services").join(SERVICE).join("models").join(model).join("1");
        let to = format!("s3://models/{SERVICE}");
        let publication = Publication {
            model: model.into(),
            version: 7,
            from,
            to,
            force: false,
            s3: s3_config.clone(),
        };
        publication.run(&|_, _, _| {}).await.expect("the version is published");
    }
    let setting = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
    let environment = [
        ("OXISERVE_MODELS__URI", format!("s3://models/{SERVICE}")),
        ("OXISERVE_MODELS__S3__ENDPOINT", s3.endpoint()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ACCESS_KEY_ID", setting("AWS_ACCESS_KEY_ID", "oxiserve-test")),
        ("AWS_SECRET_ACCESS_KEY", setting("AWS_SECRET_ACCESS_KEY", "oxiserve-test")),
        ("AWS_REGION", setting("AWS_REGION", "us-east-1")),
    ];
    let from_s3 = Container::start(image, &environment);
    from_s3.wait_ready();
    let (status, answer) = from_s3.predict();
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("penguins-forest=7") && answer.contains("penguins-linear=7"),
        "{answer}"
    );
}

/// An image pulled into the local store, removed from it when dropped.
struct Pulled(String);

impl Drop for Pulled {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.0]).output();
    }
}
