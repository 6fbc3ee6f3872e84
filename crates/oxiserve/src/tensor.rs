//! Tensors as pipelines see them: owned n-dimensional arrays tagged with their element type.
//!
//! [`Tensor`] is backend-neutral, so the same pipeline code feeds ONNX Runtime today and a
//! remote KServe v2 server later. [`DataType`] uses the KServe v2 names (`FP32`, `INT64`, ...),
//! which is also how manifests spell them.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{ArrayD, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Named tensors: the inputs of one model run, or its outputs.
pub type Tensors = BTreeMap<String, Tensor>;

/// Element type of a tensor, named as in the KServe v2 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    /// Boolean.
    Bool,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Unsigned 16-bit integer.
    Uint16,
    /// Unsigned 32-bit integer.
    Uint32,
    /// Unsigned 64-bit integer.
    Uint64,
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// 16-bit float.
    Fp16,
    /// 32-bit float.
    Fp32,
    /// 64-bit float.
    Fp64,
    /// Byte strings (text).
    Bytes,
}

impl DataType {
    /// The datatype a protocol name (`FP32`, `INT64`, ...) stands for.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::from(name)).ok()
    }

    /// Bytes per element in memory; `None` for text, whose elements have lengths of their own.
    pub(crate) fn element_bytes(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => Some(1),
            Self::Uint16 | Self::Int16 | Self::Fp16 => Some(2),
            Self::Uint32 | Self::Int32 | Self::Fp32 => Some(4),
            Self::Uint64 | Self::Int64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).expect("a unit enum variant serialises to a string");
        f.write_str(name.as_str().expect("a unit enum variant serialises to a string"))
    }
}

/// An owned tensor of one of the element types pipelines exchange with models: every KServe
/// datatype, `BYTES` as UTF-8 text (what ONNX Runtime's string tensors hold).
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// Booleans: masks, flags.
    Bool(ArrayD<bool>),
    /// Unsigned 8-bit integers: pixels, bytes.
    U8(ArrayD<u8>),
    /// Unsigned 16-bit integers.
    U16(ArrayD<u16>),
    /// Unsigned 32-bit integers.
    U32(ArrayD<u32>),
    /// Unsigned 64-bit integers.
    U64(ArrayD<u64>),
    /// Signed 8-bit integers: quantised values.
    I8(ArrayD<i8>),
    /// Signed 16-bit integers.
    I16(ArrayD<i16>),
    /// 32-bit integers.
    I32(ArrayD<i32>),
    /// 64-bit integers: class labels, token ids.
    I64(ArrayD<i64>),
    /// 16-bit floats: half-precision activations.
    F16(ArrayD<half::f16>),
    /// 32-bit floats: features, probabilities, embeddings.
    F32(ArrayD<f32>),
    /// 64-bit floats.
    F64(ArrayD<f64>),
    /// Text (KServe `BYTES` holding UTF-8).
    Text(ArrayD<String>),
}

/// Evaluates `$body` with `$array` bound to the typed array inside `$tensor`, whatever its
/// element type.
macro_rules! each_array {
    ($tensor:expr, $array:ident => $body:expr) => {
        match $tensor {
            $crate::tensor::Tensor::Bool($array) => $body,
            $crate::tensor::Tensor::U8($array) => $body,
            $crate::tensor::Tensor::U16($array) => $body,
            $crate::tensor::Tensor::U32($array) => $body,
            $crate::tensor::Tensor::U64($array) => $body,
            $crate::tensor::Tensor::I8($array) => $body,
            $crate::tensor::Tensor::I16($array) => $body,
            $crate::tensor::Tensor::I32($array) => $body,
            $crate::tensor::Tensor::I64($array) => $body,
            $crate::tensor::Tensor::F16($array) => $body,
            $crate::tensor::Tensor::F32($array) => $body,
            $crate::tensor::Tensor::F64($array) => $body,
            $crate::tensor::Tensor::Text($array) => $body,
        }
    };
}
pub(crate) use each_array;

