//! The {{name}} service binary: the pipeline, served by oxiserve.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run({{crate}}::{{Pipeline}}).await
}
