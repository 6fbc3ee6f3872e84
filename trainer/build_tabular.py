"""Build the model of the `tabular` service template: named features in, class probabilities
out. A scikit-learn pipeline (standard scaling, then logistic regression) fitted on the iris
measurements that ship with scikit-learn, exported with skl2onnx (`features` FP32
`[batch, 4]` in; `label` INT64 `[batch]` and `probabilities` FP32 `[batch, 3]` out), with the
feature order and the class names in the manifest's metadata, and the parity fixture that a
generated service's tests check it against (inputs and what Python onnxruntime answered).

This is what a team does with its own tabular model: fit in scikit-learn, export to ONNX with
named inputs and outputs, say in the manifest which column is which feature and which index
is which class (the service checks both when it loads a version), evaluate on held-out rows,
and record reference answers from Python onnxruntime. `cargo xtask new NAME` (the `tabular`
kind) copies both into the new service.

Usage: python build_tabular.py --models DIR --fixtures FILE
"""

from __future__ import annotations


import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from artifacts import model_and_fixture_args, write_fixture, write_version

NAME = "classifier"
# The request's field names, in the order of the model's input columns.
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
SEED = 7


def export(model: Pipeline) -> bytes:
    onnx_model = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # skl2onnx names the outputs `label` (the class index, INT64) and `probabilities`.
    return onnx_model.SerializeToString()


def main() -> None:
    args = model_and_fixture_args(__doc__)

    data = load_iris()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.3, random_state=SEED, stratify=data.target
    )
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(C=0.5))])
    model.fit(x_train, y_train)
    classes = [str(name) for name in data.target_names]
    metadata = {
        "estimator": "StandardScaler + LogisticRegression",
        "features": FEATURES,
        "classes": classes,
        "metrics": {"held_out_accuracy": round(float(model.score(x_test, y_test)), 4)},
    }
    model_path = write_version(args.models, NAME, 1, export(model), metadata)

    # Reference answers from Python onnxruntime on the file just written: held-out rows, and
    # rows between two classes, where a service's business rule has to decide.
    rng = np.random.default_rng(SEED)
    between = (x_test[:4] + x_test[-4:]) / 2
    rows = np.concatenate([x_test[rng.choice(len(x_test), 8, replace=False)], between])
    session = ort.InferenceSession(str(model_path))
    labels, probabilities = session.run(["label", "probabilities"], {"features": rows})
    cases = [
        {
            "features": {name: float(value) for name, value in zip(FEATURES, row)},
            "class": classes[int(label)],
            "probabilities": [float(p) for p in probs],
        }
        for row, label, probs in zip(rows, labels, probabilities)
    ]
    fixture = {"model": NAME, "classes": classes, "tolerance": 1e-5, "cases": cases}
    write_fixture(args.fixtures, fixture)


if __name__ == "__main__":
    main()
