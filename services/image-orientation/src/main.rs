//! The image-orientation service binary: the pipeline, served by oxiserve.

#[global_allocator]
static ALLOCATOR: oxiserve::Allocator = oxiserve::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run(image_orientation::ImageOrientation).await
}
