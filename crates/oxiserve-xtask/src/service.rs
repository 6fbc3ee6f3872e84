//! One service of a project: served on its bundled models (`cargo xtask serve`), and checked
//! and tested (`cargo xtask test --service NAME` here, `cargo xtask test` in a service's own
//! repository).
//!
//! What the user set wins when serving: `--port` and `--grpc-port`, else `OXISERVE_HTTP__PORT`
//! and `OXISERVE_GRPC__PORT`, else 8080 and the HTTP port + 1 (so that two services started
//! with different `--port`s do not collide); `OXISERVE_MODELS__URI` (say, an `s3://`
//! repository) replaces the bundled models, and `OXISERVE_LOG__FORMAT` the pretty logs.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::onnxruntime;

/// How to serve a service: the options of `cargo xtask serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// HTTP port (127.0.0.1 unless `OXISERVE_HTTP__HOST` says otherwise); default
    /// `OXISERVE_HTTP__PORT`, else 8080.
    #[arg(long)]
    pub port: Option<u16>,
    /// gRPC port; default `OXISERVE_GRPC__PORT`, else the HTTP port + 1.
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Build with the release profile (slower to build, faster to serve).
    #[arg(long)]
    pub release: bool,
}

/// Builds and runs `package` of the project at `root` on the model repository `models`, with
/// ONNX Runtime provisioned, until it stops.
pub fn serve(root: &Path, package: &str, models: &Path, args: &ServeArgs) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let profile = args.release.then_some("--release");
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let variables = environment(args, models, |key| std::env::var(key).ok());
    let _variables: Vec<_> = variables.iter().map(|(key, value)| sh.push_env(key, value)).collect();
    cmd!(sh, "cargo run --quiet {profile...} --package {package}").run()?;
    Ok(())
}

/// A service's environment: the HTTP port first, then the gRPC port, the model repository and
/// the log format, each as the user set it (`--port`, `--grpc-port`, the variable in `env`) or
/// else its default here.
pub fn environment(
    args: &ServeArgs,
    models: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let port_of =
        |flag: Option<u16>, key: &str| flag.map(|port| port.to_string()).or_else(|| env(key));
    let http = port_of(args.port, "OXISERVE_HTTP__PORT").unwrap_or_else(|| "8080".into());
    let grpc = port_of(args.grpc_port, "OXISERVE_GRPC__PORT").unwrap_or_else(|| {
        http.parse::<u16>().map_or_else(|_| http.clone(), |port| port.wrapping_add(1).to_string())
    });
    let models = env("OXISERVE_MODELS__URI").unwrap_or_else(|| models.display().to_string());
    // For the person at the terminal; production keeps the JSON default.
    let format = env("OXISERVE_LOG__FORMAT").unwrap_or_else(|| "pretty".into());
    vec![
        ("OXISERVE_HTTP__PORT", http),
        ("OXISERVE_GRPC__PORT", grpc),
        ("OXISERVE_MODELS__URI", models),
        ("OXISERVE_LOG__FORMAT", format),
    ]
}

/// What a check makes of the service's uses of deprecated items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deprecated {
    /// An error, like every other warning: services that move with the core in its own
    /// repository.
    Deny,
    /// A warning that does not fail the check: services in repositories of their own, which
    /// a core upgrade must not break (`cargo xtask upgrade` lists them).
    Warn,
}

/// The checks and tests of `package` of the project at `root`: formatting, clippy with every
/// warning denied, then its tests with ONNX Runtime provisioned. What a team runs while it
/// works on its service.
pub fn check(root: &Path, package: &str) -> anyhow::Result<()> {
    check_with(root, package, Deprecated::Deny)
}

/// [`check`], with uses of deprecated items made what `deprecated` says.
pub fn check_with(root: &Path, package: &str, deprecated: Deprecated) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    cmd!(sh, "cargo fmt -p {package} -- --check")
        .run()
        .with_context(|| format!("{package} is not formatted: run `cargo fmt -p {package}`"))?;
    let allow = (deprecated == Deprecated::Warn).then_some("--force-warn=deprecated");
    cmd!(sh, "cargo clippy -p {package} --all-targets -- -D warnings {allow...}").run()?;
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    cmd!(sh, "cargo test -p {package}").run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(port: Option<u16>, grpc_port: Option<u16>) -> ServeArgs {
        ServeArgs { port, grpc_port, release: false }
    }

    fn variables(args: &ServeArgs, set: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let lookup = |key: &str| set.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        environment(args, Path::new("/bundled"), lookup)
    }

    #[test]
    fn defaults_serve_the_bundled_models_on_8080_and_8081() {
        let values: Vec<String> =
            variables(&args(None, None), &[]).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["8080", "8081", "/bundled", "pretty"]);
    }

    #[test]
    fn what_the_user_set_wins() {
        let set = [
            ("OXISERVE_MODELS__URI", "s3://bucket/models"),
            ("OXISERVE_LOG__FORMAT", "json"),
            ("OXISERVE_HTTP__PORT", "9000"),
        ];
        let values: Vec<String> =
            variables(&args(None, None), &set).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["9000", "9001", "s3://bucket/models", "json"]);
        let flags = variables(&args(Some(7000), Some(7100)), &set);
        assert_eq!((flags[0].1.as_str(), flags[1].1.as_str()), ("7000", "7100"));
        let grpc_set = variables(&args(Some(7000), None), &[("OXISERVE_GRPC__PORT", "50051")]);
        assert_eq!(grpc_set[1].1, "50051");
    }
}
