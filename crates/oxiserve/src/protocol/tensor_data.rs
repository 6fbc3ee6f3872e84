//! Tensor contents as the KServe v2 protocol carries them: JSON arrays of numbers (flat or
//! nested, row major), or raw little-endian bytes with no padding (HTTP's binary tensor data
//! extension, and gRPC's `raw_input_contents` / `raw_output_contents`).

use ndarray::{ArrayD, IxDyn};
use serde::ser::{Serialize, Serializer};
use serde_json::Value;

use crate::tensor::{DataType, Tensor, build_tensor, each_array};

/// An element type a [`Tensor`] can hold, with its wire forms.
trait Element: Sized {
    /// Bytes per element in raw form; `None` when elements carry their own length (`BYTES`).
    const SIZE: Option<usize>;
    /// Every element of raw bytes, in order.
    fn read_raw(bytes: &[u8]) -> Result<Vec<Self>, String>;
    /// Appends the element's raw bytes.
    fn put_le(&self, out: &mut Vec<u8>);
    /// The element from a JSON value, if it is one that fits.
    fn from_json(value: &Value) -> Option<Self>;
}

macro_rules! element {
    ($($elem:ty => $json:expr),* $(,)?) => {$(
        impl Element for $elem {
            const SIZE: Option<usize> = Some(std::mem::size_of::<$elem>());

            fn read_raw(bytes: &[u8]) -> Result<Vec<Self>, String> {
                let size = std::mem::size_of::<$elem>();
                Ok(bytes
                    .chunks_exact(size)
                    .map(|chunk| <$elem>::from_le_bytes(chunk.try_into().expect("chunks of SIZE")))
                    .collect())
            }

            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn from_json(value: &Value) -> Option<Self> {
                $json(value)
            }
        }
    )*};
}

/// A JSON integer that fits `T`.
fn integer<T: TryFrom<i64> + TryFrom<u64>>(value: &Value) -> Option<T> {
    match (value.as_i64(), value.as_u64()) {
        (Some(signed), _) => T::try_from(signed).ok(),
        (None, Some(unsigned)) => T::try_from(unsigned).ok(),
        _ => None,
    }
}

element!(
    u8 => integer::<u8>,
    u16 => integer::<u16>,
    u32 => integer::<u32>,
    u64 => integer::<u64>,
    i8 => integer::<i8>,
    i16 => integer::<i16>,
    i32 => integer::<i32>,
    i64 => integer::<i64>,
    half::f16 => |v: &Value| v.as_f64().map(half::f16::from_f64).filter(|x| x.is_finite()),
    f32 => |v: &Value| v.as_f64().map(|x| x as f32).filter(|x| x.is_finite()),
    f64 => Value::as_f64,
);

/// Booleans are one byte on the wire (0 or 1) and `true` / `false` in JSON.
impl Element for bool {
    const SIZE: Option<usize> = Some(1);

    fn read_raw(bytes: &[u8]) -> Result<Vec<Self>, String> {
        Ok(bytes.iter().map(|&byte| byte != 0).collect())
    }

    fn put_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn from_json(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

/// `BYTES` elements are a 4-byte little-endian length and the bytes on the wire, strings in
/// JSON; oxiserve holds them as UTF-8 text, as ONNX Runtime does.
impl Element for String {
    const SIZE: Option<usize> = None;

    fn read_raw(mut bytes: &[u8]) -> Result<Vec<Self>, String> {
        let mut elements = Vec::new();
        while !bytes.is_empty() {
            let (length, rest) = bytes
                .split_first_chunk::<4>()
                .ok_or("a BYTES element is cut short in its 4-byte length")?;
            let length = u32::from_le_bytes(*length) as usize;
            let (text, rest) = rest
                .split_at_checked(length)
                .ok_or_else(|| format!("a BYTES element of {length} bytes is cut short"))?;
            let text = std::str::from_utf8(text)
                .map_err(|_| "BYTES elements must be UTF-8 text".to_string())?;
            elements.push(text.to_string());
            bytes = rest;
        }
        Ok(elements)
    }

    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(self.as_bytes());
    }

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_string)
    }
}

