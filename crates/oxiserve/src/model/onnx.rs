//! The in-process backend: ONNX Runtime sessions, one per worker thread of the model's pool
//! (`model::worker`). `Session::run` needs `&mut self`, so each worker owns its session.

use std::collections::BTreeMap;

use ndarray::ArrayD;
use ort::environment::Environment;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use super::batch::Padding;
use super::selection::OutputSet;
use super::worker::Runner;
use crate::config::RunConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TensorSpec};
use crate::tensor::{DataType, Tensor, Tensors, build_numeric, build_tensor};

/// One ONNX Runtime session and the outputs to read back: a worker's [`Runner`].
pub(super) struct OnnxSession {
    session: Session,
    outputs: Vec<TensorSpec>,
    label: String,
    /// Run options that ask for some of the outputs only, by the set they ask for: made on
    /// first use, [`KEPT_SELECTIONS`] at most.
    selections: Vec<(OutputSet, RunOptions<HasSelectedOutputs>)>,
}

/// How many output selections a session keeps run options for; a new one replaces the
/// oldest. Pipelines ask for one or two; KServe v2 clients for a few.
const KEPT_SELECTIONS: usize = 8;

/// Creates `config.sessions` sessions from `graph`, checks the first against the manifest's
/// signature and `padding` against the manifest, and warms every session up with a zero
/// input.
///
/// Blocking: call from a blocking thread.
pub(super) fn sessions(
    manifest: &Manifest,
    graph: &[u8],
    config: &RunConfig,
    padding: &Padding,
    environment: &Environment,
) -> Result<Vec<OnnxSession>> {
    let label = manifest.label();
    let failed = |detail: String| Error::Inference { model: label.clone(), detail };
    padding.check(manifest).map_err(failed)?;
    let mut builder = session_builder(environment, config)
        .map_err(|e| failed(format!("cannot configure a session: {e}")))?;
    let warmup = zero_inputs(&manifest.inputs).map_err(|e| failed(e.to_string()))?;
    (0..config.sessions)
        .map(|index| {
            let session = builder
                .commit_from_memory(graph)
                .map_err(|e| failed(format!("cannot load the ONNX graph: {e}")))?;
            if index == 0 {
                check_signature(&session, manifest).map_err(failed)?;
            }
            let outputs = manifest.outputs.clone();
            let selections = Vec::new();
            let mut runner = OnnxSession { session, outputs, label: label.clone(), selections };
            runner.run(&warmup, OutputSet::ALL, &Context::internal())?;
            Ok(runner)
        })
        .collect()
}

impl Runner for OnnxSession {
    const INLINE: bool = true;

    /// Runs the session for `outputs` alone: ONNX Runtime neither computes what only the
    /// others need nor hands them back.
    fn run(&mut self, inputs: &Tensors, outputs: OutputSet, _: &Context) -> Result<Tensors> {
        self.run_session(inputs, outputs)
            .map_err(|e| Error::Inference { model: self.label.clone(), detail: e.to_string() })
    }
}

impl OnnxSession {
    fn run_session(&mut self, inputs: &Tensors, wanted: OutputSet) -> Result<Tensors, ort::Error> {
        let values = inputs
            .iter()
            .map(|(name, tensor)| Ok((name.as_str(), input_value(tensor)?)))
            .collect::<Result<Vec<(&str, SessionInputValue<'_>)>, ort::Error>>()?;
        let outputs = if wanted.covers(&self.outputs) {
            self.session.run(values)?
        } else {
            let kept = self.selections.iter().position(|(set, _)| *set == wanted);
            let index = match kept {
                Some(index) => index,
                None => {
                    if self.selections.len() == KEPT_SELECTIONS {
                        self.selections.remove(0);
                    }
                    self.selections.push((wanted, run_options(&self.outputs, wanted)?));
                    self.selections.len() - 1
                }
            };
            self.session.run_with_options(values, &self.selections[index].1)?
        };
        self.outputs
            .iter()
            .enumerate()
            .filter(|&(index, _)| wanted.contains(index))
            .filter_map(|(_, spec)| Some((spec, outputs.get(&spec.name)?)))
            .map(|(spec, value)| Ok((spec.name.clone(), output_tensor(spec.datatype, value)?)))
            .collect()
    }
}

/// Run options asking for the outputs of `specs` in `wanted` alone.
fn run_options(
    specs: &[TensorSpec],
    wanted: OutputSet,
) -> Result<RunOptions<HasSelectedOutputs>, ort::Error> {
    let chosen = specs.iter().enumerate().filter(|&(index, _)| wanted.contains(index));
    let selector = chosen.fold(OutputSelector::no_default(), |s, (_, spec)| s.with(&spec.name));
    Ok(RunOptions::new()?.with_outputs(selector))
}

/// A session builder with the threads of `config`.
fn session_builder(
    environment: &Environment,
    config: &RunConfig,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    let builder = Session::builder(environment)?.with_intra_threads(config.intra_threads)?;
    if config.inter_threads > 1 {
        Ok(builder.with_parallel_execution(true)?.with_inter_threads(config.inter_threads)?)
    } else {
        Ok(builder)
    }
}

/// Borrows a tensor as a session input without copying (text is copied into an ONNX Runtime
/// string tensor).
fn input_value(tensor: &Tensor) -> Result<SessionInputValue<'_>, ort::Error> {
    macro_rules! view {
        ($array:expr) => {
            TensorRef::from_array_view($array.view())?.into()
        };
    }
    Ok(match tensor {
        Tensor::Bool(a) => view!(a),
        Tensor::U8(a) => view!(a),
        Tensor::U16(a) => view!(a),
        Tensor::U32(a) => view!(a),
        Tensor::U64(a) => view!(a),
        Tensor::I8(a) => view!(a),
        Tensor::I16(a) => view!(a),
        Tensor::I32(a) => view!(a),
        Tensor::I64(a) => view!(a),
        Tensor::F16(a) => view!(a),
        Tensor::F32(a) => view!(a),
        Tensor::F64(a) => view!(a),
        Tensor::Text(a) => ort::value::Tensor::from_string_array(a)?.into(),
    })
}

