//! The interpreter against ONNX Runtime: random linear models and forests, written as ONNX
//! graphs here, run by both on the same rows.

use ndarray::ArrayD;
use prost::Message;

use super::proto::{Attribute, Graph, Model, Node, OperatorSet, ValueInfo};
use super::*;
use crate::config::{BatchingConfig, OnnxMl, RunConfig, RuntimeConfig};
use crate::model::batch::Padding;
use crate::model::onnx::{self, OnnxSession};
use crate::model::runtime;

/// `TypeProto` with its tensor type, `TypeProto.Tensor` and `TensorShapeProto`: what ONNX
/// Runtime needs to know of a graph's inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<Shape>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Shape {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const STRING: i32 = 8;

/// A graph input or output of element type `elem` and shape `dims` (`-1`: any number of rows).
fn value(name: &str, elem: i32, dims: &[i64]) -> ValueInfo {
    let dim = dims
        .iter()
        .map(|&d| match d {
            -1 => Dimension { dim_value: None, dim_param: Some("N".into()) },
            d => Dimension { dim_value: Some(d), dim_param: None },
        })
        .collect();
    let tensor_type = TensorType { elem_type: elem, shape: Some(Shape { dim }) };
    let r#type = TypeProto { tensor_type: Some(tensor_type) }.encode_to_vec();
    ValueInfo { name: name.into(), r#type: Some(r#type) }
}

fn attribute(name: &str, r#type: i32) -> Attribute {
    Attribute { name: name.into(), r#type, ..Default::default() }
}

fn floats(name: &str, floats: Vec<f32>) -> Attribute {
    Attribute { floats, ..attribute(name, 6) }
}

fn ints(name: &str, ints: Vec<i64>) -> Attribute {
    Attribute { ints, ..attribute(name, 7) }
}

fn string(name: &str, s: &str) -> Attribute {
    Attribute { s: s.as_bytes().to_vec(), ..attribute(name, 3) }
}

fn strings(name: &str, strings: Vec<&str>) -> Attribute {
    let strings = strings.into_iter().map(|s| s.as_bytes().to_vec()).collect();
    Attribute { strings, ..attribute(name, 8) }
}

fn node(op: &str, input: &str, outputs: &[&str], attribute: Vec<Attribute>) -> Node {
    Node {
        input: vec![input.into()],
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        domain: "ai.onnx.ml".into(),
        attribute,
    }
}

/// A classifier's graph on input `x` of `columns` numbers: `nodes`, whose last writes
/// `label` (strings when the classifier's labels are) and `probabilities` of `classes`
/// columns; with its manifest.
fn classifier(columns: usize, classes: usize, nodes: Vec<Node>) -> (Manifest, Vec<u8>) {
    let attributes = nodes.iter().flat_map(|node| &node.attribute);
    let text = attributes.into_iter().any(|a| a.name == "classlabels_strings");
    let label = if text { STRING } else { INT64 };
    let outputs = [("label", label, vec![-1]), ("probabilities", FLOAT, vec![-1, classes as i64])];
    model_of(columns, &outputs, nodes)
}

/// A graph on input `x` of `columns` numbers: `nodes`, which write `outputs` (name, element
/// type, shape); with its manifest.
fn model_of(
    columns: usize,
    outputs: &[(&str, i32, Vec<i64>)],
    nodes: Vec<Node>,
) -> (Manifest, Vec<u8>) {
    let columns = columns as i64;
    let graph = Graph {
        node: nodes,
        input: vec![value("x", FLOAT, &[-1, columns])],
        output: outputs.iter().map(|(name, elem, dims)| value(name, *elem, dims)).collect(),
        ..Default::default()
    };
    let opsets = [("ai.onnx.ml", 1), ("", 17)];
    let opset_import = opsets
        .iter()
        .map(|&(domain, version)| OperatorSet { domain: domain.into(), version })
        .collect();
    let model = Model { ir_version: 8, opset_import, graph: Some(graph), ..Default::default() };
    let specs: Vec<_> = outputs
        .iter()
        .map(|(name, elem, dims)| {
            let datatype = match *elem {
                INT64 => "INT64",
                STRING => "BYTES",
                _ => "FP32",
            };
            serde_json::json!({"name": name, "datatype": datatype, "shape": dims})
        })
        .collect();
    let manifest = serde_json::from_value(serde_json::json!({
        "format_version": 1, "name": "m", "version": 1, "created_at": "2026-12-05T00:00:00Z",
        "files": {},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, columns]}],
        "outputs": specs,
    }))
    .unwrap();
    (manifest, model.encode_to_vec())
}