/// The number of elements of `shape`.
fn elements(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |count, &d| count.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))
}

/// A tensor of `datatype` and `shape` from its raw little-endian bytes.
pub(crate) fn from_raw(
    datatype: DataType,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Tensor, String> {
    fn read<T: Element>(shape: &[usize], bytes: &[u8]) -> Result<ArrayD<T>, String> {
        let count = elements(shape)?;
        if let Some(size) = T::SIZE {
            let expected = count.checked_mul(size);
            if expected != Some(bytes.len()) {
                return Err(format!(
                    "shape {shape:?} needs {} bytes, {} were sent",
                    expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                    bytes.len()
                ));
            }
        }
        let values = T::read_raw(bytes)?;
        if values.len() != count {
            return Err(format!(
                "shape {shape:?} holds {count} elements, {} were sent",
                values.len()
            ));
        }
        ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| e.to_string())
    }
    build_tensor!(datatype, read(shape, bytes))
}

/// A tensor of `datatype` and `shape` from a JSON `data` value: an array of numbers, flat or
/// nested, in row-major order.
pub(crate) fn from_json(
    datatype: DataType,
    shape: &[usize],
    data: &Value,
) -> Result<Tensor, String> {
    fn read<T: Element>(
        datatype: DataType,
        shape: &[usize],
        data: &Value,
    ) -> Result<ArrayD<T>, String> {
        // The declared shape is the client's word; what was sent decides what is allocated.
        let count = elements(shape)?;
        let sent = leaves(data);
        if sent != count {
            return Err(format!("shape {shape:?} holds {count} elements, `data` has {sent}"));
        }
        let mut values = Vec::with_capacity(count);
        flatten(data, &mut |leaf| {
            let value = T::from_json(leaf)
                .ok_or_else(|| format!("{leaf} is not a valid {datatype} value"))?;
            values.push(value);
            Ok(())
        })?;
        ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| e.to_string())
    }
    build_tensor!(datatype, read(datatype, shape, data))
}

/// The number of non-array values inside `value`.
fn leaves(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.iter().map(leaves).sum(),
        _ => 1,
    }
}

/// Calls `leaf` on every non-array value inside `value`, in order.
fn flatten(
    value: &Value,
    leaf: &mut impl FnMut(&Value) -> Result<(), String>,
) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, leaf)),
        other => leaf(other),
    }
}

/// Appends the tensor's raw little-endian bytes, row major.
pub(crate) fn write_raw(tensor: &Tensor, out: &mut Vec<u8>) {
    each_array!(tensor, array => array.iter().for_each(|x| x.put_le(out)));
}

