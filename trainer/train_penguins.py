"""Train the two penguin-species models, export them to ONNX and write parity fixtures.

The service `services/tabular-scoring` serves what this script writes:

* a model repository laid out `<out>/<model>/<version>/{model.onnx,manifest.json}` holding
  `penguins-linear` (multinomial logistic regression) and `penguins-forest` (random forest);
* the preprocessing parameters (feature order, imputation values, scaling, category
  vocabularies, valid ranges) inside each manifest's `metadata`, because preprocessing happens
  outside the ONNX graph, in the Rust pipeline;
* a parity fixture: request bodies and what Python onnxruntime returns for them after the same
  preprocessing, implemented here independently of the Rust code.

Usage: python train_penguins.py --models DIR --fixtures FILE [--version N]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import joblib
import onnxruntime as ort
import sklearn
import skl2onnx
from palmerpenguins import load_penguins
from sklearn.model_selection import train_test_split

from artifacts import write_version
from penguins import (
    SEED,
    TARGET,
    estimator,
    fit_preprocessing,
    matrix,
    preprocess,
    request_body,
    to_onnx,
)


def export(model, name: str, version: int, out: Path, params: dict, classes: list, training: dict):
    """Write `<out>/<name>/<version>/model.onnx` and its manifest (files first, manifest last)."""
    graph = to_onnx(model, len(params["feature_order"]))
    metadata = {"classes": classes, "preprocessing": params, "training": training}
    # The fitted estimator itself, for servers that run scikit-learn (MLServer in
    # `cargo xtask bench --kserve`): the same trained model as the ONNX graph.
    pickled = io.BytesIO()
    joblib.dump(model, pickled)
    extra = {"model.joblib": pickled.getvalue()}
    return write_version(out, name, version, graph, metadata, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="model repository root")
    parser.add_argument("--fixtures", type=Path, required=True, help="parity fixture JSON file")
    parser.add_argument("--version", type=int, default=1, help="version number to write")
    args = parser.parse_args()

    frame = load_penguins()
    classes = sorted(frame[TARGET].unique().tolist())
    train, test = train_test_split(frame, test_size=0.3, random_state=SEED, stratify=frame[TARGET])
    params = fit_preprocessing(train)

    x_train, x_test = matrix(train, params), matrix(test, params)
    y_train = train[TARGET].map(classes.index).to_numpy()
    y_test = test[TARGET].map(classes.index).to_numpy()

    models = {name: estimator(name) for name in ["penguins-linear", "penguins-forest"]}
    sessions = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        training = {
            "dataset": "palmerpenguins",
            "rows": {"train": len(train), "test": len(test)},
            "test_accuracy": float(model.score(x_test, y_test)),
            "estimator": type(model).__name__,
            "sklearn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "seed": SEED,
        }
        path = export(model, name, args.version, args.models, params, classes, training)
        sessions[name] = ort.InferenceSession(str(path))
        print(f"{name} v{args.version}: test accuracy {training['test_accuracy']:.3f}")

    # Parity fixture: every held-out row (some have missing values), plus crafted edge cases.
    bodies = [request_body(r) for r in test.to_dict("records")]
    bodies.append({"island": "Atlantis", "sex": "female", "bill_length_mm": 45.0})
    bodies.append({"island": "Dream"})
    cases = []
    for body in bodies:
        row = preprocess(body, params)[None, :]
        expected = {}
        for name, session in sessions.items():
            label, probabilities = session.run(["label", "probabilities"], {"features": row})
            expected[name] = {
                "label": int(label[0]),
                "probabilities": [float(p) for p in probabilities[0]],
            }
        cases.append({"input": body, "expected": expected})
    args.fixtures.parent.mkdir(parents=True, exist_ok=True)
    fixture = {
        "classes": classes,
        "onnxruntime": ort.__version__,
        "tolerance": 1e-5,
        "cases": cases,
    }
    args.fixtures.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {len(cases)} parity cases to {args.fixtures}")


if __name__ == "__main__":
    main()
