//! `cargo xtask deploy --service NAME [--env ENV] [--tag TAG] [--image REPOSITORY]
//! [--bundle-models] [--push REGISTRY] [--apply] [--monitoring]`: a service shipped, step by step. Without
//! `--push` and `--apply`, nothing outside `target/` and the local image store changes.
//!
//! 1. the binary, built in release (`--debug`: the dev profile, faster to build);
//! 2. the OCI image (`image`): assembled from local files by `deploy/Containerfile` with
//!    buildah, since no base image can be pulled here;
//! 3. with `--push`, the image copied to a registry (skopeo);
//! 4. the Kubernetes manifests (`manifests`), rendered into `target/deploy/NAME/ENV/` and
//!    checked;
//! 5. with `--apply`, the manifests applied to kubectl's current context, after the cluster
//!    accepted them in a server-side dry run.
//!
//! An unknown service or environment, or a missing tool, stops the command before anything is
//! built.

mod image;
mod manifests;
mod trainer;

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::venv;

/// Options of `cargo xtask deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service crate under `services/`.
    #[arg(long)]
    service: String,
    /// The environment: an overlay under `deploy/k8s/overlays/`.
    #[arg(long, default_value = "dev")]
    env: String,
    /// The image tag (default: the service crate's version).
    #[arg(long)]
    tag: Option<String>,
    /// The image repository (default: the service's name).
    #[arg(long)]
    image: Option<String>,
    /// Put the service's bundled models in the image (`/srv/models`, which the default
    /// `models.uri` finds); by default the image pulls its models from `models.uri` at start.
    #[arg(long)]
    bundle_models: bool,
    /// Build the binary with the dev profile: faster to build, slower to serve (for tests).
    #[arg(long)]
    debug: bool,
    /// Push the image to this registry (`host:port`; TLS is not required on loopback).
    #[arg(long, value_name = "REGISTRY")]
    push: Option<String>,
    /// Apply the manifests to kubectl's current context (after a server-side dry run).
    #[arg(long)]
    apply: bool,
    /// Add a ServiceMonitor and a PrometheusRule (of `deploy/observability/alerts.yml`), for
    /// clusters that run the Prometheus Operator.
    #[arg(long)]
    monitoring: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let target = Target::new(root, &args.service, &args.env)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    manifests::require_kubectl(&sh)?;
    image::require_tools(&sh, args.push.is_some())?;
    if args.monitoring {
        ensure!(
            runs(&sh, &manifests::promtool()),
            "--monitoring needs promtool to check the alert rules (Debian: apt-get install \
             prometheus)"
        );
    }
    let context = if args.apply { Some(current_context(&sh)?) } else { None };
    let tag = match &args.tag {
        Some(tag) => tag.clone(),
        None => crate::release::package_version(&root.join("services").join(&args.service))?,
    };
    let repository = args.image.as_deref().unwrap_or(&args.service);
    let python = python(&sh, root)?;
    let build = image::Build {
        service: &args.service,
        repository,
        tag: &tag,
        bundle_models: args.bundle_models,
        debug: args.debug,
    };
    let steps = 4 + usize::from(args.push.is_some()) + usize::from(args.apply);
    println!("deploy: 1/{steps} build {} ({})", args.service, build.profile());
    let binary = image::build_binary(&sh, root, &build)?;
    println!("deploy: 2/{steps} image {}", build.local_name());
    let built = image::build(&sh, root, &build, &binary)?;
    println!("deploy:   {} ({:.1} MB)", built.name, built.bytes as f64 / 1e6);
    let mut reference = built.name.clone();
    if let Some(registry) = &args.push {
        println!("deploy: 3/{steps} push to {registry}");
        reference = image::push(&sh, root, &built, registry)?;
        println!("deploy:   {reference}");
    }
    let step = 3 + usize::from(args.push.is_some());
    println!("deploy: {step}/{steps} render the manifests for {}", args.env);
    let manifests = manifests::render(&sh, root, &python, &target, &reference, args.monitoring)?;
    println!("deploy: {}/{steps} check {}", step + 1, manifests.display());
    manifests::check(&sh, &python, &manifests)?;
    let Some(context) = context else {
        println!("deploy: done; apply with `kubectl apply -f {}`", manifests.display());
        return Ok(());
    };
    println!("deploy: {steps}/{steps} apply to the kubectl context `{context}`");
    cmd!(sh, "kubectl apply --dry-run=server -f {manifests}").run().with_context(|| {
        format!(
            "the cluster of `{context}` refused the manifests in a dry run: nothing was applied"
        )
    })?;
    cmd!(sh, "kubectl apply -f {manifests}").run()?;
    let deployment = format!("deployment/{}-oxiserve", args.service);
    println!("deploy: applied; watch the rollout with `kubectl rollout status {deployment}`");
    Ok(())
}

/// The python of the venv with the manifests' checker (kubernetes-validate), made ready.
pub(crate) fn python(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    venv::ensure(sh, &root.join(manifests::VENV), &root.join(manifests::REQUIREMENTS))
}

/// kubectl's current context, or what to do without one.
fn current_context(sh: &Shell) -> anyhow::Result<String> {
    let context = cmd!(sh, "kubectl config current-context").quiet().ignore_stderr().read();
    context.ok().filter(|context| !context.is_empty()).context(
        "--apply needs a kubectl context to apply to, and kubectl has no current one: set one \
         with `kubectl config use-context NAME` (or KUBECONFIG)",
    )
}

/// Renders and checks every service in every environment, with and without the monitoring
/// objects, and the training service's manifests: what `cargo xtask test` runs.
pub(crate) fn check_all(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    manifests::require_kubectl(sh)?;
    let python = python(sh, root)?;
    for service in names_in(&root.join("services"))? {
        for env in names_in(&root.join("deploy/k8s/overlays"))? {
            let target = Target::new(root, &service, &env)?;
            for monitoring in [false, true] {
                let image = format!("{service}:test");
                let rendered = manifests::render(sh, root, &python, &target, &image, monitoring)?;
                let what = || format!("{service} in {env} (monitoring: {monitoring})");
                manifests::check(sh, &python, &rendered).with_context(what)?;
            }
        }
    }
    trainer::check(sh, root, &python).context("the training service's manifests")
}

/// A service and an environment that exist.
struct Target {
    service: String,
    env: String,
}

impl Target {
    /// Checks that `service` is a service under `services/` and `env` an overlay, naming the
    /// ones there are when not.
    fn new(root: &Path, service: &str, env: &str) -> anyhow::Result<Self> {
        let services = names_in(&root.join("services"))?;
        ensure!(
            services.iter().any(|s| s == service),
            "no service `{service}` under services/; there are: {}",
            services.join(", ")
        );
        let envs = names_in(&root.join("deploy/k8s/overlays"))?;
        ensure!(
            envs.iter().any(|e| e == env),
            "no environment `{env}` under deploy/k8s/overlays/; there are: {}",
            envs.join(", ")
        );
        Ok(Self { service: service.into(), env: env.into() })
    }
}

/// The names of the directories in `dir`, sorted.
fn names_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `program` runs (`program --version` succeeds).
fn runs(sh: &Shell, program: &str) -> bool {
    cmd!(sh, "{program} --version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}