/// Copies a session output into an owned tensor of the declared datatype.
fn output_tensor(datatype: DataType, value: &DynValue) -> Result<Tensor, ort::Error> {
    fn extract<T: ort::value::PrimitiveTensorElementType + Clone + 'static>(
        value: &DynValue,
    ) -> Result<ArrayD<T>, String> {
        value.try_extract_array::<T>().map(|a| a.to_owned()).map_err(|e| e.to_string())
    }
    if datatype == DataType::Bytes {
        return Ok(Tensor::Text(value.try_extract_string_array()?));
    }
    build_numeric!(datatype, extract(value)).map_err(ort::Error::new)
}

/// Zero-filled inputs of the declared shapes, with every dynamic dimension set to 1.
fn zero_inputs(specs: &[TensorSpec]) -> Result<Tensors> {
    fn zeros<T: Clone + Default>(shape: &[usize]) -> Result<ArrayD<T>, String> {
        Ok(ArrayD::from_elem(shape, T::default()))
    }
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> =
                spec.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
            let tensor = build_tensor!(spec.datatype, zeros(&shape)).map_err(|e| {
                Error::pipeline(format!("input `{}`: {e} by the ONNX backend", spec.name))
            })?;
            Ok((spec.name.clone(), tensor))
        })
        .collect()
}

/// Compares the session's real inputs and outputs with the manifest's; the error lists every
/// difference.
fn check_signature(session: &Session, manifest: &Manifest) -> Result<(), String> {
    let actual = |outlets: &[ort::value::Outlet]| -> BTreeMap<String, String> {
        outlets.iter().map(|o| (o.name().to_string(), describe_value(o.dtype()))).collect()
    };
    let declared = |specs: &[TensorSpec]| -> BTreeMap<String, String> {
        specs.iter().map(|s| (s.name.clone(), format!("{} {:?}", s.datatype, s.shape))).collect()
    };
    let mut differences = Vec::new();
    for (kind, real, claimed) in [
        ("input", actual(session.inputs()), declared(&manifest.inputs)),
        ("output", actual(session.outputs()), declared(&manifest.outputs)),
    ] {
        for name in real.keys().chain(claimed.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (real.get(name), claimed.get(name)) {
                (Some(r), Some(c)) if r == c => {}
                (r, c) => differences.push(format!(
                    "{kind} `{name}`: model has {}, manifest says {}",
                    r.map_or("nothing", String::as_str),
                    c.map_or("nothing", String::as_str)
                )),
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("signature does not match the manifest: {}", differences.join("; ")))
    }
}

/// A session outlet's type in the manifest's words, e.g. `FP32 [-1, 9]`.
fn describe_value(value: &ValueType) -> String {
    match value {
        ValueType::Tensor { ty, shape, .. } => match datatype_of(*ty) {
            Some(datatype) => format!("{datatype} {:?}", shape.to_vec()),
            None => format!("unsupported element type {ty}"),
        },
        other => format!("a non-tensor value ({other})"),
    }
}

/// The KServe datatype of an ONNX element type, where there is one.
fn datatype_of(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}