/// A tensor of the same element type as `$tensor`, holding `$body` computed from its array.
macro_rules! map_array {
    ($tensor:expr, $array:ident => $body:expr) => {
        match $tensor {
            $crate::tensor::Tensor::Bool($array) => $crate::tensor::Tensor::Bool($body),
            $crate::tensor::Tensor::U8($array) => $crate::tensor::Tensor::U8($body),
            $crate::tensor::Tensor::U16($array) => $crate::tensor::Tensor::U16($body),
            $crate::tensor::Tensor::U32($array) => $crate::tensor::Tensor::U32($body),
            $crate::tensor::Tensor::U64($array) => $crate::tensor::Tensor::U64($body),
            $crate::tensor::Tensor::I8($array) => $crate::tensor::Tensor::I8($body),
            $crate::tensor::Tensor::I16($array) => $crate::tensor::Tensor::I16($body),
            $crate::tensor::Tensor::I32($array) => $crate::tensor::Tensor::I32($body),
            $crate::tensor::Tensor::I64($array) => $crate::tensor::Tensor::I64($body),
            $crate::tensor::Tensor::F16($array) => $crate::tensor::Tensor::F16($body),
            $crate::tensor::Tensor::F32($array) => $crate::tensor::Tensor::F32($body),
            $crate::tensor::Tensor::F64($array) => $crate::tensor::Tensor::F64($body),
            $crate::tensor::Tensor::Text($array) => $crate::tensor::Tensor::Text($body),
        }
    };
}

/// A tensor of `$datatype` from `$make::<T>(args)`, a generic function returning
/// `Result<ArrayD<T>, String>`, for every element type including `String` (`BYTES`).
macro_rules! build_tensor {
    ($datatype:expr, $make:ident($($arg:expr),*)) => {{
        use $crate::tensor::{DataType as D, Tensor as T};
        match $datatype {
            D::Bytes => $make::<String>($($arg),*).map(T::Text),
            other => $crate::tensor::build_numeric!(other, $make($($arg),*)),
        }
    }};
}
pub(crate) use build_tensor;

/// As [`build_tensor!`], for makers that only handle numbers and booleans: `BYTES` is an
/// error.
macro_rules! build_numeric {
    ($datatype:expr, $make:ident($($arg:expr),*)) => {{
        use $crate::tensor::{DataType as D, Tensor as T};
        match $datatype {
            D::Bool => $make::<bool>($($arg),*).map(T::Bool),
            D::Uint8 => $make::<u8>($($arg),*).map(T::U8),
            D::Uint16 => $make::<u16>($($arg),*).map(T::U16),
            D::Uint32 => $make::<u32>($($arg),*).map(T::U32),
            D::Uint64 => $make::<u64>($($arg),*).map(T::U64),
            D::Int8 => $make::<i8>($($arg),*).map(T::I8),
            D::Int16 => $make::<i16>($($arg),*).map(T::I16),
            D::Int32 => $make::<i32>($($arg),*).map(T::I32),
            D::Int64 => $make::<i64>($($arg),*).map(T::I64),
            D::Fp16 => $make::<half::f16>($($arg),*).map(T::F16),
            D::Fp32 => $make::<f32>($($arg),*).map(T::F32),
            D::Fp64 => $make::<f64>($($arg),*).map(T::F64),
            D::Bytes => Err("BYTES is not a numeric datatype".to_string()),
        }
    }};
}
pub(crate) use build_numeric;

