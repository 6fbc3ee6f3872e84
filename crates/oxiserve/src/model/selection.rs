//! Which of a model's outputs a run produces.
//!
//! A pipeline that reads only some of a model's outputs (a classifier's probabilities, not
//! its label) asks for those alone with
//! [`Inference::run_outputs`](crate::Inference::run_outputs), and a KServe v2 request that
//! names its outputs does the same. ONNX Runtime then neither produces nor copies the others
//! (for the tabular models, a tenth of a run's cost), and a remote server is asked for those
//! alone. Jobs batched together run with the union of their selections; each gets back only
//! its own.

use crate::manifest::TensorSpec;
use crate::tensor::Tensors;

/// A set of a model's outputs, by their position in the manifest. Positions from the 64th on
/// share the last bit: asking for one of them asks for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputSet(u64);

impl OutputSet {
    /// Every output.
    pub(crate) const ALL: Self = Self(u64::MAX);

    /// The outputs of `specs` called `names`; the error is the first name that is not one of
    /// them.
    pub(crate) fn named<'a>(
        specs: &[TensorSpec],
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, &'a str> {
        names.into_iter().try_fold(Self(0), |set, name| {
            let index = specs.iter().position(|spec| spec.name == name).ok_or(name)?;
            Ok(Self(set.0 | bit(index)))
        })
    }

    /// Whether the output at `index` in the manifest is in the set.
    pub(crate) fn contains(self, index: usize) -> bool {
        self.0 & bit(index) != 0
    }

    /// The outputs of either set.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the set holds every one of `specs`.
    pub(crate) fn covers(self, specs: &[TensorSpec]) -> bool {
        (0..specs.len()).all(|index| self.contains(index))
    }

    /// Removes from `tensors` the outputs of `specs` outside the set.
    pub(crate) fn keep(self, specs: &[TensorSpec], tensors: &mut Tensors) {
        if !self.covers(specs) {
            tensors.retain(|name, _| {
                specs.iter().position(|spec| spec.name == *name).is_none_or(|i| self.contains(i))
            });
        }
    }
}

/// The bit of the output at `index`.
fn bit(index: usize) -> u64 {
    1 << index.min(63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, Tensor};

    fn specs(names: &[&str]) -> Vec<TensorSpec> {
        let spec = |name: &&str| TensorSpec {
            name: (*name).to_string(),
            datatype: DataType::Fp32,
            shape: vec![-1],
        };
        names.iter().map(spec).collect()
    }

    #[test]
    fn a_selection_names_outputs_of_the_manifest_only() {
        let specs = specs(&["label", "probabilities"]);
        let probabilities = OutputSet::named(&specs, ["probabilities"]).unwrap();
        assert!(probabilities.contains(1) && !probabilities.contains(0));
        assert!(!probabilities.covers(&specs));
        assert!(probabilities.union(OutputSet::named(&specs, ["label"]).unwrap()).covers(&specs));
        assert!(OutputSet::ALL.covers(&specs));
        assert_eq!(OutputSet::named(&specs, ["probabilities", "logits"]), Err("logits"));
    }

    #[test]
    fn keeping_a_selection_drops_the_other_outputs_of_the_manifest() {
        let specs = specs(&["label", "probabilities"]);
        let row = || Tensor::from(ndarray::arr1(&[1.0_f32]).into_dyn());
        let mut tensors: Tensors =
            [("label".to_string(), row()), ("probabilities".to_string(), row())].into();
        OutputSet::named(&specs, ["probabilities"]).unwrap().keep(&specs, &mut tensors);
        assert_eq!(tensors.keys().collect::<Vec<_>>(), ["probabilities"]);
    }

    #[test]
    fn outputs_past_the_64th_are_asked_for_together() {
        let names: Vec<String> = (0..70).map(|i| format!("o{i}")).collect();
        let specs = specs(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let set = OutputSet::named(&specs, ["o65"]).unwrap();
        assert!(set.contains(63) && set.contains(69) && !set.contains(62));
    }
}