/// A classifier's class labels: the integers `ints` under `name`, or, one time in four, the
/// same as strings (`classlabels_strings`).
fn class_labels(random: &mut Random, name: &str, ints: impl Iterator<Item = i64>) -> Attribute {
    if random.below(4) > 0 {
        return self::ints(name, ints.collect());
    }
    let text: Vec<String> = ints.map(|label| format!("class {label}")).collect();
    strings("classlabels_strings", text.iter().map(String::as_str).collect())
}

/// A small deterministic generator (xorshift), so a failure can be run again.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const TRANSFORMS: [&str; 3] = ["NONE", "SOFTMAX", "LOGISTIC"];

/// A linear classifier of 2 to 6 classes.
fn linear(random: &mut Random, columns: usize) -> (Manifest, Vec<u8>) {
    let classes = 2 + random.below(5);
    linear_of(random, columns, classes)
}

/// A linear classifier of `classes` classes, its scores normalised (as skl2onnx writes
/// scikit-learn's) or not; of two classes, it has one score or two.
fn linear_of(random: &mut Random, columns: usize, classes: usize) -> (Manifest, Vec<u8>) {
    classifier(columns, classes, linear_nodes(random, columns, classes, "x"))
}

/// A scikit-learn pipeline of a scaler (one offset and scale a column, or one for all) and a
/// linear classifier of 2 to 6 classes.
fn scaled_linear(random: &mut Random, columns: usize) -> (Manifest, Vec<u8>) {
    let count = if random.below(4) == 0 { 1 } else { columns };
    let offset = (0..count).map(|_| random.uniform(-3.0, 3.0)).collect();
    let scale = (0..count).map(|_| random.uniform(0.1, 4.0)).collect();
    let scaler =
        node("Scaler", "x", &["scaled"], vec![floats("offset", offset), floats("scale", scale)]);
    let classes = 2 + random.below(5);
    let mut nodes = vec![scaler];
    nodes.extend(linear_nodes(random, columns, classes, "scaled"));
    classifier(columns, classes, nodes)
}

/// A linear regression of 1 to 4 targets, with intercepts or without, its values cast to FP32
/// (as skl2onnx writes scikit-learn's) or not.
fn regressor(random: &mut Random, columns: usize) -> (Manifest, Vec<u8>) {
    let targets = 1 + random.below(4);
    let coefficients = (0..targets * columns).map(|_| random.uniform(-2.0, 2.0)).collect();
    let mut attributes = vec![
        floats("coefficients", coefficients),
        Attribute { i: targets as i64, ..attribute("targets", 2) },
    ];
    if random.below(3) > 0 {
        attributes
            .push(floats("intercepts", (0..targets).map(|_| random.uniform(-1.0, 1.0)).collect()));
    }
    let nodes = if random.below(2) == 0 {
        vec![node("LinearRegressor", "x", &["y"], attributes)]
    } else {
        let cast = Attribute { i: i64::from(FLOAT), ..attribute("to", 2) };
        vec![
            node("LinearRegressor", "x", &["values"], attributes),
            Node { domain: String::new(), ..node("Cast", "values", &["y"], vec![cast]) },
        ]
    };
    model_of(columns, &[("y", FLOAT, vec![-1, targets as i64])], nodes)
}

