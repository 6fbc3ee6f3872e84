//! The ONNX-ML operators the interpreter runs, each read from its node's attributes and
//! computed as ONNX Runtime's CPU kernels compute it (`onnxruntime/core/providers/cpu/ml`):
//! the same comparisons, the same order of sums over trees and leaf weights, the same rule
//! for ties and the same post transforms, and the special rules ONNX Runtime has for binary
//! classifiers of one score. A node the interpreter cannot run exactly so (a forest of two
//! classes that is not of one score, an attribute it does not know) is [`Unsupported`], and
//! the model runs on ONNX Runtime.

mod trees;

use std::collections::HashMap;

use self::trees::{TreeClassifier, TreeRegressor};
use super::proto::{Attribute, Node};

/// Why a graph runs on ONNX Runtime rather than on the interpreter.
pub(super) type Unsupported = String;

/// One operator with its constants.
#[derive(Debug)]
pub(super) enum Op {
    /// `LinearClassifier`: scores of a linear model, and the label of the highest.
    Linear(LinearClassifier),
    /// `Normalizer`: each row divided by its norm.
    Normalize(Norm),
    /// `TreeEnsembleClassifier`: scores summed over trees, and the label of the highest.
    Trees(TreeClassifier),
    /// `TreeEnsembleRegressor`: values summed over trees.
    RegressTrees(TreeRegressor),
    /// `LinearRegressor`: the values of a linear model.
    Regress(LinearRegressor),
    /// `Scaler`: each column shifted and scaled.
    Scale(Scaler),
}

/// The values one operator writes for a run of several rows.
pub(super) enum Written {
    /// Labels, as indices in the classifier's [`Labels`], and scores (`[rows]` and
    /// `[rows, classes]`).
    Classified { labels: Vec<usize>, scores: Vec<f32> },
    /// Numbers, [`Op::columns`] a row.
    Numbers(Vec<f32>),
}

impl Op {
    /// The operator of `node`, whose input has `columns` numbers a row.
    pub(super) fn read(node: &Node, columns: usize) -> Result<Self, Unsupported> {
        let attributes = Attributes::of(node)?;
        let op = match (node.domain.as_str(), node.op_type.as_str()) {
            ("ai.onnx.ml", "LinearClassifier") => {
                Self::Linear(LinearClassifier::read(&attributes, columns)?)
            }
            ("ai.onnx.ml", "Normalizer") => Self::Normalize(Norm::read(&attributes)?),
            ("ai.onnx.ml", "TreeEnsembleClassifier") => {
                Self::Trees(TreeClassifier::read(&attributes, columns)?)
            }
            ("ai.onnx.ml", "TreeEnsembleRegressor") => {
                Self::RegressTrees(TreeRegressor::read(&attributes, columns)?)
            }
            ("ai.onnx.ml", "LinearRegressor") => {
                Self::Regress(LinearRegressor::read(&attributes, columns)?)
            }
            ("ai.onnx.ml", "Scaler") => Self::Scale(Scaler::read(&attributes, columns)?),
            (domain, op) => return Err(format!("operator `{op}` of domain `{domain}`")),
        };
        attributes.all_read(&node.op_type)?;
        Ok(op)
    }

    /// How many values the operator writes: two for a classifier (label, scores), one for
    /// the others.
    pub(super) fn outputs(&self) -> usize {
        match self {
            Self::Linear(_) | Self::Trees(_) => 2,
            Self::Normalize(_) | Self::Regress(_) | Self::RegressTrees(_) | Self::Scale(_) => 1,
        }
    }

    /// How many numbers a row of its scores or values holds, when it reads `columns`.
    pub(super) fn columns(&self, columns: usize) -> usize {
        match self {
            Self::Linear(linear) => linear.labels.len(),
            Self::Trees(trees) => trees.labels().len(),
            Self::Regress(regressor) => regressor.intercepts.len(),
            Self::RegressTrees(regressor) => regressor.targets,
            Self::Normalize(_) | Self::Scale(_) => columns,
        }
    }

