//! The tree ensembles: `TreeEnsembleClassifier` and `TreeEnsembleRegressor`, over one
//! [`Forest`] reader and walker, computed as ONNX Runtime's `tree_ensemble_aggregator.h` does
//! (the same comparisons, sums over trees and leaf weights in the graph's order, base values,
//! and for classifiers the first highest class on ties, the transforms and the special rules
//! for a binary classifier's one score).

use std::collections::HashMap;

use super::{
    Attributes, Labels, PostTransform, Unsupported, Written, highest, logistic, second_class_scores,
};

/// How a branch compares its feature with its threshold (`nodes_modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl Mode {
    fn read(mode: &[u8]) -> Result<Self, Unsupported> {
        Ok(match mode {
            b"BRANCH_LEQ" => Self::Leq,
            b"BRANCH_LT" => Self::Lt,
            b"BRANCH_GTE" => Self::Gte,
            b"BRANCH_GT" => Self::Gt,
            b"BRANCH_EQ" => Self::Eq,
            b"BRANCH_NEQ" => Self::Neq,
            b"LEAF" => Self::Leaf,
            other => return Err(format!("node mode `{}`", String::from_utf8_lossy(other))),
        })
    }
}

/// One node of a tree as the walks read it, in 16 bytes: four to a cache line.
#[derive(Debug, Clone, Copy)]
struct TreeNode {
    /// The feature a branch compares with `threshold`, or [`LEAF`].
    feature: u32,
    threshold: f32,
    /// A branch's children, `[if true, if false]`: indices in [`Forest::nodes`], always after
    /// this node's, so that a walk ends. A leaf's weights: the range `next[0]..next[1]` of
    /// [`Forest::weights`].
    next: [u32; 2],
}

/// The `feature` of a leaf.
const LEAF: u32 = u32::MAX;

impl TreeNode {
    /// A leaf's weights, in [`Forest::weights`].
    fn weights(&self) -> std::ops::Range<usize> {
        self.next[0] as usize..self.next[1] as usize
    }
}

/// How a branch compares (`nodes_modes`, `nodes_missing_value_tracks_true`): read by the
/// walks only where the forest's branches do not all compare alike.
#[derive(Debug, Clone, Copy)]
struct Rule {
    mode: Mode,
    /// A missing value (NaN) takes the true branch.
    missing_true: bool,
}

impl Rule {
    /// Whether a row whose feature is `value` takes the true branch of a node comparing it with
    /// the threshold `t`.
    fn goes_true(self, t: f32, value: f32) -> bool {
        let compared = match self.mode {
            Mode::Leq => value <= t,
            Mode::Lt => value < t,
            Mode::Gte => value >= t,
            Mode::Gt => value > t,
            Mode::Eq => value == t,
            Mode::Neq => value != t,
            Mode::Leaf => false,
        };
        compared || (self.missing_true && value.is_nan())
    }
}

/// The names of a classifier's leaf weights: trees, nodes, classes, weights.
const CLASS_WEIGHTS: [&str; 4] = ["class_treeids", "class_nodeids", "class_ids", "class_weights"];

/// The names of a regressor's leaf weights: trees, nodes, targets, weights.
const TARGET_WEIGHTS: [&str; 4] =
    ["target_treeids", "target_nodeids", "target_ids", "target_weights"];

/// The trees of an ensemble, and each leaf's weights on the ensemble's outputs (classes or
/// targets).
#[derive(Debug)]
struct Forest {
    nodes: Vec<TreeNode>,
    /// Each node's comparison, by the index of the node.
    rules: Vec<Rule>,
    /// The root of each tree, in the graph's order.
    roots: Vec<u32>,
    /// Leaf weights as (output, weight), each leaf's in the graph's order.
    weights: Vec<(u32, f32)>,
    /// Every branch is `BRANCH_LEQ` and sends a missing value the false way, as skl2onnx writes
    /// scikit-learn's trees without missing-value support: walked without reading the rules.
    only_leq: bool,
    /// Every leaf weighs every output once, in the outputs' order, as skl2onnx writes a
    /// scikit-learn forest's class probabilities: added without looking at outputs.
    dense: bool,
}

