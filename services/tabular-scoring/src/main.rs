//! The tabular-scoring service binary: the pipeline, served by oxiserve.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run(tabular_scoring::TabularScoring).await
}
