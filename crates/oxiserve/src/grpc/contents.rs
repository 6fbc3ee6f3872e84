//! Typed tensor contents (`InferTensorContents`), the gRPC alternative to raw bytes: one
//! repeated field per element type, row major.

use ndarray::{ArrayD, IxDyn};

use super::proto::inference::InferTensorContents;
use crate::tensor::{DataType, Tensor};

/// A tensor of `datatype` and `shape` from the contents field of its type.
pub(crate) fn read(
    datatype: DataType,
    shape: &[usize],
    contents: InferTensorContents,
) -> Result<Tensor, String> {
    fn array<T>(shape: &[usize], values: Vec<T>, field: &str) -> Result<ArrayD<T>, String> {
        let count = values.len();
        ArrayD::from_shape_vec(IxDyn(shape), values)
            .map_err(|_| format!("shape {shape:?} does not fit the {count} values of `{field}`"))
    }
    Ok(match datatype {
        DataType::Fp32 => Tensor::F32(array(shape, contents.fp32_contents, "fp32_contents")?),
        DataType::Fp64 => Tensor::F64(array(shape, contents.fp64_contents, "fp64_contents")?),
        DataType::Int32 => Tensor::I32(array(shape, contents.int_contents, "int_contents")?),
        DataType::Int64 => Tensor::I64(array(shape, contents.int64_contents, "int64_contents")?),
        other => return Err(format!("{other} tensors are not supported yet")),
    })
}

/// The contents holding `tensor`'s elements.
pub(crate) fn write(tensor: &Tensor) -> InferTensorContents {
    fn values<T: Copy>(array: &ArrayD<T>) -> Vec<T> {
        array.iter().copied().collect()
    }
    match tensor {
        Tensor::F32(a) => InferTensorContents { fp32_contents: values(a), ..Default::default() },
        Tensor::F64(a) => InferTensorContents { fp64_contents: values(a), ..Default::default() },
        Tensor::I32(a) => InferTensorContents { int_contents: values(a), ..Default::default() },
        Tensor::I64(a) => InferTensorContents { int64_contents: values(a), ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_round_trip_and_must_fill_the_shape() {
        let tensor = Tensor::from(ndarray::arr2(&[[1i64, 2, 3], [4, 5, 6]]));
        let contents = write(&tensor);
        assert_eq!(contents.int64_contents, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(read(DataType::Int64, &[2, 3], contents.clone()).unwrap(), tensor);
        let error = read(DataType::Int64, &[4, 3], contents.clone()).unwrap_err();
        assert!(error.contains("[4, 3]") && error.contains("6 values"), "{error}");
        // Values in another type's field do not count.
        let error = read(DataType::Fp32, &[2, 3], contents).unwrap_err();
        assert!(error.contains("fp32_contents"), "{error}");
    }
}
