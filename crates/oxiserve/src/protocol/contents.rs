//! Typed tensor contents (`InferTensorContents`), the gRPC alternative to raw bytes: one
//! repeated field per element type, row major.

use ndarray::{ArrayD, IxDyn};

use super::proto::inference::InferTensorContents;
use crate::tensor::{DataType, Tensor};

/// A tensor of `datatype` and `shape` from the contents field of its type. The protocol
/// carries 8 and 16-bit integers widened in `int_contents` and `uint_contents`; values that do
/// not fit the datatype are refused.
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
    fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
        shape: &[usize],
        values: Vec<W>,
        field: &str,
        datatype: DataType,
    ) -> Result<ArrayD<T>, String> {
        let narrowed = values
            .into_iter()
            .map(|v| T::try_from(v).map_err(|_| format!("{v} in `{field}` is not a {datatype}")))
            .collect::<Result<Vec<T>, String>>()?;
        array(shape, narrowed, field)
    }
    let c = contents;
    Ok(match datatype {
        DataType::Bool => Tensor::Bool(array(shape, c.bool_contents, "bool_contents")?),
        DataType::Uint8 => Tensor::U8(narrow(shape, c.uint_contents, "uint_contents", datatype)?),
        DataType::Uint16 => Tensor::U16(narrow(shape, c.uint_contents, "uint_contents", datatype)?),
        DataType::Uint32 => Tensor::U32(array(shape, c.uint_contents, "uint_contents")?),
        DataType::Uint64 => Tensor::U64(array(shape, c.uint64_contents, "uint64_contents")?),
        DataType::Int8 => Tensor::I8(narrow(shape, c.int_contents, "int_contents", datatype)?),
        DataType::Int16 => Tensor::I16(narrow(shape, c.int_contents, "int_contents", datatype)?),
        DataType::Int32 => Tensor::I32(array(shape, c.int_contents, "int_contents")?),
        DataType::Int64 => Tensor::I64(array(shape, c.int64_contents, "int64_contents")?),
        DataType::Fp32 => Tensor::F32(array(shape, c.fp32_contents, "fp32_contents")?),
        DataType::Fp64 => Tensor::F64(array(shape, c.fp64_contents, "fp64_contents")?),
        DataType::Fp16 => return Err("FP16 travels only as raw_input_contents".into()),
        DataType::Bytes => {
            let text = c
                .bytes_contents
                .into_iter()
                .map(|bytes| {
                    String::from_utf8(bytes).map_err(|_| "BYTES elements must be UTF-8 text")
                })
                .collect::<Result<Vec<String>, _>>()?;
            Tensor::Text(array(shape, text, "bytes_contents")?)
        }
    })
}

/// The contents holding `tensor`'s elements (8 and 16-bit integers widened); `None` for FP16,
/// which the protocol carries as raw contents only.
#[cfg(feature = "grpc")]
pub(crate) fn write(tensor: &Tensor) -> Option<InferTensorContents> {
    fn values<T: Copy, W: From<T>>(array: &ArrayD<T>) -> Vec<W> {
        array.iter().map(|&x| W::from(x)).collect()
    }
    let mut c = InferTensorContents::default();
    match tensor {
        Tensor::Bool(a) => c.bool_contents = values(a),
        Tensor::U8(a) => c.uint_contents = values(a),
        Tensor::U16(a) => c.uint_contents = values(a),
        Tensor::U32(a) => c.uint_contents = values(a),
        Tensor::U64(a) => c.uint64_contents = values(a),
        Tensor::I8(a) => c.int_contents = values(a),
        Tensor::I16(a) => c.int_contents = values(a),
        Tensor::I32(a) => c.int_contents = values(a),
        Tensor::I64(a) => c.int64_contents = values(a),
        Tensor::F32(a) => c.fp32_contents = values(a),
        Tensor::F64(a) => c.fp64_contents = values(a),
        Tensor::F16(_) => return None,
        Tensor::Text(a) => c.bytes_contents = a.iter().map(|t| t.clone().into_bytes()).collect(),
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "grpc")]
    #[test]
    fn contents_round_trip_and_must_fill_the_shape() {
        let tensor = Tensor::from(ndarray::arr2(&[[1i64, 2, 3], [4, 5, 6]]));
        let contents = write(&tensor).unwrap();
        assert_eq!(contents.int64_contents, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(read(DataType::Int64, &[2, 3], contents.clone()).unwrap(), tensor);
        let error = read(DataType::Int64, &[4, 3], contents.clone()).unwrap_err();
        assert!(error.contains("[4, 3]") && error.contains("6 values"), "{error}");
        // Values in another type's field do not count.
        let error = read(DataType::Fp32, &[2, 3], contents).unwrap_err();
        assert!(error.contains("fp32_contents"), "{error}");
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn small_integers_travel_widened_and_must_fit() {
        let tensor = Tensor::from(ndarray::arr1(&[-128i8, 0, 127]));
        let contents = write(&tensor).unwrap();
        assert_eq!(contents.int_contents, vec![-128, 0, 127]);
        assert_eq!(read(DataType::Int8, &[3], contents).unwrap(), tensor);
        let too_big = InferTensorContents { uint_contents: vec![256], ..Default::default() };
        let error = read(DataType::Uint8, &[1], too_big).unwrap_err();
        assert!(error.contains("256") && error.contains("UINT8"), "{error}");
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn text_travels_as_bytes_contents() {
        let text = Tensor::from(ndarray::arr1(&["penguin".to_string(), String::new()]));
        let contents = write(&text).unwrap();
        assert_eq!(contents.bytes_contents, vec![b"penguin".to_vec(), Vec::new()]);
        assert_eq!(read(DataType::Bytes, &[2], contents).unwrap(), text);
        let binary = InferTensorContents { bytes_contents: vec![vec![0xff]], ..Default::default() };
        assert!(read(DataType::Bytes, &[1], binary).unwrap_err().contains("UTF-8"));
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn half_precision_has_no_typed_form() {
        let halves = Tensor::from(ndarray::arr1(&[half::f16::ONE]));
        assert!(write(&halves).is_none());
        let error = read(DataType::Fp16, &[1], InferTensorContents::default()).unwrap_err();
        assert!(error.contains("raw"), "{error}");
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;
        use crate::hostile;

        /// Typed contents with a few values in any field.
        fn contents() -> impl Strategy<Value = InferTensorContents> {
            let few = || 0..6usize;
            (
                prop::collection::vec(any::<bool>(), few()),
                prop::collection::vec(any::<i32>(), few()),
                prop::collection::vec(any::<i64>(), few()),
                prop::collection::vec(any::<u32>(), few()),
                prop::collection::vec(any::<u64>(), few()),
                prop::collection::vec(any::<f32>(), few()),
                prop::collection::vec(any::<f64>(), few()),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), few()),
            )
                .prop_map(|(b, i, i64s, u, u64s, f32s, f64s, bytes)| {
                    InferTensorContents {
                        bool_contents: b,
                        int_contents: i,
                        int64_contents: i64s,
                        uint_contents: u,
                        uint64_contents: u64s,
                        fp32_contents: f32s,
                        fp64_contents: f64s,
                        bytes_contents: bytes,
                    }
                })
        }

        proptest! {
            #[test]
            fn typed_contents_decode_to_their_shape_or_are_refused(
                datatype in hostile::datatype(),
                shape in hostile::shape(),
                contents in contents(),
            ) {
                if let Ok(tensor) = read(datatype, &shape, contents) {
                    prop_assert_eq!(tensor.shape(), &shape[..]);
                    prop_assert_eq!(tensor.datatype(), datatype);
                }
            }
        }
    }
}
