//! The inference ceiling: ONNX Runtime alone, one session per model with one intra-op thread
//! as oxiserve runs them, on a single 9-feature row, with no queue, thread hand-off, pipeline
//! or HTTP. What a request costs beyond these runs is the serving stack's.
//!
//! Run with `cargo xtask bench --engine` (with the serving suite), or alone with
//! `cargo xtask bench --engine -- inference`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use ort::session::Session;
use ort::value::TensorRef;

/// The bundled version 1 of `model`.
fn graph(model: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(model).join("1/model.onnx")
}

fn inference(c: &mut Criterion) {
    let library = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH names libonnxruntime");
    let builder = ort::init_from(&library).expect("ONNX Runtime loads");
    let environment = builder.with_name("inference-ceiling").build().expect("ONNX Runtime starts");
    // A standardised penguin: any row costs these models the same.
    let row =
        Array2::<f32>::from_shape_vec((1, 9), vec![0.3, -0.5, 0.7, 0.2, 1.0, 0.0, 0.0, 1.0, 0.0])
            .expect("9 features");
    let mut group = c.benchmark_group("inference");
    group.throughput(Throughput::Elements(1));
    for model in [tabular_scoring::LINEAR, tabular_scoring::FOREST] {
        let mut session = Session::builder(&environment)
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(graph(model)))
            .expect("the bundled model loads");
        group.bench_function(model, |b| {
            b.iter(|| {
                let input = TensorRef::from_array_view(row.view()).expect("a valid tensor");
                let outputs = session.run(ort::inputs!["features" => input]).expect("the run");
                std::hint::black_box(outputs.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