impl Tensor {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            Tensor::Bool(_) => DataType::Bool,
            Tensor::U8(_) => DataType::Uint8,
            Tensor::U16(_) => DataType::Uint16,
            Tensor::U32(_) => DataType::Uint32,
            Tensor::U64(_) => DataType::Uint64,
            Tensor::I8(_) => DataType::Int8,
            Tensor::I16(_) => DataType::Int16,
            Tensor::I32(_) => DataType::Int32,
            Tensor::I64(_) => DataType::Int64,
            Tensor::F16(_) => DataType::Fp16,
            Tensor::F32(_) => DataType::Fp32,
            Tensor::F64(_) => DataType::Fp64,
            Tensor::Text(_) => DataType::Bytes,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        each_array!(self, a => a.shape())
    }

    /// A view of the data if the tensor holds `f32`, else an error naming both types.
    pub fn as_f32(&self) -> Result<ArrayViewD<'_, f32>> {
        match self {
            Tensor::F32(a) => Ok(a.view()),
            other => Err(other.mismatch(DataType::Fp32)),
        }
    }

    /// A view of the data if the tensor holds `i64`, else an error naming both types.
    pub fn as_i64(&self) -> Result<ArrayViewD<'_, i64>> {
        match self {
            Tensor::I64(a) => Ok(a.view()),
            other => Err(other.mismatch(DataType::Int64)),
        }
    }

    /// The size of the first (batch) dimension; 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }

    /// Stacks `parts` along the first dimension. They must share the element type and every
    /// other dimension.
    pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
        fn join<T: Clone>(views: Vec<ArrayViewD<'_, T>>) -> Result<ArrayD<T>> {
            contiguous_rows(&views).map_or_else(
                || {
                    ndarray::concatenate(Axis(0), &views)
                        .map_err(|e| Error::pipeline(format!("cannot batch tensors: {e}")))
                },
                Ok,
            )
        }
        let first = parts.first().ok_or_else(|| Error::pipeline("nothing to batch"))?;
        macro_rules! stack {
            ($variant:ident) => {{
                let views = parts
                    .iter()
                    .map(|t| match t {
                        Tensor::$variant(a) => Ok(a.view()),
                        other => Err(other.mismatch(first.datatype())),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::$variant(join(views)?)
            }};
        }
        Ok(match first {
            Tensor::Bool(_) => stack!(Bool),
            Tensor::U8(_) => stack!(U8),
            Tensor::U16(_) => stack!(U16),
            Tensor::U32(_) => stack!(U32),
            Tensor::U64(_) => stack!(U64),
            Tensor::I8(_) => stack!(I8),
            Tensor::I16(_) => stack!(I16),
            Tensor::I32(_) => stack!(I32),
            Tensor::I64(_) => stack!(I64),
            Tensor::F16(_) => stack!(F16),
            Tensor::F32(_) => stack!(F32),
            Tensor::F64(_) => stack!(F64),
            Tensor::Text(_) => stack!(Text),
        })
    }

    /// Rows `start..end` of the first dimension, copied.
    pub fn rows_range(&self, start: usize, end: usize) -> Tensor {
        self.slice_axis(0, start, end)
    }

    /// Entries `start..end` of dimension `axis`, copied.
    ///
    /// # Panics
    ///
    /// If `axis` is not a dimension or the range does not fit in it.
    pub fn slice_axis(&self, axis: usize, start: usize, end: usize) -> Tensor {
        let slice = ndarray::Slice::from(start..end);
        map_array!(self, a => a.slice_axis(Axis(axis), slice).to_owned())
    }

    /// The tensor lengthened to `length` along dimension `axis`, the new entries set to
    /// `value` (converted to the element type; empty text for `BYTES`). A tensor already that long is returned as is.
    pub fn pad_axis(&self, axis: usize, length: usize, value: f64) -> Result<Tensor> {
        fn pad<T: Clone>(array: &ArrayD<T>, axis: usize, length: usize, value: T) -> ArrayD<T> {
            let mut shape = array.shape().to_vec();
            let own = shape[axis];
            shape[axis] = length;
            let mut padded = ArrayD::from_elem(shape, value);
            padded.slice_axis_mut(Axis(axis), ndarray::Slice::from(0..own)).assign(array);
            padded
        }
        let own = *self.shape().get(axis).ok_or_else(|| {
            Error::pipeline(format!("cannot pad dimension {axis} of a {:?} tensor", self.shape()))
        })?;
        if own > length {
            return Err(Error::pipeline(format!("cannot pad length {own} down to {length}")));
        }
        Ok(match self {
            Tensor::Bool(a) => Tensor::Bool(pad(a, axis, length, value != 0.0)),
            Tensor::U8(a) => Tensor::U8(pad(a, axis, length, value as u8)),
            Tensor::U16(a) => Tensor::U16(pad(a, axis, length, value as u16)),
            Tensor::U32(a) => Tensor::U32(pad(a, axis, length, value as u32)),
            Tensor::U64(a) => Tensor::U64(pad(a, axis, length, value as u64)),
            Tensor::I8(a) => Tensor::I8(pad(a, axis, length, value as i8)),
            Tensor::I16(a) => Tensor::I16(pad(a, axis, length, value as i16)),
            Tensor::I32(a) => Tensor::I32(pad(a, axis, length, value as i32)),
            Tensor::I64(a) => Tensor::I64(pad(a, axis, length, value as i64)),
            Tensor::F16(a) => Tensor::F16(pad(a, axis, length, half::f16::from_f64(value))),
            Tensor::F32(a) => Tensor::F32(pad(a, axis, length, value as f32)),
            Tensor::F64(a) => Tensor::F64(pad(a, axis, length, value)),
            Tensor::Text(a) => Tensor::Text(pad(a, axis, length, String::new())),
        })
    }

    /// The tensor converted to `datatype`, element by element as Rust's `as` converts numbers
    /// (rounding toward zero into integers); itself when it already has that type. Used where
    /// a remote server's types differ from the manifest's (FP64 probabilities for FP32);
    /// between FP32, FP64, INT32 and INT64 only.
    pub fn cast(self, datatype: DataType) -> Result<Tensor> {
        macro_rules! convert {
            ($array:expr) => {
                match datatype {
                    DataType::Fp32 => Tensor::F32($array.mapv(|x| x as f32)),
                    DataType::Fp64 => Tensor::F64($array.mapv(|x| x as f64)),
                    DataType::Int32 => Tensor::I32($array.mapv(|x| x as i32)),
                    DataType::Int64 => Tensor::I64($array.mapv(|x| x as i64)),
                    other => {
                        return Err(Error::pipeline(format!(
                            "cannot convert a {} tensor to {other}",
                            self.datatype()
                        )));
                    }
                }
            };
        }
        if self.datatype() == datatype {
            return Ok(self);
        }
        Ok(match &self {
            Tensor::F32(a) => convert!(a),
            Tensor::F64(a) => convert!(a),
            Tensor::I32(a) => convert!(a),
            Tensor::I64(a) => convert!(a),
            other => {
                return Err(Error::pipeline(format!(
                    "cannot convert a {} tensor to {datatype}",
                    other.datatype()
                )));
            }
        })
    }

    fn mismatch(&self, wanted: DataType) -> Error {
        Error::pipeline(format!("expected a {wanted} tensor, found {}", self.datatype()))
    }
}

