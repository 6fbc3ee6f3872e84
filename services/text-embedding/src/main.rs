//! The text-embedding service binary: the pipeline, served by oxiserve.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run(text_embedding::TextEmbedding).await
}
