//! `oxiserve-publish`: publishes a model version to a repository, local or S3, files first and
//! the manifest last. `cargo xtask publish-model` runs it; a trainer's CI can too.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oxiserve::config::S3Config;
use oxiserve::store::Publication;

/// Publish a model version: writes the manifest (sha256 and size of every file) and uploads
/// the files first, the manifest last.
#[derive(Debug, Parser)]
struct Args {
    /// Model name.
    #[arg(long)]
    model: String,
    /// Version number to publish as.
    #[arg(long)]
    version: u64,
    /// Directory with the files and the trainer's manifest.json.
    #[arg(long)]
    from: PathBuf,
    /// Repository: a local directory or s3://bucket/prefix.
    #[arg(long)]
    to: String,
    /// Replace the version if it is already published.
    #[arg(long)]
    force: bool,
    /// S3 endpoint for S3-compatible stores; AWS_ENDPOINT_URL works too.
    #[arg(long)]
    endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let publication = Publication {
        model: args.model,
        version: args.version,
        from: args.from,
        to: args.to,
        force: args.force,
        s3: S3Config { endpoint: args.endpoint, ..S3Config::default() },
    };
    match publication.run(&progress_bar).await {
        Ok(manifest) => {
            eprintln!("\npublished {} to {}", manifest.label(), publication.to);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("\nerror: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Redraws one line: `[#####-----]  50%  3.1 MB / 6.2 MB  model.onnx`.
fn progress_bar(file: &str, done: u64, total: u64) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '-' }).collect();
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let mb = |bytes: u64| bytes as f64 / 1e6;
    eprint!("\r[{bar}] {percent:>3}%  {:.1} MB / {:.1} MB  {file:<40}", mb(done), mb(total));
    let _ = std::io::stderr().flush();
}
