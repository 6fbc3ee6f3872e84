//! Golden examples: before a version is adopted, it runs the inputs its manifest lists and
//! its outputs are compared with what the trainer's runtime gave for them. A broken export, a
//! runtime that computes differently or a file swapped for another model's all show here,
//! before a request sees them.

use std::path::Path;

use serde_json::Value;

use super::{Model, OutputSet};
use crate::error::{Error, Result};
use crate::manifest::{Golden, GoldenTensor};
use crate::protocol::tensor_data::{JsonData, from_json};
use crate::tensor::{Tensor, Tensors};

/// Runs every golden example of `model`'s manifest and fails, naming the first value out of
/// tolerance, when an output differs; `manifest` is where the manifest was read from, for the
/// error. A manifest without examples passes.
pub(super) async fn check(model: &Model, manifest: &Path) -> Result<()> {
    let error = |detail: String| {
        Error::artifact(
            manifest,
            format!("the version does not reproduce its golden outputs: {detail}"),
        )
    };
    let Some(golden) = &model.manifest().golden else { return Ok(()) };
    let count = golden.examples.len();
    for (index, example) in golden.examples.iter().enumerate() {
        let which = format!("golden example {} of {count}", index + 1);
        let inputs = example
            .inputs
            .iter()
            .map(|(name, tensor)| {
                let tensor = tensor_of(tensor)
                    .map_err(|e| error(format!("{which}: input `{name}`: {e}")))?;
                Ok((name.clone(), tensor))
            })
            .collect::<Result<Tensors>>()?;
        let ran = model
            .infer(inputs, OutputSet::ALL)
            .await
            .map_err(|e| error(format!("{which} failed: {e}")))?;
        for (name, expected) in &example.outputs {
            let actual = ran
                .tensors
                .get(name)
                .ok_or_else(|| error(format!("{which}: the model gives no output `{name}`")))?;
            compare(actual, expected, golden)
                .map_err(|detail| error(format!("{which}: output `{name}` {detail}")))?;
        }
    }
    Ok(())
}

fn tensor_of(tensor: &GoldenTensor) -> Result<Tensor, String> {
    from_json(tensor.datatype, &tensor.shape, &tensor.data)
}

/// Ok when `actual` has `expected`'s datatype and shape and every value within tolerance; else
/// what differs, with the first value out of tolerance and how many are.
fn compare(actual: &Tensor, expected: &GoldenTensor, golden: &Golden) -> Result<(), String> {
    if actual.datatype() != expected.datatype || actual.shape() != expected.shape.as_slice() {
        return Err(format!(
            "is {} {:?}, expected {} {:?}",
            actual.datatype(),
            actual.shape(),
            expected.datatype,
            expected.shape
        ));
    }
    let expected_values = tensor_of(expected)?;
    let flat = |tensor: &Tensor| match serde_json::to_value(JsonData(tensor)) {
        Ok(Value::Array(values)) => values,
        _ => Vec::new(),
    };
    let (actual, expected) = (flat(actual), flat(&expected_values));
    let outside: Vec<usize> =
        (0..expected.len()).filter(|&i| !within(&actual[i], &expected[i], golden)).collect();
    match outside.first() {
        None => Ok(()),
        Some(&first) => Err(format!(
            "differs at {} of {} values; the first, at flat index {first}, is {}, expected {} \
             (tolerance {} + {} x |expected|)",
            outside.len(),
            expected.len(),
            actual[first],
            expected[first],
            golden.absolute,
            golden.relative
        )),
    }
}

/// Whether one value is within tolerance of the expected one: numbers by distance (or
/// equality, for infinities), anything else by equality.
fn within(actual: &Value, expected: &Value, golden: &Golden) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(e)) => {
            a == e || (a - e).abs() <= golden.absolute + golden.relative * e.abs()
        }
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::GoldenExample;

    fn golden(absolute: f64, relative: f64) -> Golden {
        Golden { absolute, relative, examples: Vec::<GoldenExample>::new() }
    }

    fn expected(data: Value) -> GoldenTensor {
        GoldenTensor { datatype: crate::DataType::Fp32, shape: vec![1, 3], data }
    }

    #[test]
    fn values_within_tolerance_pass_and_the_first_outside_is_named() {
        let actual = Tensor::from(ndarray::arr2(&[[0.25f32, 0.5, 100.0]]));
        let close = expected(serde_json::json!([[0.25005, 0.5, 100.0]]));
        assert_eq!(compare(&actual, &close, &golden(1e-4, 0.0)), Ok(()));
        let far = expected(serde_json::json!([0.25, 0.75, 101.0]));
        let error = compare(&actual, &far, &golden(1e-4, 0.0)).unwrap_err();
        assert!(error.contains("2 of 3 values") && error.contains("flat index 1"), "{error}");
        assert!(error.contains("0.5") && error.contains("0.75"), "{error}");
        // A relative tolerance lets large values move by their share.
        let error = compare(&actual, &far, &golden(1e-4, 0.011)).unwrap_err();
        assert!(error.contains("1 of 3 values") && error.contains("flat index 1"), "{error}");
    }

    #[test]
    fn a_different_shape_or_datatype_fails_however_close_the_values() {
        let actual = Tensor::from(ndarray::arr2(&[[1i64, 2, 3]]));
        let error = compare(&actual, &expected(serde_json::json!([1, 2, 3])), &golden(1.0, 0.0))
            .unwrap_err();
        assert!(error.contains("INT64 [1, 3], expected FP32 [1, 3]"), "{error}");
        let labels = GoldenTensor {
            datatype: crate::DataType::Int64,
            shape: vec![3],
            data: serde_json::json!([1, 2, 3]),
        };
        let error = compare(&actual, &labels, &golden(1.0, 0.0)).unwrap_err();
        assert!(error.contains("[1, 3], expected INT64 [3]"), "{error}");
    }

    #[test]
    fn text_must_be_equal() {
        let actual = Tensor::from(ndarray::arr1(&["cat".to_string(), "dog".to_string()]));
        let text = |a: &str, b: &str| GoldenTensor {
            datatype: crate::DataType::Bytes,
            shape: vec![2],
            data: serde_json::json!([a, b]),
        };
        assert_eq!(compare(&actual, &text("cat", "dog"), &golden(1.0, 1.0)), Ok(()));
        let error = compare(&actual, &text("cat", "cow"), &golden(1.0, 1.0)).unwrap_err();
        assert!(error.contains("\"dog\", expected \"cow\""), "{error}");
    }
}