impl Forest {
    /// The trees of a node reading `columns` numbers, with leaf weights named by `names` on
    /// `outputs` classes or targets.
    fn read(
        attributes: &Attributes<'_>,
        columns: usize,
        names: [&'static str; 4],
        outputs: usize,
    ) -> Result<Self, Unsupported> {
        let _ = attributes.get("nodes_hitrates");
        let tree_ids = attributes.ints("nodes_treeids");
        let node_ids = attributes.ints("nodes_nodeids");
        let features = attributes.ints("nodes_featureids");
        let modes = attributes.strings("nodes_modes");
        let thresholds = attributes.floats("nodes_values");
        let true_ids = attributes.ints("nodes_truenodeids");
        let false_ids = attributes.ints("nodes_falsenodeids");
        let missing = attributes.ints("nodes_missing_value_tracks_true");
        let [trees, leaves, ids, values] = names;
        let (weight_trees, weight_nodes) = (attributes.ints(trees), attributes.ints(leaves));
        let (weight_ids, weight_values) = (attributes.ints(ids), attributes.floats(values));
        let count = tree_ids.len();
        let lengths = [node_ids.len(), features.len(), modes.len(), thresholds.len()];
        if count == 0
            || lengths.iter().chain([&true_ids.len(), &false_ids.len()]).any(|&n| n != count)
            || !(missing.is_empty() || missing.len() == count)
            || [weight_nodes.len(), weight_ids.len(), weight_values.len()]
                .iter()
                .any(|&n| n != weight_trees.len())
        {
            return Err("a tree ensemble whose attribute lists disagree in length".into());
        }
        // Nodes, weights and features are numbered in `u32`, with `LEAF` left out.
        if [count, weight_trees.len(), columns].iter().any(|&n| n >= LEAF as usize) {
            return Err("a tree ensemble of more than 4 billion nodes, weights or features".into());
        }
        let numbered = |i: usize| i as u32;

        // Trees in the order of their first node; a tree's nodes must be listed together.
        let mut position: HashMap<(i64, i64), usize> = HashMap::new();
        let mut roots = Vec::new();
        for (index, (&tree, &node)) in tree_ids.iter().zip(node_ids).enumerate() {
            if index == 0 || tree_ids[index - 1] != tree {
                if roots.iter().any(|&root| tree_ids[root as usize] == tree) {
                    return Err(format!("the nodes of tree {tree} are not listed together"));
                }
                roots.push(numbered(index));
            }
            if position.insert((tree, node), index).is_some() {
                return Err(format!("node {node} of tree {tree} is listed twice"));
            }
        }
        let mut nodes = Vec::with_capacity(count);
        let mut rules = Vec::with_capacity(count);
        for at in 0..count {
            let mode = Mode::read(modes[at])?;
            let tree = tree_ids[at];
            let child = |id: i64| match position.get(&(tree, id)) {
                Some(&child) if child > at => Ok(numbered(child)),
                _ => Err(format!("node {} of tree {tree} has child {id}", node_ids[at])),
            };
            let next = match mode {
                Mode::Leaf => [0, 0],
                _ => [child(true_ids[at])?, child(false_ids[at])?],
            };
            let feature = usize::try_from(features[at]).ok().filter(|&f| f < columns);
            let feature = match (mode, feature) {
                (Mode::Leaf, _) => LEAF,
                (_, Some(feature)) => numbered(feature),
                (_, None) => return Err(format!("feature {} of {columns}", features[at])),
            };
            nodes.push(TreeNode { feature, threshold: thresholds[at], next });
            rules.push(Rule { mode, missing_true: missing.get(at).is_some_and(|&m| m != 0) });
        }

        // Each leaf's weights, in the graph's order.
        let mut by_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); count];
        for entry in 0..weight_trees.len() {
            let leaf = position.get(&(weight_trees[entry], weight_nodes[entry]));
            let leaf = leaf.copied().filter(|&leaf| nodes[leaf].feature == LEAF);
            let output = usize::try_from(weight_ids[entry]).ok().filter(|&o| o < outputs);
            let (Some(leaf), Some(output)) = (leaf, output) else {
                return Err(format!("weight {entry} is not of a leaf and an output"));
            };
            by_leaf[leaf].push((numbered(output), weight_values[entry]));
        }
        let mut weights = Vec::with_capacity(weight_trees.len());
        for (node, leaf_weights) in nodes.iter_mut().zip(by_leaf) {
            if node.feature == LEAF {
                if leaf_weights.is_empty() {
                    return Err("a leaf without weights".into());
                }
                node.next = [numbered(weights.len()), numbered(weights.len() + leaf_weights.len())];
                weights.extend(leaf_weights);
            }
        }
        let only_leq = rules
            .iter()
            .all(|rule| rule.mode == Mode::Leaf || (rule.mode == Mode::Leq && !rule.missing_true));
        let leaves = nodes.iter().filter(|node| node.feature == LEAF);
        let dense = leaves
            .map(|leaf| weights[leaf.weights()].iter().map(|&(output, _)| output as usize))
            .all(|outputs_weighed| outputs_weighed.eq(0..outputs));
        Ok(Self { nodes, rules, roots, weights, only_leq, dense })
    }

    /// The (feature, threshold) of every branch: where probe rows should look.
    fn thresholds(&self) -> Vec<(usize, f32)> {
        let branches = self.nodes.iter().filter(|node| node.feature != LEAF);
        branches.map(|node| (node.feature as usize, node.threshold)).collect()
    }

    /// Adds the weights of the leaf that row `x` reaches in each tree to `sums`, in the trees'
    /// order, and marks the outputs that got one in `scored`.
    fn add_leaves(&self, x: &[f32], sums: &mut [f32], scored: &mut [bool]) {
        // A NaN is not `<=` any threshold: it goes the false way, as `Rule::goes_true` sends it.
        let leq = |_, node: &TreeNode, value: f32| value <= node.threshold;
        let ruled =
            |at: usize, node: &TreeNode, value| self.rules[at].goes_true(node.threshold, value);
        match (self.only_leq, self.dense) {
            (true, true) => self.add_leaves_by(x, leq, |weights| add_dense(sums, weights)),
            (true, false) => self.add_leaves_by(x, leq, |weights| add(sums, scored, weights)),
            (false, true) => self.add_leaves_by(x, ruled, |weights| add_dense(sums, weights)),
            (false, false) => self.add_leaves_by(x, ruled, |weights| add(sums, scored, weights)),
        }
        if self.dense {
            // Every tree's leaf weighed every output.
            scored.fill(true);
        }
    }

    /// [`Forest::add_leaves`] with `goes_true` deciding each branch (given the node's index)
    /// and `add` adding each leaf's weights: a walk the compiler writes out for each, without
    /// reading every branch's rule and every weight's output where the forest does not need
    /// it.
    fn add_leaves_by(
        &self,
        x: &[f32],
        goes_true: impl Fn(usize, &TreeNode, f32) -> bool,
        mut add: impl FnMut(&[(u32, f32)]),
    ) {
        for &root in &self.roots {
            let mut at = root as usize;
            let mut node = &self.nodes[at];
            while node.feature != LEAF {
                let true_way = goes_true(at, node, x[node.feature as usize]);
                at = node.next[usize::from(!true_way)] as usize;
                node = &self.nodes[at];
            }
            add(&self.weights[node.weights()]);
        }
    }

    /// Runs the forest on the rows of `input`, `columns` numbers each: each row's sums over
    /// its `outputs`, then `finish` on the row's sums and the outputs that got a weight.
    fn run(
        &self,
        input: &[f32],
        columns: usize,
        outputs: usize,
        mut finish: impl FnMut(&mut [f32], &mut [bool]),
    ) -> Vec<f32> {
        let rows = input.len() / columns;
        let mut sums = vec![0.0f32; rows * outputs];
        let mut scored = vec![false; outputs];
        for (x, row) in input.chunks_exact(columns).zip(sums.chunks_exact_mut(outputs)) {
            scored.fill(false);
            self.add_leaves(x, row, &mut scored);
            finish(row, &mut scored);
        }
        sums
    }
}

