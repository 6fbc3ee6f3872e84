//! The image-orientation service binary: the pipeline, served by oxiserve.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    oxiserve::run(image_orientation::ImageOrientation).await
}
