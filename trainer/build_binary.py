"""Train two binary scikit-learn classifiers, as skl2onnx exports them, and their fixture.

The core crate's ONNX-ML interpreter tests load them: `binary-logistic`, a logistic
regression (skl2onnx writes it as a `LinearClassifier` with two scores, which the interpreter
runs), and `binary-forest`, a small random forest (a `TreeEnsembleClassifier` of two classes,
which ONNX Runtime's special rules for two classes keep on ONNX Runtime). Both read 4
features of synthetic data and write `label` INT64 `[rows]` and `probabilities` FP32
`[rows, 2]`. The fixture holds feature rows, held-out ones and a few far outside the training
data, and what Python onnxruntime returns for each of them from the logistic regression.

Usage: python build_binary.py --models DIR --fixtures FILE
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from artifacts import model_and_fixture_args, write_fixture, write_version

FEATURES = 4
SEED = 7


def main() -> None:
    args = model_and_fixture_args(__doc__)
    x, y = make_classification(
        n_samples=400, n_features=FEATURES, n_informative=3, n_redundant=1, random_state=SEED
    )
    x = x.astype(np.float32)
    train, held_out = slice(0, 300), slice(300, 340)
    rng = np.random.default_rng(SEED)
    # Held-out rows, and rows far outside the data, where scores are large either way.
    rows = np.concatenate([x[held_out], rng.uniform(-50, 50, size=(8, FEATURES))])
    rows = rows.astype(np.float32)
    estimators = {
        "binary-logistic": LogisticRegression(max_iter=1000),
        "binary-forest": RandomForestClassifier(n_estimators=5, max_depth=3, random_state=SEED),
    }
    for name, estimator in estimators.items():
        estimator.fit(x[train], y[train])
        onx = skl2onnx.to_onnx(
            estimator,
            initial_types=[("features", FloatTensorType([None, FEATURES]))],
            options={id(estimator): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        path = write_version(
            args.models, name, 1, onx.SerializeToString(), {"classes": 2, "features": FEATURES}
        )
        if name == "binary-logistic":
            session = ort.InferenceSession(str(path))
            labels, probabilities = session.run(["label", "probabilities"], {"features": rows})
    write_fixture(
        args.fixtures,
        {
            "onnxruntime": ort.__version__,
            "tolerance": 1e-5,
            "rows": rows.tolist(),
            "labels": labels.tolist(),
            "probabilities": probabilities.tolist(),
        },
    )


if __name__ == "__main__":
    main()
