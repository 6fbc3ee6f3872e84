//! KServe v2 gRPC throughput of an oxiserve service against MLServer on the same trained model,
//! run by `cargo xtask bench --kserve`.
//!
//! Starts MLServer (`oxiserve_test_support::MlServer`, so `MLSERVER` must name its program) serving
//! the model's pickled estimator (`model.joblib` beside its `model.onnx`), then drives it and
//! the oxiserve endpoint given (which serves the ONNX graph of the same training run) with
//! `ModelInfer` calls from N concurrent clients, one connection each, alternating the two
//! servers at every concurrency. Each call sends one row of zeros (`rows` x the input width)
//! as raw contents and asks for the probabilities only. Prints one JSON line per run.
//!
//! Usage: `kserve_bench OXISERVE_ENDPOINT MODEL_DIR SECONDS CONCURRENCY[,CONCURRENCY...]`,
//! where `MODEL_DIR` is `<repository>/<model>/<version>`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxiserve::DataType;
use oxiserve::grpc::proto::inference::ModelInferRequest;
use oxiserve::grpc::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use oxiserve::grpc::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use oxiserve::model::{Manifest, TensorSpec};
use oxiserve_test_support::{MlServer, SklearnModel};

/// One run's results.
#[derive(Debug, serde::Serialize)]
struct Run {
    server: &'static str,
    concurrency: usize,
    requests_per_second: f64,
    p50_us: u128,
    p99_us: u128,
    errors: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [oxiserve, dir, seconds, concurrency] = args.as_slice() else {
        return Err(
            "usage: kserve_bench OXISERVE_ENDPOINT MODEL_DIR SECONDS CONCURRENCY,...".into()
        );
    };
    let dir = PathBuf::from(dir);
    let seconds = Duration::from_secs(seconds.parse()?);
    let counts: Vec<usize> = concurrency.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let name = dir.parent().and_then(|p| p.file_name()).ok_or("MODEL_DIR is <repo>/<model>/<v>")?;
    let version = dir.file_name().and_then(|v| v.to_str()).ok_or("no version")?.parse()?;
    let manifest = Manifest::read(&dir, &name.to_string_lossy(), version)?;
    let input = manifest.inputs.first().ok_or("the model has no input")?.clone();
    if input.datatype != DataType::Fp32 {
        return Err("kserve_bench sends FP32 zeros; this model's input is not FP32".into());
    }
    let classes = manifest.outputs.iter().find(|o| o.name == "probabilities");
    let width = classes.and_then(|o| o.shape.get(1)).copied().ok_or("no probabilities output")?;

    let mlserver = MlServer::start(&[SklearnModel {
        name: manifest.name.clone(),
        joblib: dir.join("model.joblib"),
        inputs: manifest.inputs.clone(),
        outputs: vec![
            TensorSpec { name: "predict".into(), datatype: DataType::Int64, shape: vec![-1] },
            TensorSpec {
                name: "predict_proba".into(),
                datatype: DataType::Fp64,
                shape: vec![-1, width],
            },
        ],
    }])
    .await?;
    let servers = [
        ("oxiserve", oxiserve.clone(), "probabilities"),
        ("mlserver", mlserver.grpc_endpoint(), "predict_proba"),
    ];
    for (_, endpoint, output) in &servers {
        wait_until_answering(endpoint, &request(&manifest.name, &input, output)).await?;
        // Warm-up.
        load(endpoint, &request(&manifest.name, &input, output), 8, Duration::from_secs(2)).await?;
    }
    for (round, &concurrency) in counts.iter().enumerate() {
        // Alternate which server goes first, so that drift hits both.
        let mut order: Vec<_> = servers.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (server, endpoint, output) in order {
            let call = request(&manifest.name, &input, output);
            let mut run = load(endpoint, &call, concurrency, seconds).await?;
            run.server = server;
            println!("{}", serde_json::to_string(&run)?);
        }
    }
    Ok(())
}

/// One row of zeros for `input`, asking for `output` only.
fn request(model: &str, input: &TensorSpec, output: &str) -> ModelInferRequest {
    let shape: Vec<i64> = input.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
    let elements: i64 = shape.iter().product();
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: vec![InferInputTensor {
            name: input.name.clone(),
            datatype: input.datatype.to_string(),
            shape,
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor { name: output.into(), ..Default::default() }],
        raw_input_contents: vec![vec![0; elements as usize * 4]],
        ..Default::default()
    }
}

/// Retries `call` until the server answers it (MLServer loads its model after it listens).
async fn wait_until_answering(
    endpoint: &str,
    call: &ModelInferRequest,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    loop {
        let answer = match GrpcInferenceServiceClient::connect(endpoint.to_string()).await {
            Ok(mut client) => {
                client.model_infer(call.clone()).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        match answer {
            Ok(()) => return Ok(()),
            Err(_) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(format!("{endpoint} never answered: {error}").into()),
        }
    }
}

/// `concurrency` clients, one connection each, sending `call` back to back for `seconds`.
async fn load(
    endpoint: &str,
    call: &ModelInferRequest,
    concurrency: usize,
    seconds: Duration,
) -> Result<Run, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + seconds;
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let mut client = GrpcInferenceServiceClient::connect(endpoint.to_string()).await?;
        let call = call.clone();
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let sent = Instant::now();
                match client.model_infer(call.clone()).await {
                    Ok(_) => latencies.push(sent.elapsed().as_micros()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for client in clients {
        let (own, failed) = client.await?;
        latencies.extend(own);
        errors += failed;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Run {
        server: "",
        concurrency,
        requests_per_second: latencies.len() as f64 / seconds.as_secs_f64(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        errors,
    })
}