macro_rules! tensor_from_array {
    ($($elem:ty => $variant:ident),* $(,)?) => {$(
        impl<D: ndarray::Dimension> From<ndarray::Array<$elem, D>> for Tensor {
            fn from(array: ndarray::Array<$elem, D>) -> Self {
                Tensor::$variant(array.into_dyn())
            }
        }
    )*};
}

tensor_from_array!(
    bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, half::f16 => F16, f32 => F32, f64 => F64,
    String => Text,
);

/// `views` stacked along the first dimension by copying each one's elements in order, when
/// every view is in standard (row-major, contiguous) layout and all share the dimensions past
/// the first, as requests' inputs do: a few small rows cost a fraction of
/// `ndarray::concatenate`'s general walk. `None` otherwise, for that walk to stack them or say
/// why it cannot.
fn contiguous_rows<T: Clone>(views: &[ArrayViewD<'_, T>]) -> Option<ArrayD<T>> {
    let inner = views.first()?.shape().get(1..)?;
    let mut rows = 0;
    let mut data = Vec::with_capacity(views.iter().map(ArrayViewD::len).sum());
    for view in views {
        let (&own, dims) = view.shape().split_first()?;
        if dims != inner {
            return None;
        }
        // A slice only in standard layout.
        data.extend_from_slice(view.as_slice()?);
        rows += own;
    }
    let shape: Vec<usize> = std::iter::once(rows).chain(inner.iter().copied()).collect();
    ArrayD::from_shape_vec(shape, data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatypes_use_kserve_names() {
        assert_eq!(DataType::Fp32.to_string(), "FP32");
        assert_eq!(serde_json::from_str::<DataType>("\"INT64\"").unwrap(), DataType::Int64);
        assert_eq!(DataType::parse("UINT16"), Some(DataType::Uint16));
        assert_eq!(DataType::parse("FLOAT"), None);
    }

    #[test]
    fn typed_views_check_the_element_type() {
        let tensor = Tensor::from(ndarray::arr2(&[[1.0f32, 2.0]]));
        assert_eq!(tensor.shape(), &[1, 2]);
        assert_eq!(tensor.as_f32().unwrap()[[0, 1]], 2.0);
        let error = tensor.as_i64().unwrap_err().to_string();
        assert!(error.contains("INT64") && error.contains("FP32"), "{error}");
    }

    #[test]
    fn batches_stack_and_split_along_the_first_dimension() {
        let a = Tensor::from(ndarray::arr2(&[[1.0f32, 2.0]]));
        let b = Tensor::from(ndarray::arr2(&[[3.0f32, 4.0], [5.0, 6.0]]));
        let batch = Tensor::concat(&[&a, &b]).unwrap();
        assert_eq!(batch.shape(), &[3, 2]);
        assert_eq!(batch.rows_range(0, 1), a);
        assert_eq!(batch.rows_range(1, 3), b);
        let wrong_width = Tensor::from(ndarray::arr2(&[[1.0f32]]));
        assert!(Tensor::concat(&[&a, &wrong_width]).is_err());
        let wrong_type = Tensor::from(ndarray::arr2(&[[1i64, 2]]));
        assert!(Tensor::concat(&[&a, &wrong_type]).is_err());
    }

    #[test]
    fn batches_of_transposed_or_text_tensors_stack_as_contiguous_ones_do() {
        // Column-major (a transposed view made owned keeps its strides): not one slice, so
        // stacked by the general walk, with the same answer as its row-major copy.
        let columns =
            Tensor::F32(ndarray::arr2(&[[1.0f32, 3.0], [2.0, 4.0]]).reversed_axes().into_dyn());
        let rows = Tensor::from(ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
        let tail = Tensor::from(ndarray::arr2(&[[5.0f32, 6.0]]));
        let expected = Tensor::from(ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]));
        assert_eq!(Tensor::concat(&[&columns, &tail]).unwrap(), expected);
        assert_eq!(Tensor::concat(&[&rows, &tail]).unwrap(), expected);
        let text = |words: &[&str]| {
            let words = words.iter().map(|w| (*w).to_string()).collect::<Vec<_>>();
            Tensor::Text(ndarray::Array1::from(words).into_dyn())
        };
        let batch = Tensor::concat(&[&text(&["a"]), &text(&["b", "c"])]).unwrap();
        assert_eq!(batch, text(&["a", "b", "c"]));
    }

    #[test]
    fn casting_converts_every_element() {
        let doubles = Tensor::from(ndarray::arr1(&[0.25f64, -1.75]));
        assert_eq!(
            doubles.clone().cast(DataType::Fp32).unwrap(),
            Tensor::from(ndarray::arr1(&[0.25f32, -1.75]))
        );
        assert_eq!(
            doubles.clone().cast(DataType::Int64).unwrap(),
            Tensor::from(ndarray::arr1(&[0i64, -1]))
        );
        assert_eq!(doubles.clone().cast(DataType::Fp64).unwrap(), doubles);
        assert!(doubles.cast(DataType::Bytes).is_err());
    }

    #[test]
    fn padding_lengthens_one_dimension_and_slicing_cuts_it_back() {
        let ids = Tensor::from(ndarray::arr2(&[[7i64, 8]]));
        let padded = ids.pad_axis(1, 4, 0.0).unwrap();
        assert_eq!(padded, Tensor::from(ndarray::arr2(&[[7i64, 8, 0, 0]])));
        assert_eq!(padded.slice_axis(1, 0, 2), ids);
        assert!(ids.pad_axis(1, 1, 0.0).is_err(), "never shortens");
        assert!(ids.pad_axis(2, 4, 0.0).is_err(), "no such dimension");
    }
}
