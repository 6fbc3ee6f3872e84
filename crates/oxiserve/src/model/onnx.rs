//! The in-process backend: ONNX Runtime sessions, one per worker thread of the model's pool
//! (`model::worker`). `Session::run` needs `&mut self`, so each worker owns its session.

use std::collections::BTreeMap;

use ndarray::ArrayD;
use ort::environment::Environment;
use ort::session::{
    HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue, SessionOutputs,
};
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
    /// Run options by the outputs they ask for: made on first use, [`KEPT_SELECTIONS`] at
    /// most.
    selections: Vec<Selection>,
}

/// How many output selections a session keeps run options for; a new one replaces the
/// oldest. Pipelines ask for one or two; KServe v2 clients for a few.
const KEPT_SELECTIONS: usize = 8;

/// The run options that ask for one set of outputs.
///
/// A run of one row, what a lightly loaded service makes, writes its outputs into tensors
/// made once, with the shape the manifest gives them: ONNX Runtime then neither allocates
/// the outputs nor hands back values for `ort` to wrap and release, about a sixth of what a
/// small model's run costs with them (see `docs/benchmarks.md`). Runs of other sizes,
/// batches, let ONNX Runtime allocate their outputs, since a tensor made for one size cannot
/// take another.
struct Selection {
    outputs: OutputSet,
    /// For runs of any number of rows.
    any_rows: RunOptions<HasSelectedOutputs>,
    /// For runs of one row, with the outputs made in advance; `None` when the manifest does
    /// not fix an output's shape for one row (text, or a dimension other than the first left
    /// open), or when a run with them failed where one without succeeded (the model's
    /// outputs are not the shapes its manifest says).
    one_row: Option<RunOptions<HasSelectedOutputs>>,
}

impl Selection {
    /// The run options for the outputs of `specs` in `wanted`.
    fn new(specs: &[TensorSpec], wanted: OutputSet) -> Result<Self, ort::Error> {
        let chosen: Vec<&TensorSpec> =
            specs.iter().enumerate().filter(|&(i, _)| wanted.contains(i)).map(|(_, s)| s).collect();
        let named =
            || chosen.iter().fold(OutputSelector::no_default(), |s, spec| s.with(&spec.name));
        let tensors = chosen
            .iter()
            .map(|spec| one_row_tensor(spec))
            .collect::<Result<Option<Vec<_>>, _>>()?;
        let one_row = match tensors {
            Some(tensors) => {
                let made = chosen.iter().zip(tensors);
                let selector =
                    made.fold(named(), |s, (spec, tensor)| s.preallocate(&spec.name, tensor));
                Some(RunOptions::new()?.with_outputs(selector))
            }
            None => None,
        };
        Ok(Self { outputs: wanted, any_rows: RunOptions::new()?.with_outputs(named()), one_row })
    }
}

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
    let mut builder = session_builder(environment, config, needs_arena(manifest))
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
    /// Runs the session on `inputs` for the outputs in `wanted`, into the outputs made in
    /// advance when the run is of one row (see [`Selection`]).
    fn run_session(&mut self, inputs: &Tensors, wanted: OutputSet) -> Result<Tensors, ort::Error> {
        // Every output asked for is one selection, however the set was spelled.
        let wanted = if wanted.covers(&self.outputs) { OutputSet::ALL } else { wanted };
        let index = self.selection(wanted)?;
        let Self { session, outputs: specs, selections, label } = self;
        let selection = &mut selections[index];
        let values = || {
            inputs
                .iter()
                .map(|(name, tensor)| Ok((name.as_str(), input_value(tensor)?)))
                .collect::<Result<Vec<(&str, SessionInputValue<'_>)>, ort::Error>>()
        };
        let one_row = inputs.values().next().is_some_and(|tensor| tensor.rows() == 1);
        if let Some(options) = selection.one_row.as_ref().filter(|_| one_row) {
            let ran = session
                .run_with_options(values()?, options)
                .and_then(|outputs| read_outputs(specs, wanted, &outputs));
            let Err(error) = ran else { return ran };
            let outputs = session.run_with_options(values()?, &selection.any_rows)?;
            tracing::warn!(model = %label, %error,
                "a run of one row into outputs of the manifest's shapes failed where one \
                 without them succeeded; ONNX Runtime allocates this model's outputs from now on");
            selection.one_row = None;
            return read_outputs(specs, wanted, &outputs);
        }
        let outputs = session.run_with_options(values()?, &selection.any_rows)?;
        read_outputs(specs, wanted, &outputs)
    }

    /// The index of the run options for `wanted`, made now if they are not kept.
    fn selection(&mut self, wanted: OutputSet) -> Result<usize, ort::Error> {
        if let Some(index) = self.selections.iter().position(|s| s.outputs == wanted) {
            return Ok(index);
        }
        if self.selections.len() == KEPT_SELECTIONS {
            self.selections.remove(0);
        }
        self.selections.push(Selection::new(&self.outputs, wanted)?);
        Ok(self.selections.len() - 1)
    }
}

