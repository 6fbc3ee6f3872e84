//! Hostile inputs for property tests (test builds only): shapes, datatypes and JSON of the
//! kinds the adversarial review sent, plus everything else proptest makes up. The decoders of
//! client bytes are checked with them: each must decode or refuse, never panic or allocate for
//! what was only claimed. The number of cases comes from `PROPTEST_CASES` (proptest's own
//! variable): `cargo xtask test` runs a short campaign, `cargo xtask fuzz` a long one.

use proptest::prelude::*;
use serde_json::Value;

use crate::tensor::DataType;

/// Every datatype, as the protocol names them.
pub(crate) const DATATYPES: [&str; 13] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BYTES",
];

/// Any datatype.
pub(crate) fn datatype() -> impl Strategy<Value = DataType> {
    prop::sample::select(DATATYPES.to_vec())
        .prop_map(|name| DataType::parse(name).expect("DATATYPES lists protocol names"))
}

/// A dimension: mostly small, sometimes zero or absurdly large.
pub(crate) fn dimension() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0..5usize,
        1 => Just(10_000_000_000_000_000usize),
        1 => Just(1usize << 62),
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ]
}

/// A shape of up to four dimensions.
pub(crate) fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dimension(), 0..5)
}

/// JSON of any kind, nested up to four arrays or objects deep.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![Just(1e39), Just(-1e39), Just(65_520.0), Just(f64::MAX)].prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}