/// Adds a leaf's `weights` to the `sums` of their outputs, and marks those outputs `scored`.
fn add(sums: &mut [f32], scored: &mut [bool], weights: &[(u32, f32)]) {
    for &(output, weight) in weights {
        sums[output as usize] += weight;
        scored[output as usize] = true;
    }
}

/// Adds a leaf's `weights`, one for every output in order, to `sums`.
fn add_dense(sums: &mut [f32], weights: &[(u32, f32)]) {
    for (sum, &(_, weight)) in sums.iter_mut().zip(weights) {
        *sum += weight;
    }
}

/// `TreeEnsembleClassifier`: each tree's leaf adds its weights to its classes' scores, base
/// values are added (a class no leaf weighed scores its base value), the label is the highest
/// class that got a score, then the transform.
///
/// Of two classes, it is the forest skl2onnx writes for scikit-learn's binary models: every
/// weight on class 0 and at most one base value, one score in all (see [`OneScore`]).
#[derive(Debug)]
pub(in crate::model::onnx_ml) struct TreeClassifier {
    forest: Forest,
    base_values: Vec<f32>,
    labels: Labels,
    post: PostTransform,
    /// For a forest of two classes, how its one score becomes its label and two scores.
    one_score: Option<OneScore>,
}

/// How ONNX Runtime 1.31 writes a binary forest's one score `s` (its `binary_case_`): when no
/// weight is negative (a random forest's probabilities), the label is the second class if
/// `s > 0.5` and the scores are [`second_class_scores`]; otherwise (boosted trees' margins) the
/// label is the second class if `s > 0`, and the scores `[logistic(-s), logistic(s)]` under
/// LOGISTIC, else `[-s, s]`.
#[derive(Debug, Clone, Copy)]
struct OneScore {
    weights_are_positive: bool,
}

