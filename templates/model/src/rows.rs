//! The model's tensors as JSON rows: a request field holds one entry per row of its tensor (a
//! number, a list of numbers or a list of lists, as the tensor has one, two or three
//! dimensions), and so does each answer field. Requests are checked against the signature of
//! the model version that runs, so a row of the wrong size is a 422 naming the field.

use ndarray::{ArrayD, ArrayViewD};
use oxiserve::manifest::TensorSpec;
use oxiserve::{DataType, Error, Result, Tensor};

/// A number type that a tensor can hold, as the model's signature names it.
pub(crate) trait Element: Copy + Default {
    /// The tensor datatype of this number type.
    const DATATYPE: DataType;
    /// The numbers of `tensor`, if it holds this type.
    fn view(tensor: &Tensor) -> Result<ArrayViewD<'_, Self>>;
    /// A tensor of these numbers.
    fn tensor(array: ArrayD<Self>) -> Tensor;
}

impl Element for f32 {
    const DATATYPE: DataType = DataType::Fp32;
    fn view(tensor: &Tensor) -> Result<ArrayViewD<'_, Self>> {
        tensor.as_f32()
    }
    fn tensor(array: ArrayD<Self>) -> Tensor {
        Tensor::from(array)
    }
}

impl Element for i64 {
    const DATATYPE: DataType = DataType::Int64;
    fn view(tensor: &Tensor) -> Result<ArrayViewD<'_, Self>> {
        tensor.as_i64()
    }
    fn tensor(array: ArrayD<Self>) -> Tensor {
        Tensor::from(array)
    }
}

/// One row's value: a number, or a list of values.
pub(crate) trait Value: Sized {
    /// The numbers it holds.
    type Element: Element;
    /// How many dimensions it has.
    const RANK: usize;
    /// Appends its numbers to `out`, checking its sizes against `dims`; `field` names it in
    /// errors.
    fn flatten(&self, dims: &[usize], field: &str, out: &mut Vec<Self::Element>) -> Result<()>;
    /// The value of `view`, which has [`Value::RANK`] dimensions.
    fn collect(view: ArrayViewD<'_, Self::Element>) -> Self;
}

impl<E: Element> Value for E {
    type Element = E;
    const RANK: usize = 0;
    fn flatten(&self, _: &[usize], _: &str, out: &mut Vec<E>) -> Result<()> {
        out.push(*self);
        Ok(())
    }
    fn collect(view: ArrayViewD<'_, E>) -> Self {
        view.iter().next().copied().unwrap_or_default()
    }
}

impl<V: Value> Value for Vec<V> {
    type Element = V::Element;
    const RANK: usize = V::RANK + 1;
    fn flatten(&self, dims: &[usize], field: &str, out: &mut Vec<V::Element>) -> Result<()> {
        if dims.first() != Some(&self.len()) {
            let size = dims.first().copied().unwrap_or_default();
            return Err(Error::invalid_field(field, format!("must hold {size} values")));
        }
        self.iter().try_for_each(|value| value.flatten(&dims[1..], field, out))
    }
    fn collect(view: ArrayViewD<'_, V::Element>) -> Self {
        view.outer_iter().map(V::collect).collect()
    }
}

/// Checks that `spec` holds rows of `V`: its datatype, and as many dimensions after the rows.
pub(crate) fn check<V: Value>(spec: &TensorSpec) -> Result<()> {
    if spec.datatype != V::Element::DATATYPE || spec.shape.len() != V::RANK + 1 {
        return Err(Error::pipeline(format!(
            "tensor `{}` is {} {:?}; this service was generated for {} with {} dimensions",
            spec.name,
            spec.datatype,
            spec.shape,
            V::Element::DATATYPE,
            V::RANK + 1
        )));
    }
    Ok(())
}

/// The tensor of the request field `rows`, checked against the model's `spec`: at least one
/// row, each of the model's size.
pub(crate) fn to_tensor<V: Value>(rows: &[V], spec: &TensorSpec) -> Result<Tensor> {
    if rows.is_empty() {
        return Err(Error::invalid_field(&spec.name, "must hold at least one row"));
    }
    let dims: Vec<usize> = spec.shape[1..].iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    let mut data = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        row.flatten(&dims, &format!("{}[{i}]", spec.name), &mut data)?;
    }
    let shape: Vec<usize> = std::iter::once(rows.len()).chain(dims).collect();
    let array = ArrayD::from_shape_vec(shape, data).map_err(|e| Error::pipeline(e.to_string()))?;
    Ok(V::Element::tensor(array))
}

/// The rows of an output tensor.
pub(crate) fn from_tensor<V: Value>(tensor: &Tensor) -> Result<Vec<V>> {
    Ok(V::Element::view(tensor)?.outer_iter().map(V::collect).collect())
}
