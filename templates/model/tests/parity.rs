//! Parity with Python: `tests/fixtures/parity.json` holds inputs and what Python onnxruntime
//! answered for them (written by `cargo xtask new --model` from the model it imported). The
//! service must agree, for each case alone and for all cases in one request.

use oxiserve::testing::TestApp;
use serde::Deserialize;
use serde_json::{Map, Value};

use {{crate}}::Input;

#[derive(Deserialize)]
struct Fixture {
    tolerance: f64,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    input: Map<String, Value>,
    output: Map<String, Value>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture is committed"))
        .expect("the fixture parses")
}

/// Whether `got` and `want` hold the same fields and numbers in the same shape, floats within
/// `tolerance`.
fn close(got: &Value, want: &Value, tolerance: f64) -> bool {
    match (got, want) {
        (Value::Array(got), Value::Array(want)) => {
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| close(g, w, tolerance))
        }
        (Value::Object(got), Value::Object(want)) => {
            got.len() == want.len()
                && got.iter().all(|(k, g)| want.get(k).is_some_and(|w| close(g, w, tolerance)))
        }
        (Value::Number(got), Value::Number(want)) => match (got.as_i64(), want.as_i64()) {
            (Some(got), Some(want)) => got == want,
            _ => (got.as_f64().unwrap() - want.as_f64().unwrap()).abs() <= tolerance,
        },
        _ => false,
    }
}

/// The fields of `cases` concatenated, row after row: one request or answer for all.
fn concat<'a>(cases: impl Iterator<Item = &'a Map<String, Value>>) -> Map<String, Value> {
    let mut all = Map::new();
    for case in cases {
        for (name, rows) in case {
            let entry = all.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
            entry.as_array_mut().unwrap().extend(rows.as_array().unwrap().iter().cloned());
        }
    }
    all
}

#[tokio::test]
async fn answers_match_python_onnxruntime() {
    let fixture = fixture();
    assert!(!fixture.cases.is_empty());
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    let app = app.expect("the bundled model loads");
    let all_in = concat(fixture.cases.iter().map(|case| &case.input));
    let all_out = concat(fixture.cases.iter().map(|case| &case.output));
    for (input, want) in
        fixture.cases.iter().map(|case| (&case.input, &case.output)).chain([(&all_in, &all_out)])
    {
        let request: Input = serde_json::from_value(Value::Object(input.clone())).unwrap();
        let output = app.predict(&request).await.unwrap_or_else(|p| panic!("{p:?}"));
        let got = serde_json::to_value(&output).unwrap();
        let want = Value::Object(want.clone());
        assert!(close(&got, &want, fixture.tolerance), "{got} against Python's {want}");
    }
}
