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
import math
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import sklearn
import skl2onnx
from palmerpenguins import load_penguins
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from artifacts import write_version

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
TARGET = "species"
SEED = 7


def fit_preprocessing(train) -> dict:
    """Learn imputation, scaling and vocabularies from the training split only."""
    numeric = []
    for name in NUMERIC:
        column = train[name]
        median = float(column.median())
        imputed = column.fillna(median).to_numpy(dtype=np.float64)
        observed_max = float(column.max())
        numeric.append(
            {
                "name": name,
                "impute": median,
                "mean": float(imputed.mean()),
                "std": float(imputed.std()),
                # Requests outside this range are rejected as client errors.
                "min": 0.0,
                "max": observed_max * 2.0,
            }
        )
    categorical = [
        {"name": name, "vocabulary": sorted(train[name].dropna().unique().tolist())}
        for name in CATEGORICAL
    ]
    order = [n["name"] for n in numeric] + [
        f"{c['name']}={v}" for c in categorical for v in c["vocabulary"]
    ]
    return {"numeric": numeric, "categorical": categorical, "feature_order": order}


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def preprocess(row: dict, params: dict) -> np.ndarray:
    """One request body to one feature row: impute, standardise, one-hot (unknown -> zeros)."""
    features = []
    for spec in params["numeric"]:
        value = row.get(spec["name"])
        value = spec["impute"] if is_missing(value) else float(value)
        features.append((value - spec["mean"]) / spec["std"])
    for spec in params["categorical"]:
        value = row.get(spec["name"])
        features.extend(1.0 if value == v else 0.0 for v in spec["vocabulary"])
    return np.asarray(features, dtype=np.float64).astype(np.float32)


def export(model, name: str, version: int, out: Path, params: dict, classes: list, training: dict):
    """Write `<out>/<name>/<version>/model.onnx` and its manifest (files first, manifest last)."""
    width = len(params["feature_order"])
    onx = skl2onnx.to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, width]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    metadata = {"classes": classes, "preprocessing": params, "training": training}
    # The fitted estimator itself, for servers that run scikit-learn (MLServer in
    # `cargo xtask bench --kserve`): the same trained model as the ONNX graph.
    estimator = io.BytesIO()
    joblib.dump(model, estimator)
    extra = {"model.joblib": estimator.getvalue()}
    return write_version(out, name, version, onx.SerializeToString(), metadata, extra)


def request_body(row) -> dict:
    """A dataset row as the service's JSON request body (missing values are left out)."""
    body = {}
    for name in NUMERIC + CATEGORICAL:
        value = row[name]
        if isinstance(value, float) and math.isnan(value) or value is None:
            continue
        body[name] = value if name in CATEGORICAL else float(value)
    return body


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

    def matrix(part):
        return np.stack([preprocess(r, params) for r in part.to_dict("records")])

    x_train, x_test = matrix(train), matrix(test)
    y_train = train[TARGET].map(classes.index).to_numpy()
    y_test = test[TARGET].map(classes.index).to_numpy()

    models = {
        "penguins-linear": LogisticRegression(max_iter=1000, C=0.5),
        "penguins-forest": RandomForestClassifier(n_estimators=25, max_depth=5, random_state=SEED),
    }
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
