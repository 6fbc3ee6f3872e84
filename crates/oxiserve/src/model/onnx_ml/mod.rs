//! The ONNX-ML interpreter: graphs made only of the classic ML operators of linear models and
//! tree ensembles (`LinearClassifier`, `LinearRegressor`, `TreeEnsembleClassifier`,
//! `TreeEnsembleRegressor`, `Scaler`, `Normalizer`, and the `Identity` or `Cast` to FP32 that
//! renames a value: the graphs skl2onnx writes for scikit-learn's linear models, forests and
//! boosted trees, and pipelines of a scaler and one of them) run in Rust, on the request's
//! thread, instead of in ONNX Runtime.
//!
//! For such a model ONNX Runtime's own work is a few hundred instructions, and the call
//! around it (values created and released, the run's bookkeeping) some 20,000 a run: half of
//! what a tabular-scoring request costs (see `docs/benchmarks.md`). The interpreter computes
//! what ONNX Runtime's CPU kernels compute (`ops`), and a version is only served by it after
//! it gave ONNX Runtime's answers on probe rows made from the model's own thresholds
//! ([`Interpreter::agrees_with`]); otherwise, and for every graph it does not run, the model
//! runs on ONNX Runtime as before. `models.onnx_ml = "onnxruntime"` turns it off.

mod ops;
mod proto;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayD};
use prost::Message;

use self::ops::{Labels, Op, Unsupported, Written};
use super::selection::OutputSet;
use super::worker::Runner;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TensorSpec};
use crate::tensor::{DataType, Tensor, Tensors};

/// A model version's graph, ready to run: a worker's [`Runner`]. Clones share the graph.
#[derive(Debug, Clone)]
pub(super) struct Interpreter {
    program: Arc<Program>,
    label: String,
}

/// The graph's operators in order, over numbered values: value 0 is the input.
#[derive(Debug)]
struct Program {
    input: String,
    /// Numbers a row of the input.
    columns: usize,
    steps: Vec<Step>,
    /// Each manifest output's value, and what it holds.
    outputs: Vec<(usize, Kind)>,
    specs: Vec<TensorSpec>,
}

/// One node: its operator and the value it reads. It writes the next one or two values, in
/// the order of the nodes.
#[derive(Debug)]
struct Step {
    op: Op,
    reads: usize,
    /// Numbers a row of the value it reads.
    columns: usize,
}

/// What a value holds, known before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `columns` numbers a row (`FP32 [-1, columns]`).
    Numbers(usize),
    /// One label a row, of the datatype given (`INT64 [-1]`, or `BYTES [-1]` for strings).
    Labels(DataType),
}