impl OneScore {
    /// The label's index and the two scores of score `s` under `post`.
    fn finish(self, s: f32, post: PostTransform) -> (usize, [f32; 2]) {
        if self.weights_are_positive {
            return (usize::from(s > 0.5), second_class_scores(s, post));
        }
        let scores = match post {
            PostTransform::Logistic => [logistic(-s), logistic(s)],
            PostTransform::None | PostTransform::Softmax => [-s, s],
        };
        (usize::from(s > 0.0), scores)
    }
}

impl TreeClassifier {
    pub(super) fn read(attributes: &Attributes<'_>, columns: usize) -> Result<Self, Unsupported> {
        let labels = Labels::read(attributes, "classlabels_int64s", 2)?;
        let post = PostTransform::read(attributes)?;
        let base_values = attributes.floats("base_values").to_vec();
        let forest = Forest::read(attributes, columns, CLASS_WEIGHTS, labels.len())?;
        // One base value a class, or one for a forest of two classes' one score.
        let bases = base_values.len();
        if !(bases == 0 || bases == labels.len() || (labels.len() == 2 && bases == 1)) {
            return Err(format!("{bases} base values for {} classes", labels.len()));
        }
        let one_score = if labels.len() == 2 {
            if forest.weights.iter().any(|&(class, _)| class != 0) || bases == 2 {
                return Err("a forest of two classes that weighs the second class or has two \
                            base values (ONNX Runtime's rules for it are not followed here)"
                    .into());
            }
            let weights_are_positive = !forest.weights.iter().any(|&(_, weight)| weight < 0.0);
            Some(OneScore { weights_are_positive })
        } else {
            None
        };
        Ok(Self { forest, base_values, labels, post, one_score })
    }

    pub(super) fn labels(&self) -> &Labels {
        &self.labels
    }

    pub(super) fn thresholds(&self) -> Vec<(usize, f32)> {
        self.forest.thresholds()
    }

    pub(super) fn run(&self, input: &[f32], rows: usize, columns: usize) -> Written {
        let mut labels = Vec::with_capacity(rows);
        let scores = self.forest.run(input, columns, self.labels.len(), |row, scored| {
            for (class, &base) in self.base_values.iter().enumerate() {
                row[class] = if scored[class] { row[class] + base } else { base };
                scored[class] = true;
            }
            if let Some(one_score) = self.one_score {
                let (label, scores) = one_score.finish(row[0], self.post);
                labels.push(label);
                row.copy_from_slice(&scores);
                return;
            }
            // Every tree ends in a leaf with weights, so some class has a score.
            labels.push(highest(row, |class| scored[class]).unwrap_or(0));
            self.post.apply(row, logistic);
        });
        Written::Classified { labels, scores }
    }
}

/// `TreeEnsembleRegressor` summing its trees (`aggregate_function` SUM, as skl2onnx writes
/// scikit-learn's forests and boosted trees, a forest's weights already divided by its size),
/// without a transform: each target's leaf weights summed over the trees, plus its base
/// value; a target no leaf weighed is 0, as ONNX Runtime 1.31 writes it.
#[derive(Debug)]
pub(in crate::model::onnx_ml) struct TreeRegressor {
    forest: Forest,
    base_values: Vec<f32>,
    pub(super) targets: usize,
}

impl TreeRegressor {
    pub(super) fn read(attributes: &Attributes<'_>, columns: usize) -> Result<Self, Unsupported> {
        let targets = attributes.int("n_targets").unwrap_or(1);
        let Some(targets) = usize::try_from(targets).ok().filter(|&t| t > 0) else {
            return Err(format!("{targets} targets"));
        };
        attributes.only("aggregate_function", "SUM")?;
        attributes.only("post_transform", "NONE")?;
        let base_values = attributes.floats("base_values").to_vec();
        if !(base_values.is_empty() || base_values.len() == targets) {
            return Err(format!("{} base values for {targets} targets", base_values.len()));
        }
        let forest = Forest::read(attributes, columns, TARGET_WEIGHTS, targets)?;
        Ok(Self { forest, base_values, targets })
    }

    pub(super) fn thresholds(&self) -> Vec<(usize, f32)> {
        self.forest.thresholds()
    }

    pub(super) fn run(&self, input: &[f32], columns: usize) -> Vec<f32> {
        self.forest.run(input, columns, self.targets, |row, scored| {
            for ((value, &base), &scored) in row.iter_mut().zip(&self.base_values).zip(&*scored) {
                if scored {
                    *value += base;
                }
            }
        })
    }
}