    /// A classifier's class labels, which the label indices it writes point into.
    pub(super) fn labels(&self) -> Option<&Labels> {
        match self {
            Self::Linear(linear) => Some(&linear.labels),
            Self::Trees(trees) => Some(trees.labels()),
            Self::Normalize(_) | Self::Regress(_) | Self::RegressTrees(_) | Self::Scale(_) => None,
        }
    }

    /// The (feature, threshold) of every branch that compares an input number: where probe
    /// rows should look.
    pub(super) fn thresholds(&self) -> Vec<(usize, f32)> {
        match self {
            Self::Trees(trees) => trees.thresholds(),
            Self::RegressTrees(trees) => trees.thresholds(),
            Self::Linear(_) | Self::Normalize(_) | Self::Regress(_) | Self::Scale(_) => Vec::new(),
        }
    }

    /// Runs the operator on `rows` rows of `columns` numbers.
    pub(super) fn run(&self, input: &[f32], rows: usize, columns: usize) -> Written {
        match self {
            Self::Linear(linear) => linear.run(input, rows, columns),
            Self::Trees(trees) => trees.run(input, rows, columns),
            Self::Normalize(norm) => Written::Numbers(norm.run(input, columns)),
            Self::Regress(regressor) => Written::Numbers(regressor.run(input, rows, columns)),
            Self::Scale(scaler) => Written::Numbers(scaler.run(input, columns)),
            Self::RegressTrees(trees) => Written::Numbers(trees.run(input, columns)),
        }
    }
}

/// A node's attributes by name, with the ones read so far marked.
struct Attributes<'a> {
    by_name: HashMap<&'a str, &'a Attribute>,
    read: std::cell::RefCell<Vec<&'a str>>,
}

impl<'a> Attributes<'a> {
    fn of(node: &'a Node) -> Result<Self, Unsupported> {
        let mut by_name = HashMap::new();
        for attribute in &node.attribute {
            if !attribute.ref_attr_name.is_empty() || attribute.t.is_some() {
                return Err(format!("attribute `{}` of `{}`", attribute.name, node.op_type));
            }
            by_name.insert(attribute.name.as_str(), attribute);
        }
        Ok(Self { by_name, read: Default::default() })
    }

    fn get(&self, name: &'a str) -> Option<&'a Attribute> {
        self.read.borrow_mut().push(name);
        self.by_name.get(name).copied()
    }

    fn int(&self, name: &'a str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    fn floats(&self, name: &'a str) -> &'a [f32] {
        self.get(name).map_or(&[], |a| &a.floats)
    }

    fn ints(&self, name: &'a str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| &a.ints)
    }

    fn strings(&self, name: &'a str) -> Vec<&'a [u8]> {
        self.get(name).map_or(Vec::new(), |a| a.strings.iter().map(Vec::as_slice).collect())
    }

    fn string(&self, name: &'a str, default: &'a str) -> &'a [u8] {
        self.get(name).map_or(default.as_bytes(), |a| &a.s)
    }

    /// Fails unless string attribute `name` is `only` (or absent, its default).
    fn only(&self, name: &'a str, only: &'a str) -> Result<(), Unsupported> {
        let value = self.string(name, only);
        if value == only.as_bytes() {
            Ok(())
        } else {
            Err(format!("{name} `{}`", String::from_utf8_lossy(value)))
        }
    }

    /// Fails on an attribute no `get` asked for: one this interpreter does not know.
    fn all_read(&self, op: &str) -> Result<(), Unsupported> {
        let read = self.read.borrow();
        match self.by_name.keys().find(|name| !read.contains(name)) {
            Some(name) => Err(format!("attribute `{name}` of `{op}`")),
            None => Ok(()),
        }
    }
}

/// The transform applied to a row of scores before they are written (`post_transform`).
#[derive(Debug, Clone, Copy)]
enum PostTransform {
    None,
    Logistic,
    Softmax,
}

