//! The part of ONNX's protobuf schema (`onnx/onnx.proto`, proto2) that the ONNX-ML
//! interpreter reads: the model, its graph, nodes and attributes. Field numbers are the
//! schema's. Fields left out are skipped when decoding; the messages this interpreter never
//! supports (tensors, subgraphs, sparse tensors) are kept as their encoded bytes, only to see
//! whether a graph has any.

/// `ModelProto`: the file a model is saved as.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Model {
    /// The version of ONNX's format the file follows.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// The operator sets the graph is written against.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSet>,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<Graph>,
    /// Functions defined in the model (`functions`); any makes the model unsupported.
    #[prost(bytes = "vec", repeated, tag = "25")]
    pub functions: Vec<Vec<u8>>,
}

/// `OperatorSetIdProto`: a domain and its version.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct OperatorSet {
    /// The domain: `""` for the standard operators, `ai.onnx.ml` for the classic ML ones.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// The operator set's version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`: nodes in topological order, and the graph's inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Graph {
    /// The nodes.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<Node>,
    /// Constant tensors (`initializer`); any makes the graph unsupported.
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub initializer: Vec<Vec<u8>>,
    /// Sparse constant tensors (`sparse_initializer`); any makes the graph unsupported.
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub sparse_initializer: Vec<Vec<u8>>,
    /// The graph's inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfo>,
    /// The graph's outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfo>,
}

/// `ValueInfoProto`, by name only: types come from the manifest, which the ONNX Runtime
/// session loaded beside the interpreter checks against the graph.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ValueInfo {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value's type (`TypeProto`), encoded: read by ONNX Runtime, not by the interpreter.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub r#type: Option<Vec<u8>>,
}

/// `NodeProto`: one operator applied to named values.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Node {
    /// The names of the values it reads.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// The names of the values it writes.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// The operator's domain.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// The operator's attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<Attribute>,
}

/// `AttributeProto`: a named constant of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Attribute {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A float.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// An integer.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// A string.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// A tensor (`t`); kept encoded, since no attribute this interpreter reads is one.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub t: Option<Vec<u8>>,
    /// Floats.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// Integers.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// Strings.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// Which of the fields above holds the value (`AttributeType`: 1 a float, 2 an integer,
    /// 3 a string, 6 floats, 7 integers, 8 strings).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    /// A reference to an attribute of an enclosing function (`ref_attr_name`).
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
}
