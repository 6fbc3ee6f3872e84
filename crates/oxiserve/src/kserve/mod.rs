//! The KServe v2 (Open Inference Protocol) view of a service: its raw models, each addressed
//! by name and optional version, with their metadata and readiness, and inference on named
//! tensors. Typed pipelines stay on `/v1`; this is what Triton clients and tools speak.
//!
//! This module holds what every transport shares: finding the model a request names, its
//! metadata, checking decoded inputs and requested outputs against the manifest, and running
//! the model through the same queue, batching and workers as the pipeline's runs. Decoding
//! tensors from the wire is in `protocol`; the HTTP routes are in `http::kserve`.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Model, Models, OutputSet, TensorSpec};
use crate::tensor::{DataType, Tensor, Tensors};

/// The server's name in `GET /v2`.
pub const SERVER_NAME: &str = "oxiserve";

/// The protocol extensions this server supports, as `GET /v2` lists them.
pub const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

/// The platform of every model, as Triton names ONNX Runtime models.
pub const PLATFORM: &str = "onnxruntime_onnx";

/// A tensor's name, datatype and shape (`-1` for a dynamic dimension) in model metadata.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// What `GET /v2/models/{model}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Every loaded version.
    pub versions: Vec<String>,
    /// The runtime, `onnxruntime_onnx`.
    pub platform: String,
    /// The model's inputs.
    pub inputs: Vec<TensorMetadata>,
    /// The model's outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// The model a request names: with `version`, that loaded version, else the one serving.
/// Unknown names and versions are [`Error::UnknownModel`] and [`Error::VersionNotLoaded`].
pub(crate) fn resolve(models: &Models, name: &str, version: Option<&str>) -> Result<Arc<Model>> {
    if !models.names().iter().any(|known| known == name) {
        return Err(Error::UnknownModel(name.to_string()));
    }
    match version {
        None => models.get(name),
        Some(text) => {
            let version = text.parse().map_err(|_| {
                Error::invalid_input(format!("model version `{text}` is not a whole number"))
            })?;
            models.version(name, version)
        }
    }
}

/// The metadata of `model`, listing every loaded version of its name.
pub(crate) fn metadata(models: &Models, model: &Model) -> ModelMetadata {
    let describe = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|spec| TensorMetadata {
                name: spec.name.clone(),
                datatype: spec.datatype,
                shape: spec.shape.clone(),
            })
            .collect()
    };
    let manifest = model.manifest();
    ModelMetadata {
        name: manifest.name.clone(),
        versions: models.loaded_versions(&manifest.name).iter().map(u64::to_string).collect(),
        platform: PLATFORM.to_string(),
        inputs: describe(&manifest.inputs),
        outputs: describe(&manifest.outputs),
    }
}

/// The declared input `name` of `model` and its dimensions as `shape` gives them, checked
/// against the declaration: the datatype the client names must be the model's, and every
/// fixed dimension must match. The caller then decodes the data with `protocol::tensor_data`.
pub(crate) fn input_spec<'m>(
    model: &'m Model,
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(&'m TensorSpec, Vec<usize>)> {
    let invalid = |detail: String| Error::invalid_input(format!("input `{name}`: {detail}"));
    let spec = model.manifest().inputs.iter().find(|spec| spec.name == name).ok_or_else(|| {
        Error::invalid_input(format!("model `{}` has no input `{name}`", model.name()))
    })?;
    if datatype != spec.datatype.to_string() {
        return Err(invalid(format!("datatype {datatype}, the model expects {}", spec.datatype)));
    }
    let fits = shape.len() == spec.shape.len()
        && shape.iter().zip(&spec.shape).all(|(&d, &s)| d >= 0 && (s < 0 || d == s));
    if !fits {
        return Err(invalid(format!("shape {shape:?}, the model expects {:?}", spec.shape)));
    }
    let dims = shape.iter().map(|&d| usize::try_from(d).expect("checked non-negative")).collect();
    Ok((spec, dims))
}

/// Runs `model` on `inputs` and returns the outputs named in `requested` in that order, or
/// every output in the manifest's order when `requested` is empty. Every input must be given
/// once, and every requested output must exist.
pub(crate) async fn infer(
    model: &Model,
    inputs: Tensors,
    requested: &[String],
) -> Result<Vec<(String, Tensor)>> {
    let manifest = model.manifest();
    if let Some(missing) = manifest.inputs.iter().find(|spec| !inputs.contains_key(&spec.name)) {
        return Err(Error::invalid_input(format!("input `{}` is missing", missing.name)));
    }
    let wanted = match requested {
        [] => OutputSet::ALL,
        names => OutputSet::named(&manifest.outputs, names.iter().map(String::as_str)).map_err(
            |unknown| {
                Error::invalid_input(format!("model `{}` has no output `{unknown}`", model.name()))
            },
        )?,
    };
    if let Some(twice) = requested.iter().enumerate().find(|(i, n)| requested[..*i].contains(n)) {
        return Err(Error::invalid_input(format!("output `{}` is requested twice", twice.1)));
    }
    let mut outputs = model.infer(inputs, wanted).await?.tensors;
    let names: Vec<String> = if requested.is_empty() {
        manifest.outputs.iter().map(|spec| spec.name.clone()).collect()
    } else {
        requested.to_vec()
    };
    names
        .into_iter()
        .map(|name| {
            let tensor = outputs.remove(&name).ok_or_else(|| Error::Inference {
                model: manifest.label(),
                detail: format!("the session returned no output `{name}`"),
            })?;
            Ok((name, tensor))
        })
        .collect()
}