impl PostTransform {
    fn read(attributes: &Attributes<'_>) -> Result<Self, Unsupported> {
        match attributes.string("post_transform", "NONE") {
            b"NONE" => Ok(Self::None),
            b"LOGISTIC" => Ok(Self::Logistic),
            b"SOFTMAX" => Ok(Self::Softmax),
            other => Err(format!("post_transform `{}`", String::from_utf8_lossy(other))),
        }
    }

    /// Transforms one row of two or more scores in place, with `logistic` for LOGISTIC.
    fn apply(self, scores: &mut [f32], logistic: fn(f32) -> f32) {
        match self {
            Self::None => {}
            Self::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            Self::Softmax => {
                let max = scores.iter().fold(-f32::MAX, |max, &s| if s > max { s } else { max });
                let mut sum = 0.0f32;
                for score in scores.iter_mut() {
                    *score = (*score - max).exp();
                    sum += *score;
                }
                scores.iter_mut().for_each(|s| *s /= sum);
            }
        }
    }
}

/// The logistic function as ONNX Runtime writes it, exact for large magnitudes of either sign.
fn logistic(value: f32) -> f32 {
    let v = 1.0 / (1.0 + (-value.abs()).exp());
    if value < 0.0 { 1.0 - v } else { v }
}

/// The logistic function as ONNX Runtime computes a batch of scores (MLAS's
/// `MlasComputeLogistic`, which its linear classifiers use on two or more scores a row):
/// Eigen's rational approximation on [-18, 18] in fused multiply-adds, as MLAS's FMA kernel
/// computes it, kept within [0, 1]. It is within 2e-7 of [`logistic`], but relatively far
/// from it below about -10, which a normalizer dividing small scores by each other shows.
fn batched_logistic(value: f32) -> f32 {
    // MLAS's constants as it writes them, which Rust rounds to the same `f32`s as C does.
    #[allow(clippy::excessive_precision)]
    const ALPHA: [f32; 5] = [
        4.37031012579801e-11,
        1.15627324459942e-07,
        6.08574864600143e-05,
        8.51377133304701e-03,
        2.48287947061529e-01,
    ];
    #[allow(clippy::excessive_precision)]
    const BETA: [f32; 6] = [
        6.10247389755681e-13,
        5.76102136993427e-09,
        6.29106785017040e-06,
        1.70198817374094e-03,
        1.16817656904453e-01,
        9.93151921023180e-01,
    ];
    let x = value.clamp(-18.0, 18.0);
    let squared = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &alpha| p.mul_add(squared, alpha)) * x;
    let q = BETA[1..].iter().fold(BETA[0], |q, &beta| q.mul_add(squared, beta));
    (p / q + 0.5).clamp(0.0, 1.0)
}

/// The two scores ONNX Runtime 1.31 writes for a binary classifier's one score `s`, the
/// second class's (its `add_second_class` 0 and 1): `[1 - p, p]`, where `p` is
/// [`logistic`]`(s)` under LOGISTIC and `s` itself under NONE and SOFTMAX.
fn second_class_scores(s: f32, post: PostTransform) -> [f32; 2] {
    let p = match post {
        PostTransform::Logistic => logistic(s),
        PostTransform::None | PostTransform::Softmax => s,
    };
    [1.0 - p, p]
}

/// The index of the highest of `scores` among those `present`, the first of equal ones.
fn highest(scores: &[f32], present: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, &score) in scores.iter().enumerate() {
        if present(index) && best.is_none_or(|b| score > scores[b]) {
            best = Some(index);
        }
    }
    best
}