/// Copies the outputs of `specs` in `wanted` out of a run's `outputs`.
fn read_outputs(
    specs: &[TensorSpec],
    wanted: OutputSet,
    outputs: &SessionOutputs<'_>,
) -> Result<Tensors, ort::Error> {
    specs
        .iter()
        .enumerate()
        .filter(|&(index, _)| wanted.contains(index))
        .filter_map(|(_, spec)| Some((spec, outputs.get(&spec.name)?)))
        .map(|(spec, value)| Ok((spec.name.clone(), output_tensor(spec.datatype, value)?)))
        .collect()
}

/// A zero tensor of `spec`'s datatype and of its shape for one row, for a run of one row to
/// write the output into; `None` for text, or when a dimension other than the first is left
/// open.
fn one_row_tensor(spec: &TensorSpec) -> Result<Option<DynValue>, ort::Error> {
    let Some((-1 | 1, rest)) = spec.shape.split_first() else {
        return Ok(None);
    };
    let rest = rest.iter().map(|&d| usize::try_from(d).ok().filter(|&d| d > 0));
    let Some(shape) = std::iter::once(Some(1)).chain(rest).collect::<Option<Vec<usize>>>() else {
        return Ok(None);
    };
    if spec.datatype == DataType::Bytes {
        return Ok(None);
    }
    let tensor = build_numeric!(spec.datatype, zeros(&shape)).map_err(ort::Error::new)?;
    owned_value(tensor).map(Some)
}

/// A session builder with the threads of `config`, and ONNX Runtime's memory arena when
/// `arena` says so (see [`needs_arena`]).
fn session_builder(
    environment: &Environment,
    config: &RunConfig,
    arena: bool,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    let cpu = ort::ep::CPU::default().with_arena_allocator(arena).build();
    let builder = Session::builder(environment)?
        .with_intra_threads(config.intra_threads)?
        .with_execution_providers([cpu])?;
    if config.inter_threads > 1 {
        Ok(builder.with_parallel_execution(true)?.with_inter_threads(config.inter_threads)?)
    } else {
        Ok(builder)
    }
}

/// The most bytes one row of an input or output may take for a model to run without ONNX
/// Runtime's memory arena (see [`needs_arena`]): 1,024 numbers of 32 bits.
const SMALL_ROW_BYTES: usize = 4096;