/// The nodes of a linear classifier of `classes` classes reading `input`, whose last writes
/// `label` and `probabilities`.
fn linear_nodes(random: &mut Random, columns: usize, classes: usize, input: &str) -> Vec<Node> {
    let scores = if classes == 2 { 1 + random.below(2) } else { classes };
    let coefficients = (0..scores * columns).map(|_| random.uniform(-2.0, 2.0)).collect();
    let intercepts = (0..scores).map(|_| random.uniform(-1.0, 1.0)).collect();
    let labels = class_labels(random, "classlabels_ints", (0..classes as i64).map(|c| c * 10 + 1));
    let attributes = vec![
        floats("coefficients", coefficients),
        floats("intercepts", intercepts),
        labels,
        Attribute { i: 1, ..attribute("multi_class", 2) },
        string("post_transform", random.pick(&TRANSFORMS)),
    ];
    match random.pick(&["", "L1", "L2", "MAX"]) {
        "" => vec![node("LinearClassifier", input, &["label", "probabilities"], attributes)],
        norm => vec![
            node("LinearClassifier", input, &["label", "scores"], attributes),
            node("Normalizer", "scores", &["probabilities"], vec![string("norm", norm)]),
        ],
    }
}

/// The nodes of one random tree, depth first (a node's children after it), as
/// (node id, mode, feature, threshold, missing tracks true, true id, false id).
type TreeNodes = Vec<(i64, &'static str, i64, f32, i64, i64, i64)>;

/// How a random tree's branches compare.
#[derive(Clone, Copy)]
enum Branches {
    /// Any mode, a missing value either way.
    Any,
    /// `BRANCH_LEQ`, a missing value the false way: skl2onnx's scikit-learn trees.
    Leq,
}

fn tree(
    random: &mut Random,
    columns: usize,
    depth: usize,
    branches: Branches,
    nodes: &mut TreeNodes,
) -> i64 {
    const MODES: [&str; 6] =
        ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"];
    let id = nodes.len() as i64;
    if depth == 0 || random.below(4) == 0 {
        nodes.push((id, "LEAF", 0, 0.0, 0, 0, 0));
        return id;
    }
    let (mode, missing) = match branches {
        Branches::Any => (random.pick(&MODES), random.below(2) as i64),
        Branches::Leq => ("BRANCH_LEQ", 0),
    };
    let feature = random.below(columns) as i64;
    // Thresholds of a few values, so that rows meet them exactly too.
    let threshold = (random.uniform(-2.0, 2.0) * 4.0).round() / 4.0;
    nodes.push((id, mode, feature, threshold, missing, 0, 0));
    let if_true = tree(random, columns, depth - 1, branches, nodes);
    let if_false = tree(random, columns, depth - 1, branches, nodes);
    nodes[id as usize].5 = if_true;
    nodes[id as usize].6 = if_false;
    id
}

/// A forest of 1 to 12 trees over 3 to 5 classes, each leaf weighing some classes.
fn forest(random: &mut Random, columns: usize) -> (Manifest, Vec<u8>) {
    let classes = 3 + random.below(3);
    forest_of(random, columns, classes)
}

/// A forest of 1 to 12 trees over `classes` classes. Of two classes, it is as skl2onnx writes
/// scikit-learn's: one score (every weight on class 0), of weights that are probabilities (no
/// negative one) or margins, and no base value or one. Of more, one forest in three weighs
/// every class in every leaf, as skl2onnx writes a scikit-learn forest's probabilities.
fn forest_of(random: &mut Random, columns: usize, classes: usize) -> (Manifest, Vec<u8>) {
    let one_score = classes == 2;
    let every_class = !one_score && random.below(3) == 0;
    let (low, high) = if one_score && random.below(2) == 0 { (0.0, 0.3) } else { (-0.5, 1.0) };
    let names = ["class_treeids", "class_nodeids", "class_ids", "class_weights"];
    let mut list = trees(random, columns, names, |random| {
        let first = if one_score { 0 } else { random.below(classes) };
        let weighs = |&c: &usize| c == first || every_class || !one_score && random.below(2) == 0;
        let weighed = (0..classes).filter(weighs);
        weighed.collect::<Vec<_>>().into_iter().map(|c| (c, random.uniform(low, high))).collect()
    });
    list.extend([
        class_labels(random, "classlabels_int64s", (0..classes as i64).map(|c| 100 - c)),
        string("post_transform", random.pick(&TRANSFORMS)),
    ]);
    if random.below(2) == 0 {
        let count = if one_score { 1 } else { classes };
        list.push(floats("base_values", (0..count).map(|_| random.uniform(-0.5, 0.5)).collect()));
    }
    let nodes = vec![node("TreeEnsembleClassifier", "x", &["label", "probabilities"], list)];
    classifier(columns, classes, nodes)
}

/// A regression forest of 1 to 12 trees over 1 to 3 targets, each leaf weighing each target
/// at most once (as skl2onnx writes scikit-learn's), with base values or without.
fn regression_forest(random: &mut Random, columns: usize) -> (Manifest, Vec<u8>) {
    let targets = 1 + random.below(3);
    let names = ["target_treeids", "target_nodeids", "target_ids", "target_weights"];
    let mut list = trees(random, columns, names, |random| {
        let first = random.below(targets);
        let weighed = (0..targets).filter(|&t| t == first || random.below(2) == 0);
        weighed.collect::<Vec<_>>().into_iter().map(|t| (t, random.uniform(-2.0, 2.0))).collect()
    });
    list.push(Attribute { i: targets as i64, ..attribute("n_targets", 2) });
    if random.below(2) == 0 {
        list.extend([string("aggregate_function", "SUM"), string("post_transform", "NONE")]);
    }
    if random.below(2) == 0 {
        list.push(floats("base_values", (0..targets).map(|_| random.uniform(-1.0, 1.0)).collect()));
    }
    let nodes = vec![node("TreeEnsembleRegressor", "x", &["y"], list)];
    model_of(columns, &[("y", FLOAT, vec![-1, targets as i64])], nodes)
}

/// 1 to 12 random trees over `columns` numbers as a tree ensemble's attributes, each leaf
/// weighing the (output, weight) pairs `weigh` picks, named by `names` (trees, nodes, outputs,
/// weights). One forest in three has only `BRANCH_LEQ` branches (see [`Branches`]).
fn trees(
    random: &mut Random,
    columns: usize,
    names: [&str; 4],
    mut weigh: impl FnMut(&mut Random) -> Vec<(usize, f32)>,
) -> Vec<Attribute> {
    let node_names = ["nodes_treeids", "nodes_nodeids", "nodes_featureids"];
    let more = ["nodes_missing_value_tracks_true", "nodes_truenodeids", "nodes_falsenodeids"];
    let mut lists: Vec<(&str, Vec<i64>)> =
        node_names.iter().chain(&more).chain(&names[..3]).map(|&n| (n, Vec::new())).collect();
    let (mut modes, mut thresholds, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let branches = if random.below(3) == 0 { Branches::Leq } else { Branches::Any };
    for tree_id in 0..1 + random.below(12) as i64 {
        let mut nodes = Vec::new();
        let depth = 1 + random.below(5);
        tree(random, columns, depth, branches, &mut nodes);
        for (id, mode, feature, threshold, missing, if_true, if_false) in nodes {
            for (slot, v) in
                [tree_id, id, feature, missing, if_true, if_false].into_iter().enumerate()
            {
                lists[slot].1.push(v);
            }
            modes.push(mode);
            thresholds.push(threshold);
            if mode == "LEAF" {
                for (output, weight) in weigh(random) {
                    lists[6].1.push(tree_id);
                    lists[7].1.push(id);
                    lists[8].1.push(output as i64);
                    weights.push(weight);
                }
            }
        }
    }
    let mut list: Vec<Attribute> =
        lists.into_iter().map(|(name, values)| ints(name, values)).collect();
    list.extend([
        strings("nodes_modes", modes),
        floats("nodes_values", thresholds),
        floats(names[3], weights),
    ]);
    list
}

/// One ONNX Runtime session of `graph`, warmed up.
fn session(manifest: &Manifest, graph: &[u8]) -> OnnxSession {
    let config = RunConfig {
        sessions: 1,
        intra_threads: 1,
        inter_threads: 1,
        queue_capacity: 1,
        onnx_ml: OnnxMl::OnnxRuntime,
        batching: BatchingConfig::default(),
        remote: None,
    };
    let environment = runtime::environment(&RuntimeConfig::default()).unwrap();
    onnx::sessions(manifest, graph, &config, &Padding::new(), &environment).unwrap().remove(0)
}

/// `rows` random rows of `columns` numbers in [-2, 2], some on quarter steps (where the
/// forests' thresholds are) and some NaN.
fn rows(random: &mut Random, rows: usize, columns: usize) -> Tensors {
    let numbers = (0..rows * columns)
        .map(|_| match random.below(8) {
            0 => f32::NAN,
            1..=3 => (random.uniform(-2.0, 2.0) * 4.0).round() / 4.0,
            _ => random.uniform(-2.0, 2.0),
        })
        .collect();
    let x = ArrayD::from_shape_vec(vec![rows, columns], numbers).unwrap();
    Tensors::from([("x".to_string(), Tensor::F32(x))])
}

/// Runs `count` random models of `make` on the interpreter and on ONNX Runtime, on probe
/// rows and on random batches and single rows.
fn agree_on_random_models(count: u64, make: fn(&mut Random, usize) -> (Manifest, Vec<u8>)) {
    let context = Context::internal();
    for seed in 1..=count {
        let mut random = Random(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let columns = 1 + random.below(10);
        let (manifest, graph) = make(&mut random, columns);
        let mut interpreter = Interpreter::compile(&manifest, &graph).unwrap();
        let mut reference = session(&manifest, &graph);
        interpreter.agrees_with(&mut reference).unwrap_or_else(|e| panic!("model {seed}: {e}"));
        for size in [64, 1, 1, 7] {
            let inputs = rows(&mut random, size, columns);
            let ours = interpreter.run(&inputs, OutputSet::ALL, &context).unwrap();
            let theirs = reference.run(&inputs, OutputSet::ALL, &context).unwrap();
            compare(&ours, &theirs, &manifest.outputs)
                .unwrap_or_else(|e| panic!("model {seed}, {size} rows: {e}"));
        }
    }
}

#[test]
fn linear_models_give_onnx_runtimes_answers() {
    agree_on_random_models(40, linear);
}

#[test]
fn binary_linear_models_give_onnx_runtimes_answers() {
    // One score (ONNX Runtime's own rule for it) or two (as skl2onnx writes scikit-learn's).
    agree_on_random_models(20, |random, columns| linear_of(random, columns, 2));
}

#[test]
fn forests_give_onnx_runtimes_answers() {
    agree_on_random_models(60, forest);
}

#[test]
fn scaled_linear_models_give_onnx_runtimes_answers() {
    agree_on_random_models(30, scaled_linear);
}

#[test]
fn linear_regressions_give_onnx_runtimes_answers() {
    agree_on_random_models(30, regressor);
}

#[test]
fn regression_forests_give_onnx_runtimes_answers() {
    agree_on_random_models(60, regression_forest);
}

#[test]
fn binary_forests_give_onnx_runtimes_answers() {
    agree_on_random_models(60, |random, columns| forest_of(random, columns, 2));
}

#[test]
fn only_the_outputs_asked_for_are_written() {
    let (manifest, graph) = linear(&mut Random(7), 4);
    let mut interpreter = Interpreter::compile(&manifest, &graph).unwrap();
    let wanted = OutputSet::named(&manifest.outputs, ["probabilities"]).unwrap();
    let inputs = rows(&mut Random(8), 3, 4);
    let ran = interpreter.run(&inputs, wanted, &Context::internal()).unwrap();
    assert_eq!(ran.keys().collect::<Vec<_>>(), ["probabilities"]);
    assert_eq!(ran["probabilities"].shape(), [3, manifest.outputs[1].shape[1] as usize]);
}

#[test]
fn an_input_stored_column_by_column_gives_the_answers_of_its_row_major_copy() {
    let (manifest, graph) = forest(&mut Random(13), 4);
    let mut interpreter = Interpreter::compile(&manifest, &graph).unwrap();
    let context = Context::internal();
    let inputs = rows(&mut Random(14), 5, 4);
    let Some(Tensor::F32(x)) = inputs.get("x") else { panic!("rows are FP32") };
    let column_major = x.t().as_standard_layout().into_owned().reversed_axes();
    assert!(!column_major.is_standard_layout());
    // The same numbers, NaN included, in the same logical order.
    assert!(column_major.iter().map(|v| v.to_bits()).eq(x.iter().map(|v| v.to_bits())));
    let stored_apart = Tensors::from([("x".to_string(), Tensor::F32(column_major))]);
    let ours = interpreter.run(&stored_apart, OutputSet::ALL, &context).unwrap();
    let row_major = interpreter.run(&inputs, OutputSet::ALL, &context).unwrap();
    compare(&ours, &row_major, &manifest.outputs).unwrap();
}

#[test]
fn an_interpreter_that_disagrees_is_found_out() {
    // Two models of the same shapes whose coefficients differ: one is the other's reference.
    let (manifest, graph) = linear(&mut Random(11), 5);
    let mut ours = Interpreter::compile(&manifest, &graph).unwrap();
    let (other_manifest, other_graph) = linear(&mut Random(12), 5);
    if other_manifest.outputs != manifest.outputs {
        // Different class counts make the outputs' shapes differ, which is found out too.
        let mut other = Interpreter::compile(&other_manifest, &other_graph).unwrap();
        assert!(ours.agrees_with(&mut other).is_err());
        return;
    }
    let mut other = Interpreter::compile(&other_manifest, &other_graph).unwrap();
    let error = ours.agrees_with(&mut other).unwrap_err();
    assert!(error.contains("where ONNX Runtime gave"), "{error}");
}

#[test]
fn graphs_it_does_not_run_are_left_to_onnx_runtime_with_the_reason() {
    let linear_with = |labels: Attribute, extra: Option<Attribute>| {
        let mut attributes = vec![
            floats("coefficients", vec![1.0; 2 * 3]),
            floats("intercepts", vec![0.0; 3]),
            labels,
        ];
        attributes.extend(extra);
        classifier(
            2,
            3,
            vec![node("LinearClassifier", "x", &["label", "probabilities"], attributes)],
        )
    };
    let cases = [
        (linear_with(ints("classlabels_ints", vec![0, 1]), None), "2 labels, 3 intercepts"),
        (linear_with(ints("classlabels_ints", vec![7]), None), "1 class labels, fewer than 2"),
        (forest_of(&mut Random(5), 2, 1), "1 class labels, fewer than 2"),
        (
            linear_with(
                ints("classlabels_ints", vec![0, 1, 2]),
                Some(string("post_transform", "PROBIT")),
            ),
            "post_transform `PROBIT`",
        ),
        (
            linear_with(
                ints("classlabels_ints", vec![0, 1, 2]),
                Some(floats("coefficients_scale", vec![1.0])),
            ),
            "attribute `coefficients_scale`",
        ),
        (
            classifier(
                2,
                3,
                vec![Node { domain: String::new(), ..node("Sigmoid", "x", &["label"], vec![]) }],
            ),
            "operator `Sigmoid` of domain ``",
        ),
    ];
    for ((manifest, graph), reason) in cases {
        let error = Interpreter::compile(&manifest, &graph).unwrap_err();
        assert!(error.contains(reason), "{error} should say {reason}");
    }
    let error = Interpreter::compile(&linear(&mut Random(3), 2).0, b"not a model").unwrap_err();
    assert!(error.contains("unreadable graph"), "{error}");
}

/// The manifest and graph of the committed model version at `path`, relative to the core
/// crate.
fn committed(path: &str) -> (Manifest, Vec<u8>) {
    let version = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let manifest = std::fs::read_to_string(version.join("manifest.json")).unwrap();
    (serde_json::from_str(&manifest).unwrap(), std::fs::read(version.join("model.onnx")).unwrap())
}

#[test]
fn the_service_templates_models_run_here() {
    // What `cargo xtask new` starts a service with: a scaler and a logistic regression
    // (`tabular`), and a linear regression (`blank`), as skl2onnx writes them.
    for path in
        ["../../templates/tabular/models/classifier/1", "../../templates/blank/models/model/1"]
    {
        let (manifest, graph) = committed(path);
        let mut interpreter =
            Interpreter::compile(&manifest, &graph).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut reference = session(&manifest, &graph);
        interpreter.agrees_with(&mut reference).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// `tests/fixtures/sklearn.json`: rows, and every output Python onnxruntime gave for them
/// from each model: labels as integers, numbers as rows of floats.
#[derive(serde::Deserialize)]
struct SklearnFixture {
    tolerance: f32,
    rows: Vec<Vec<f32>>,
    models:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
}

#[test]
fn scikit_learns_common_models_run_here_with_pythons_answers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sklearn.json");
    let fixture: SklearnFixture =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let shape = vec![fixture.rows.len(), fixture.rows[0].len()];
    let x = ArrayD::from_shape_vec(shape, fixture.rows.concat()).unwrap();
    let inputs = Tensors::from([("features".to_string(), Tensor::F32(x))]);
    assert_eq!(fixture.models.len(), 5, "binary classifiers and regressors");
    for (name, answers) in &fixture.models {
        let (manifest, graph) = committed(&format!("tests/models/{name}/1"));
        let mut interpreter = Interpreter::compile(&manifest, &graph).unwrap();
        interpreter.agrees_with(&mut session(&manifest, &graph)).unwrap();
        let ran = interpreter.run(&inputs, OutputSet::ALL, &Context::internal()).unwrap();
        assert_eq!(ran.len(), answers.len(), "{name}");
        for (output, want) in answers {
            match &ran[output] {
                Tensor::I64(labels) => {
                    let want: Vec<i64> = serde_json::from_value(want.clone()).unwrap();
                    assert_eq!(labels.iter().copied().collect::<Vec<_>>(), want, "{name}");
                }
                Tensor::F32(numbers) => {
                    let want: Vec<Vec<f32>> = serde_json::from_value(want.clone()).unwrap();
                    assert_eq!(numbers.shape(), [want.len(), want[0].len()], "{name} {output}");
                    for (got, want) in numbers.iter().zip(want.concat()) {
                        let close = (got - want).abs() <= fixture.tolerance;
                        assert!(close, "{name} {output}: {got} where Python gave {want}");
                    }
                }
                other => panic!("{name} {output}: {other:?}"),
            }
        }
    }
}

#[test]
fn string_labels_come_out_as_text() {
    let attributes = vec![
        floats("coefficients", vec![1.0, -1.0, 0.5, 0.5, -1.0, 1.0]),
        floats("intercepts", vec![0.0; 3]),
        strings("classlabels_strings", vec!["cat", "dog", "eel"]),
    ];
    let nodes = vec![node("LinearClassifier", "x", &["label", "probabilities"], attributes)];
    let (manifest, graph) = classifier(2, 3, nodes);
    assert_eq!(manifest.outputs[0].datatype, DataType::Bytes);
    let mut interpreter = Interpreter::compile(&manifest, &graph).unwrap();
    interpreter.agrees_with(&mut session(&manifest, &graph)).unwrap();
    let x = ArrayD::from_shape_vec(vec![3, 2], vec![2.0, 0.0, 0.0, 2.0, -2.0, 2.0]).unwrap();
    let inputs = Tensors::from([("x".to_string(), Tensor::F32(x))]);
    let ran = interpreter.run(&inputs, OutputSet::ALL, &Context::internal()).unwrap();
    let Tensor::Text(labels) = &ran["label"] else { panic!("{ran:?}") };
    assert_eq!(labels.iter().map(String::as_str).collect::<Vec<_>>(), ["cat", "eel", "eel"]);
}