/// A classifier's class labels, as its graph gives them: integers or strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    /// The labels of a classifier (integers in `ints`, or strings in `classlabels_strings`),
    /// at least `fewest`.
    fn read(
        attributes: &Attributes<'_>,
        ints: &'static str,
        fewest: usize,
    ) -> Result<Self, Unsupported> {
        let strings = attributes.strings("classlabels_strings");
        let labels = if strings.is_empty() {
            Self::Ints(attributes.ints(ints).to_vec())
        } else {
            let text = strings.into_iter().map(|s| String::from_utf8(s.to_vec()).ok());
            let text: Option<Vec<String>> = text.collect();
            Self::Strings(text.ok_or("class labels that are not UTF-8")?)
        };
        if labels.len() < fewest {
            return Err(format!("{} class labels, fewer than {fewest}", labels.len()));
        }
        Ok(labels)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Ints(labels) => labels.len(),
            Self::Strings(labels) => labels.len(),
        }
    }
}

/// `LinearClassifier`: `scores = x · coefficientsᵀ + intercepts`, one score a class; the
/// label of the highest score before the transform, then the transform.
///
/// A binary classifier may instead have one score `s`, the second class's: its label is the
/// second class when `s` is above 0, and it writes [`second_class_scores`]. skl2onnx writes
/// scikit-learn's binary models with two scores, one a class, like any other.
#[derive(Debug)]
pub(super) struct LinearClassifier {
    /// `[scores, columns]`, row-major.
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: Labels,
    post: PostTransform,
}

impl LinearClassifier {
    fn read(attributes: &Attributes<'_>, columns: usize) -> Result<Self, Unsupported> {
        let labels = Labels::read(attributes, "classlabels_ints", 2)?;
        let coefficients = attributes.floats("coefficients").to_vec();
        let intercepts = attributes.floats("intercepts").to_vec();
        // ONNX Runtime reads `multi_class` and does not use it.
        let _ = attributes.get("multi_class");
        let post = PostTransform::read(attributes)?;
        let one_score = intercepts.len() == 1 && labels.len() == 2;
        if !(intercepts.len() == labels.len() || one_score)
            || coefficients.len() != intercepts.len() * columns
        {
            return Err(format!(
                "a LinearClassifier of {} labels, {} intercepts and {} coefficients for {columns} \
                 inputs",
                labels.len(),
                intercepts.len(),
                coefficients.len()
            ));
        }
        Ok(Self { coefficients, intercepts, labels, post })
    }

    fn run(&self, input: &[f32], rows: usize, columns: usize) -> Written {
        let classes = self.labels.len();
        let mut labels = Vec::with_capacity(rows);
        let mut scores = Vec::with_capacity(rows * classes);
        for x in input.chunks_exact(columns).take(rows) {
            let row = scores.len();
            push_affine(x, &self.coefficients, &self.intercepts, &mut scores);
            if let [score] = scores[row..] {
                labels.push(usize::from(score > 0.0));
                let [first, second] = second_class_scores(score, self.post);
                scores[row] = first;
                scores.push(second);
                continue;
            }
            let row = &mut scores[row..];
            labels.push(highest(row, |_| true).unwrap_or(0));
            self.post.apply(row, batched_logistic);
        }
        Written::Classified { labels, scores }
    }
}

/// `x · coefficientsᵀ + intercepts` for one row `x`, pushed onto `values`: each dot product in
/// fused multiply-adds in column order, as MLAS's FMA kernel sums it, then its intercept.
fn push_affine(x: &[f32], coefficients: &[f32], intercepts: &[f32], values: &mut Vec<f32>) {
    for (weights, intercept) in coefficients.chunks_exact(x.len()).zip(intercepts) {
        let dot = x.iter().zip(weights).fold(0.0f32, |sum, (x, w)| x.mul_add(*w, sum));
        values.push(dot + intercept);
    }
}

/// `LinearRegressor` without a transform (as skl2onnx writes scikit-learn's linear
/// regressions): `x · coefficientsᵀ + intercepts`, `targets` values a row. Intercepts of
/// another length than `targets` are not used, as in ONNX Runtime.
#[derive(Debug)]
pub(super) struct LinearRegressor {
    /// `[targets, columns]`, row-major.
    coefficients: Vec<f32>,
    /// One a target (zeros when the graph's are not used).
    intercepts: Vec<f32>,
}