/// Whether `manifest`'s model runs with ONNX Runtime's memory arena, which keeps the buffers
/// of one run for the next. Models of large tensors (text, images) gain from it; for a model
/// whose inputs and outputs are a few numbers a row, the arena's bookkeeping (a lock and
/// chunk lists for every tensor of a run) costs more than the allocations it saves: the two
/// model calls of a tabular-scoring request take 40,900 instructions without it, 46,200 with
/// it (`docs/benchmarks.md`). So a model keeps the arena unless one row of each of its inputs
/// and outputs has a fixed shape of at most [`SMALL_ROW_BYTES`].
fn needs_arena(manifest: &Manifest) -> bool {
    let row_bytes = |spec: &TensorSpec| {
        let row_shape = spec.shape.get(1..)?;
        row_shape.iter().try_fold(spec.datatype.element_bytes()?, |bytes, &dimension| {
            bytes.checked_mul(usize::try_from(dimension).ok().filter(|&d| d > 0)?)
        })
    };
    let mut specs = manifest.inputs.iter().chain(&manifest.outputs);
    specs.any(|spec| row_bytes(spec).is_none_or(|bytes| bytes > SMALL_ROW_BYTES))
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

/// Hands `tensor` to ONNX Runtime as a value it can write a run's output into.
fn owned_value(tensor: Tensor) -> Result<DynValue, ort::Error> {
    macro_rules! owned {
        ($array:expr) => {
            ort::value::Tensor::from_array($array)?.into_dyn()
        };
    }
    Ok(match tensor {
        Tensor::Bool(a) => owned!(a),
        Tensor::U8(a) => owned!(a),
        Tensor::U16(a) => owned!(a),
        Tensor::U32(a) => owned!(a),
        Tensor::U64(a) => owned!(a),
        Tensor::I8(a) => owned!(a),
        Tensor::I16(a) => owned!(a),
        Tensor::I32(a) => owned!(a),
        Tensor::I64(a) => owned!(a),
        Tensor::F16(a) => owned!(a),
        Tensor::F32(a) => owned!(a),
        Tensor::F64(a) => owned!(a),
        Tensor::Text(_) => return Err(ort::Error::new("text outputs are not made in advance")),
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

/// A zero-filled array of `shape`.
fn zeros<T: Clone + Default>(shape: &[usize]) -> Result<ArrayD<T>, String> {
    Ok(ArrayD::from_elem(shape, T::default()))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{BatchingConfig, RuntimeConfig};
    use crate::model::runtime;

    /// A session of the identity test model (`y = x`, `[-1, 4]`), warmed up, and the
    /// model's manifest.
    fn identity() -> (OnnxSession, Manifest) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models/identity/1");
        let manifest = Manifest::read(&dir, "identity", 1).unwrap();
        let graph = manifest.read_verified(&dir, crate::manifest::MODEL_FILE).unwrap();
        let config = RunConfig {
            sessions: 1,
            intra_threads: 1,
            inter_threads: 1,
            queue_capacity: 1,
            onnx_ml: Default::default(),
            batching: BatchingConfig::default(),
            remote: None,
        };
        let environment = runtime::environment(&RuntimeConfig::default()).unwrap();
        let mut sessions =
            sessions(&manifest, &graph, &config, &Padding::new(), &environment).unwrap();
        (sessions.remove(0), manifest)
    }

    /// `rows` rows of 4 numbers, each different from every other of the test.
    fn rows(rows: usize, start: f32) -> Tensors {
        let numbers = (0..rows * 4).map(|i| start + i as f32).collect();
        let x = ArrayD::from_shape_vec(vec![rows, 4], numbers).unwrap();
        Tensors::from([("x".to_string(), Tensor::F32(x))])
    }

    fn run(session: &mut OnnxSession, inputs: &Tensors) -> Tensor {
        let mut outputs = session.run(inputs, OutputSet::ALL, &Context::internal()).unwrap();
        outputs.remove("y").unwrap()
    }

    #[test]
    fn runs_of_one_row_between_batches_each_get_their_own_answer() {
        let (mut session, _) = identity();
        for (i, size) in [1, 3, 1, 1, 2, 1].into_iter().enumerate() {
            let inputs = rows(size, 100.0 * i as f32);
            assert_eq!(run(&mut session, &inputs), inputs["x"], "run {i} of {size} rows");
        }
        assert!(session.selections[0].one_row.is_some(), "runs of one row still write in place");
    }

    #[test]
    fn outputs_of_another_shape_than_the_manifest_says_are_allocated_from_then_on() {
        let (mut session, mut manifest) = identity();
        // A manifest that is wrong about the output: runs of one row cannot write into it.
        manifest.outputs[0].shape = vec![-1, 5];
        session.outputs = manifest.outputs.clone();
        session.selections.clear();
        for i in 0..2 {
            let inputs = rows(1, 10.0 * i as f32);
            assert_eq!(run(&mut session, &inputs), inputs["x"], "run {i}");
            assert!(session.selections[0].one_row.is_none(), "run {i}");
        }
    }

    #[test]
    fn only_models_of_small_fixed_rows_run_without_the_memory_arena() {
        let (_, mut manifest) = identity();
        assert!(!needs_arena(&manifest), "[-1, 4] numbers in and out");
        let mut with_output = |shape: Vec<i64>, datatype| {
            manifest.outputs[0].shape = shape;
            manifest.outputs[0].datatype = datatype;
            needs_arena(&manifest)
        };
        assert!(!with_output(vec![-1, 1024], DataType::Fp32), "4 KiB a row");
        assert!(!with_output(vec![-1], DataType::Int64), "one number a row");
        assert!(with_output(vec![-1, 1025], DataType::Fp32), "past 4 KiB a row");
        assert!(with_output(vec![-1, -1, 384], DataType::Fp32), "a sequence of open length");
        assert!(with_output(vec![-1, 3, 224, 224], DataType::Uint8), "an image a row");
        assert!(with_output(vec![-1, 4], DataType::Bytes), "text");
        assert!(with_output(vec![], DataType::Fp32), "no rows at all");
    }
}
