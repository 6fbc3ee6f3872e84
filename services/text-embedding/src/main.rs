//! The text-embedding service binary: the pipeline, served by oxiserve.

#[global_allocator]
static ALLOCATOR: oxiserve::Allocator = oxiserve::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run(text_embedding::TextEmbedding).await
}