impl LinearRegressor {
    fn read(attributes: &Attributes<'_>, columns: usize) -> Result<Self, Unsupported> {
        let targets = attributes.int("targets").unwrap_or(1);
        let coefficients = attributes.floats("coefficients").to_vec();
        let intercepts = attributes.floats("intercepts");
        attributes.only("post_transform", "NONE")?;
        let targets = usize::try_from(targets).ok().filter(|&t| t > 0);
        let Some(targets) = targets.filter(|&t| coefficients.len() == t * columns) else {
            return Err(format!(
                "a LinearRegressor of {} coefficients for {columns} inputs",
                coefficients.len()
            ));
        };
        let intercepts =
            if intercepts.len() == targets { intercepts.to_vec() } else { vec![0.0; targets] };
        Ok(Self { coefficients, intercepts })
    }

    fn run(&self, input: &[f32], rows: usize, columns: usize) -> Vec<f32> {
        let mut values = Vec::with_capacity(rows * self.intercepts.len());
        for x in input.chunks_exact(columns).take(rows) {
            push_affine(x, &self.coefficients, &self.intercepts, &mut values);
        }
        values
    }
}

/// `Scaler`: `(x - offset) * scale`, column by column, or with one offset and scale for all.
#[derive(Debug)]
pub(super) struct Scaler {
    /// One a column.
    offset: Vec<f32>,
    /// One a column.
    scale: Vec<f32>,
}

impl Scaler {
    fn read(attributes: &Attributes<'_>, columns: usize) -> Result<Self, Unsupported> {
        let (offset, scale) = (attributes.floats("offset"), attributes.floats("scale"));
        match (offset.len(), scale.len()) {
            (1, 1) => Ok(Self { offset: vec![offset[0]; columns], scale: vec![scale[0]; columns] }),
            (o, s) if o == columns && s == columns => {
                Ok(Self { offset: offset.to_vec(), scale: scale.to_vec() })
            }
            (o, s) => Err(format!("a Scaler of {o} offsets and {s} scales for {columns} inputs")),
        }
    }

    fn run(&self, input: &[f32], columns: usize) -> Vec<f32> {
        let mut output = Vec::with_capacity(input.len());
        for x in input.chunks_exact(columns) {
            let scaled = x.iter().zip(&self.offset).zip(&self.scale);
            output.extend(scaled.map(|((&x, &offset), &scale)| (x - offset) * scale));
        }
        output
    }
}

/// `Normalizer`: each row divided by its L1 norm, L2 norm or maximum; a row whose norm is 0 is
/// copied as it is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Norm {
    Max,
    L1,
    L2,
}

impl Norm {
    fn read(attributes: &Attributes<'_>) -> Result<Self, Unsupported> {
        match attributes.string("norm", "MAX") {
            b"MAX" => Ok(Self::Max),
            b"L1" => Ok(Self::L1),
            b"L2" => Ok(Self::L2),
            other => Err(format!("norm `{}`", String::from_utf8_lossy(other))),
        }
    }

    fn run(self, input: &[f32], columns: usize) -> Vec<f32> {
        let mut output = Vec::with_capacity(input.len());
        for x in input.chunks_exact(columns) {
            let norm = match self {
                Self::Max => x.iter().fold(f32::MIN, |max, &v| if max < v { v } else { max }),
                Self::L1 => x.iter().fold(0.0f32, |sum, v| sum + v.abs()),
                Self::L2 => x.iter().fold(0.0f32, |sum, v| sum + v * v),
            };
            if norm == 0.0 {
                output.extend_from_slice(x);
                continue;
            }
            output.extend(x.iter().map(|&v| match self {
                Self::Max | Self::L1 => v / norm,
                Self::L2 => {
                    let root = (v * v / norm).sqrt();
                    if v < 0.0 { -root } else { root }
                }
            }));
        }
        output
    }
}