/// The tensor's elements as a flat JSON array when serialised, in row-major order.
pub(crate) struct JsonData<'a>(pub(crate) &'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // half's own serde form is the bits; JSON wants the number.
        if let Tensor::F16(array) = self.0 {
            return serializer.collect_seq(array.iter().map(|x| x.to_f32()));
        }
        each_array!(self.0, array => serializer.collect_seq(array.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_round_trip_little_endian() {
        let tensor = Tensor::from(ndarray::arr2(&[[1.5f32, -2.0], [3.25, 0.0]]));
        let mut bytes = Vec::new();
        write_raw(&tensor, &mut bytes);
        assert_eq!(&bytes[..4], &1.5f32.to_le_bytes());
        assert_eq!(from_raw(DataType::Fp32, &[2, 2], &bytes).unwrap(), tensor);
        let error = from_raw(DataType::Fp32, &[2, 3], &bytes).unwrap_err();
        assert!(error.contains("24 bytes") && error.contains("16"), "{error}");
    }

    #[test]
    fn bytes_carry_their_own_lengths() {
        let text = Tensor::from(ndarray::arr1(&["".to_string(), "héllo".to_string()]));
        let mut bytes = Vec::new();
        write_raw(&text, &mut bytes);
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(from_raw(DataType::Bytes, &[2], &bytes).unwrap(), text);
        let error = from_raw(DataType::Bytes, &[2], &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(error.contains("cut short"), "{error}");
        let error = from_raw(DataType::Bytes, &[3], &bytes).unwrap_err();
        assert!(error.contains("3 elements"), "{error}");
        let error = from_raw(DataType::Bytes, &[1], &[1, 0, 0, 0, 0xff]).unwrap_err();
        assert!(error.contains("UTF-8"), "{error}");
    }

    #[test]
    fn json_data_may_be_flat_or_nested() {
        let expected = Tensor::from(ndarray::arr2(&[[1i64, 2], [3, 4]]));
        let flat = serde_json::json!([1, 2, 3, 4]);
        let nested = serde_json::json!([[1, 2], [3, 4]]);
        assert_eq!(from_json(DataType::Int64, &[2, 2], &flat).unwrap(), expected);
        assert_eq!(from_json(DataType::Int64, &[2, 2], &nested).unwrap(), expected);
        assert_eq!(serde_json::to_value(JsonData(&expected)).unwrap(), flat);
    }

    #[test]
    fn json_data_of_the_wrong_kind_or_count_is_refused() {
        let error = from_json(DataType::Int64, &[2], &serde_json::json!([1, 2.5])).unwrap_err();
        assert!(error.contains("2.5") && error.contains("INT64"), "{error}");
        let error = from_json(DataType::Int32, &[1], &serde_json::json!([1i64 << 40])).unwrap_err();
        assert!(error.contains("INT32"), "{error}");
        let error = from_json(DataType::Fp32, &[3], &serde_json::json!([1, 2])).unwrap_err();
        assert!(error.contains("3 elements") && error.contains("has 2"), "{error}");
        let error = from_json(DataType::Bytes, &[1], &serde_json::json!([1])).unwrap_err();
        assert!(error.contains("BYTES"), "{error}");
    }

    #[test]
    fn a_declared_shape_reserves_nothing_beyond_the_data_sent() {
        // Before the fix these reserved (or overflowed computing) capacity for the declared
        // shape: the first aborted the process, the second panicked.
        for shape in [[10_000_000_000_000_000, 9], [1_000_000_000_000_000_000, 9]] {
            let error = from_json(DataType::Fp32, &shape, &serde_json::json!([])).unwrap_err();
            assert!(error.contains("has 0"), "{error}");
        }
        let error =
            from_json(DataType::Fp32, &[usize::MAX, 2], &serde_json::json!([1.0])).unwrap_err();
        assert!(error.contains("too large"), "{error}");
    }

    #[test]
    fn json_numbers_outside_a_float_type_are_refused() {
        let error = from_json(DataType::Fp32, &[2], &serde_json::json!([1.0, 1e39])).unwrap_err();
        assert!(error.contains("FP32"), "{error}");
        let error = from_json(DataType::Fp16, &[1], &serde_json::json!([70000.0])).unwrap_err();
        assert!(error.contains("FP16"), "{error}");
        let max = from_json(DataType::Fp32, &[1], &serde_json::json!([3.4e38])).unwrap();
        assert_eq!(max.datatype(), DataType::Fp32);
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;
        use crate::hostile;

        proptest! {
            #[test]
            fn json_tensors_decode_to_their_shape_or_are_refused(
                datatype in hostile::datatype(),
                shape in hostile::shape(),
                data in hostile::json(),
            ) {
                if let Ok(tensor) = from_json(datatype, &shape, &data) {
                    prop_assert_eq!(tensor.shape(), &shape[..]);
                    prop_assert_eq!(tensor.datatype(), datatype);
                }
            }

            #[test]
            fn raw_tensors_decode_to_the_bytes_sent_or_are_refused(
                datatype in hostile::datatype(),
                shape in hostile::shape(),
                bytes in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                if let Ok(tensor) = from_raw(datatype, &shape, &bytes) {
                    prop_assert_eq!(tensor.shape(), &shape[..]);
                    let mut written = Vec::new();
                    write_raw(&tensor, &mut written);
                    // Booleans are any non-zero byte on the wire, 1 when written back.
                    if datatype != DataType::Bool {
                        prop_assert_eq!(written, bytes);
                    }
                }
            }
        }
    }
}