/// A value during a run.
enum Value<'a> {
    Numbers(Cow<'a, [f32]>),
    /// Each row's label, as an index in the classifier's labels.
    Labels(Vec<usize>, &'a Labels),
    /// Handed out as an output.
    Taken,
}

impl Interpreter {
    /// The interpreter of `graph` (the version's `model.onnx`), or why it cannot run it: the
    /// graph must have one input of `FP32 [-1, columns]` and only operators of `ops`, whose
    /// outputs are the manifest's.
    pub(super) fn compile(manifest: &Manifest, graph: &[u8]) -> Result<Self, Unsupported> {
        // The manifest rules out most graphs (text, images) before the graph is decoded.
        let [input] = manifest.inputs.as_slice() else {
            return Err(format!("{} inputs", manifest.inputs.len()));
        };
        let columns = match (input.datatype, input.shape.as_slice()) {
            (DataType::Fp32, &[_, columns]) if columns > 0 => columns as usize,
            _ => return Err(format!("input {} {:?}", input.datatype, input.shape)),
        };
        let labels_or_scores = |spec: &TensorSpec| {
            matches!(
                (spec.datatype, spec.shape.len()),
                (DataType::Int64 | DataType::Bytes, 1) | (DataType::Fp32, 2)
            )
        };
        if let Some(spec) = manifest.outputs.iter().find(|spec| !labels_or_scores(spec)) {
            return Err(format!("output `{}` of {} {:?}", spec.name, spec.datatype, spec.shape));
        }
        let model = proto::Model::decode(graph).map_err(|e| format!("unreadable graph: {e}"))?;
        let graph = model.graph.ok_or("no graph")?;
        if !model.functions.is_empty()
            || !graph.initializer.is_empty()
            || !graph.sparse_initializer.is_empty()
        {
            return Err("functions or initializers".into());
        }
        let ml = model.opset_import.iter().find(|set| set.domain == "ai.onnx.ml");
        if let Some(set) = ml.filter(|set| set.version > 4) {
            return Err(format!("ai.onnx.ml operator set {}", set.version));
        }
        let graph_inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        if graph_inputs != [input.name.as_str()] {
            return Err(format!("graph inputs {graph_inputs:?}"));
        }

        let mut names = HashMap::from([(input.name.clone(), 0)]);
        let mut kinds = vec![Kind::Numbers(columns)];
        let mut steps = Vec::with_capacity(graph.node.len());
        for node in &graph.node {
            let [read] = node.input.as_slice() else {
                return Err(format!("`{}` with {} inputs", node.op_type, node.input.len()));
            };
            let Some(&reads) = names.get(read) else {
                return Err(format!("`{}` reads `{read}`, which no node wrote", node.op_type));
            };
            if renames(node, kinds[reads]) {
                let [name] = node.output.as_slice() else {
                    return Err(format!("`{}` with outputs {:?}", node.op_type, node.output));
                };
                if names.insert(name.clone(), reads).is_some() {
                    return Err(format!("`{name}` is written twice"));
                }
                continue;
            }
            let Kind::Numbers(step_columns) = kinds[reads] else {
                return Err(format!("`{}` reads labels", node.op_type));
            };
            let op = Op::read(node, step_columns)?;
            let written = match op.outputs() {
                2 => {
                    let labels = match op.labels() {
                        Some(Labels::Strings(_)) => DataType::Bytes,
                        Some(Labels::Ints(_)) | None => DataType::Int64,
                    };
                    vec![Kind::Labels(labels), Kind::Numbers(op.columns(step_columns))]
                }
                _ => vec![Kind::Numbers(op.columns(step_columns))],
            };
            if node.output.len() != written.len() || node.output.iter().any(String::is_empty) {
                return Err(format!("`{}` with outputs {:?}", node.op_type, node.output));
            }
            for (name, kind) in node.output.iter().zip(written) {
                if names.insert(name.clone(), kinds.len()).is_some() {
                    return Err(format!("`{name}` is written twice"));
                }
                kinds.push(kind);
            }
            steps.push(Step { op, reads, columns: step_columns });
        }

        let mut outputs = Vec::with_capacity(manifest.outputs.len());
        for spec in &manifest.outputs {
            let Some(&value) = names.get(&spec.name) else {
                return Err(format!("output `{}` is not written", spec.name));
            };
            let matches = match (kinds[value], spec.datatype, spec.shape.as_slice()) {
                (Kind::Labels(labels), datatype, [_]) => labels == datatype,
                (Kind::Numbers(n), DataType::Fp32, &[_, c]) => c == -1 || c == n as i64,
                _ => false,
            };
            if !matches {
                return Err(format!(
                    "output `{}` is not {} {:?}",
                    spec.name, spec.datatype, spec.shape
                ));
            }
            if outputs.iter().any(|&(taken, _)| taken == value) {
                return Err(format!("output `{}` is another output's value", spec.name));
            }
            outputs.push((value, kinds[value]));
        }
        let program = Program {
            input: input.name.clone(),
            columns,
            steps,
            outputs,
            specs: manifest.outputs.clone(),
        };
        Ok(Self { program: Arc::new(program), label: manifest.label() })
    }

    /// Checks that the interpreter gives `reference`'s answers (an ONNX Runtime session of
    /// the same graph) on probe rows: every number within 1e-6 plus 1e-5 of its size, labels
    /// equal unless the reference's own scores tie. The error names the first difference.
    pub(super) fn agrees_with(&mut self, reference: &mut impl Runner) -> Result<(), String> {
        let context = Context::internal();
        let probes = self.program.probe_rows();
        let rows = probes.len() / self.program.columns;
        let single =
            |start: usize| probes[start * self.program.columns..][..self.program.columns].to_vec();
        let mut batches = vec![(rows, probes.clone())];
        batches.extend((0..rows.min(8)).map(|row| (1, single(row))));
        for (rows, numbers) in batches {
            let array = ArrayD::from_shape_vec(vec![rows, self.program.columns], numbers)
                .map_err(|e| e.to_string())?;
            let inputs = Tensors::from([(self.program.input.clone(), Tensor::F32(array))]);
            let ours = self.run(&inputs, OutputSet::ALL, &context).map_err(|e| e.to_string())?;
            let theirs =
                reference.run(&inputs, OutputSet::ALL, &context).map_err(|e| e.to_string())?;
            compare(&ours, &theirs, &self.program.specs)?;
        }
        Ok(())
    }
}

/// Whether `node`, reading a value of `kind`, only gives the value another name: an
/// `Identity` (skl2onnx ends boosted trees with one), or a `Cast` of numbers to FP32, which
/// they are (skl2onnx ends linear regressions with one).
fn renames(node: &proto::Node, kind: Kind) -> bool {
    const FLOAT: i64 = 1;
    match (node.domain.as_str(), node.op_type.as_str(), node.attribute.as_slice()) {
        ("", "Identity", []) => true,
        ("", "Cast", [to]) => to.name == "to" && to.i == FLOAT && matches!(kind, Kind::Numbers(_)),
        _ => false,
    }
}

impl Runner for Interpreter {
    const INLINE: bool = true;

    fn run(&mut self, inputs: &Tensors, wanted: OutputSet, _: &Context) -> Result<Tensors> {
        let failed = |detail: String| Error::Inference { model: self.label.clone(), detail };
        let program = &self.program;
        let input = match inputs.get(&program.input) {
            Some(Tensor::F32(array)) => array,
            _ => return Err(failed(format!("no FP32 input `{}`", program.input))),
        };
        let [rows, columns] = *input.shape() else {
            return Err(failed(format!("input of shape {:?}", input.shape())));
        };
        if columns != program.columns {
            return Err(failed(format!("input of {columns} columns, not {}", program.columns)));
        }
        // An input made in row-major order, as nearly every one is, is read where it lies.
        let standard;
        let numbers = match input.as_slice() {
            Some(numbers) => numbers,
            None => {
                standard = input.as_standard_layout();
                standard.as_slice().expect("a standard layout array is one slice")
            }
        };
        let mut values = program.run(numbers, rows).map_err(failed)?;
        let mut outputs = Tensors::new();
        for (index, (spec, &(value, kind))) in
            program.specs.iter().zip(&program.outputs).enumerate()
        {
            if !wanted.contains(index) {
                continue;
            }
            let tensor = match std::mem::replace(&mut values[value], Value::Taken) {
                Value::Labels(indices, Labels::Ints(labels)) => {
                    let labels: Vec<i64> = indices.into_iter().map(|i| labels[i]).collect();
                    Ok(Tensor::I64(Array1::from(labels).into_dyn()))
                }
                Value::Labels(indices, Labels::Strings(labels)) => {
                    let labels: Vec<String> =
                        indices.into_iter().map(|i| labels[i].clone()).collect();
                    Ok(Tensor::Text(Array1::from(labels).into_dyn()))
                }
                Value::Numbers(numbers) => {
                    let Kind::Numbers(columns) = kind else {
                        return Err(failed(format!("output `{}` is not numbers", spec.name)));
                    };
                    // Checked in two dimensions, then made dynamic: ndarray checks a dynamic
                    // shape element by element, 300 instructions an output.
                    Array2::from_shape_vec((rows, columns), numbers.into_owned())
                        .map(|numbers| Tensor::F32(numbers.into_dyn()))
                }
                Value::Taken => return Err(failed(format!("output `{}` twice", spec.name))),
            };
            outputs.insert(spec.name.clone(), tensor.map_err(|e| failed(e.to_string()))?);
        }
        Ok(outputs)
    }
}

impl Program {
    /// Runs every step on `rows` rows of the input.
    fn run<'a>(&'a self, input: &'a [f32], rows: usize) -> Result<Vec<Value<'a>>, String> {
        let mut values = Vec::with_capacity(1 + self.steps.len() * 2);
        values.push(Value::Numbers(Cow::Borrowed(input)));
        for step in &self.steps {
            let Value::Numbers(read) = &values[step.reads] else {
                return Err(format!("`{:?}` reads labels", step.op));
            };
            match step.op.run(read, rows, step.columns) {
                Written::Classified { labels, scores } => {
                    let table = step.op.labels().ok_or("labels without a classifier")?;
                    values.push(Value::Labels(labels, table));
                    values.push(Value::Numbers(Cow::Owned(scores)));
                }
                Written::Numbers(numbers) => values.push(Value::Numbers(Cow::Owned(numbers))),
            }
        }
        Ok(values)
    }

    /// Probe rows for [`Interpreter::agrees_with`], row-major: each feature takes values
    /// from its own thresholds and the floats just beside them (where a comparison flips),
    /// and from zero, ±1, ±10⁶ and NaN, mixed by a fixed pseudo-random sequence.
    fn probe_rows(&self) -> Vec<f32> {
        const ROWS: usize = 256;
        let mut candidates: Vec<Vec<f32>> =
            vec![vec![0.0, 1.0, -1.0, 0.5, 1e6, -1e6, f32::NAN]; self.columns];
        for step in self.steps.iter().filter(|step| step.reads == 0) {
            for (feature, threshold) in step.op.thresholds() {
                let near = [threshold, threshold.next_up(), threshold.next_down()];
                candidates[feature].extend(near);
            }
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut numbers = Vec::with_capacity(ROWS * self.columns);
        for _ in 0..ROWS {
            for values in &candidates {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                numbers.push(values[(state >> 33) as usize % values.len()]);
            }
        }
        numbers
    }
}

/// Compares the interpreter's outputs with ONNX Runtime's, output by output.
fn compare(ours: &Tensors, theirs: &Tensors, specs: &[TensorSpec]) -> Result<(), String> {
    let scores = theirs.values().find_map(|tensor| match tensor {
        Tensor::F32(array) if array.ndim() == 2 && array.shape()[1] >= 2 => Some(array),
        _ => None,
    });
    for spec in specs {
        let name = &spec.name;
        match (ours.get(name), theirs.get(name)) {
            (Some(Tensor::F32(a)), Some(Tensor::F32(b))) if a.shape() == b.shape() => {
                let close = |(x, y): (&f32, &f32)| {
                    (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 + 1e-5 * y.abs()
                };
                if let Some((x, y)) = a.iter().zip(b).find(|&pair| !close(pair)) {
                    return Err(format!("output `{name}`: {x} where ONNX Runtime gave {y}"));
                }
            }
            (Some(Tensor::I64(a)), Some(Tensor::I64(b))) if a.shape() == b.shape() => {
                same_labels(name, a, b, scores)?;
            }
            (Some(Tensor::Text(a)), Some(Tensor::Text(b))) if a.shape() == b.shape() => {
                same_labels(name, a, b, scores)?;
            }
            (a, b) => return Err(format!("output `{name}`: {a:?} where ONNX Runtime gave {b:?}")),
        }
    }
    Ok(())
}

/// Checks that the labels `ours` of output `name` are ONNX Runtime's (`theirs`), but where its
/// `scores` of the row are a near tie.
fn same_labels<T: PartialEq + std::fmt::Display>(
    name: &str,
    ours: &ArrayD<T>,
    theirs: &ArrayD<T>,
    scores: Option<&ArrayD<f32>>,
) -> Result<(), String> {
    for (row, (x, y)) in ours.iter().zip(theirs).enumerate() {
        let row_scores = |s: &ArrayD<f32>| {
            s.index_axis(ndarray::Axis(0), row).iter().copied().collect::<Vec<_>>()
        };
        let tie = scores.is_some_and(|s| near_tie(&row_scores(s)));
        if x != y && !tie {
            return Err(format!("output `{name}` of row {row}: {x} where ONNX Runtime gave {y}"));
        }
    }
    Ok(())
}

/// Whether the two highest of `scores` are within a millionth of each other (or not
/// numbers), where a label may go either way.
fn near_tie(scores: &[f32]) -> bool {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    match sorted.as_slice() {
        [first, second, ..] => !(first - second).abs().is_finite() || first - second <= 1e-6,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
