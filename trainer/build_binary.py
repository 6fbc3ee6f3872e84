"""Train three binary scikit-learn classifiers, as skl2onnx exports them, and their fixture.

The core crate's ONNX-ML interpreter tests run them: `binary-logistic`, a logistic regression
(skl2onnx writes a `LinearClassifier` of two scores), `binary-forest`, a small random forest,
and `binary-boosted`, gradient-boosted trees (each a `TreeEnsembleClassifier` of one score,
which ONNX Runtime writes out by its special rules for two classes: probabilities for the
forest, margins, a base value and the logistic for the boosted trees). All read 4 features of
synthetic data and write `label` INT64 `[rows]` and `probabilities` FP32 `[rows, 2]`. The
fixture holds feature rows, held-out ones and a few far outside the training data, and what
Python onnxruntime returns for each of them from each model.

Usage: python build_binary.py --models DIR --fixtures FILE
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
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
        "binary-boosted": GradientBoostingClassifier(
            n_estimators=10, max_depth=2, random_state=SEED
        ),
    }
    answers = {}
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
        session = ort.InferenceSession(str(path))
        labels, probabilities = session.run(["label", "probabilities"], {"features": rows})
        answers[name] = {"labels": labels.tolist(), "probabilities": probabilities.tolist()}
    write_fixture(
        args.fixtures,
        {
            "onnxruntime": ort.__version__,
            "tolerance": 1e-5,
            "rows": rows.tolist(),
            "models": answers,
        },
    )


if __name__ == "__main__":
    main()
