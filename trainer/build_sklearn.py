"""Train scikit-learn models of the kinds teams serve most, as skl2onnx exports them, and
their fixture.

The core crate's ONNX-ML interpreter tests run them and compare with Python onnxruntime:

* `binary-logistic`: a logistic regression, which skl2onnx writes as a `LinearClassifier` of
  two scores;
* `binary-forest` and `binary-boosted`: a random forest and gradient-boosted trees, each a
  `TreeEnsembleClassifier` of one score, which ONNX Runtime writes out by its special rules
  for two classes (probabilities for the forest; margins, a base value and the logistic for
  the boosted trees);
* `forest-regressor` and `boosted-regressor`: a random forest and gradient-boosted trees for
  a number, each a `TreeEnsembleRegressor`.

All read `features` FP32 `[rows, 4]` of synthetic data; the classifiers write `label` INT64
`[rows]` and `probabilities` FP32 `[rows, 2]`, the regressors `variable` FP32 `[rows, 1]`.
The fixture holds feature rows, held-out ones and a few far outside the training data, and
every output Python onnxruntime returns for them from each model.

Usage: python build_sklearn.py --models DIR --fixtures FILE
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
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
    # The regressors' number: a smooth function of the features, with noise.
    rng = np.random.default_rng(SEED)
    target = 3 * x[:, 0] - 2 * x[:, 1] * x[:, 2] + rng.normal(0, 0.1, len(x))
    train, held_out = slice(0, 300), slice(300, 340)
    # Held-out rows, and rows far outside the data, where scores are large either way.
    rows = np.concatenate([x[held_out], rng.uniform(-50, 50, size=(8, FEATURES))])
    rows = rows.astype(np.float32)
    models = {
        "binary-logistic": (LogisticRegression(max_iter=1000), y),
        "binary-forest": (RandomForestClassifier(n_estimators=5, max_depth=3, random_state=SEED), y),
        "binary-boosted": (
            GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=SEED),
            y,
        ),
        "forest-regressor": (
            RandomForestRegressor(n_estimators=5, max_depth=3, random_state=SEED),
            target,
        ),
        "boosted-regressor": (
            GradientBoostingRegressor(n_estimators=10, max_depth=2, random_state=SEED),
            target,
        ),
    }
    answers = {}
    for name, (estimator, wanted) in models.items():
        estimator.fit(x[train], wanted[train])
        options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
        onx = skl2onnx.to_onnx(
            estimator,
            initial_types=[("features", FloatTensorType([None, FEATURES]))],
            options=options,
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        path = write_version(args.models, name, 1, onx.SerializeToString(), {"features": FEATURES})
        session = ort.InferenceSession(str(path))
        names = [output.name for output in session.get_outputs()]
        outputs = session.run(names, {"features": rows})
        answers[name] = {name: values.tolist() for name, values in zip(names, outputs)}
    write_fixture(
        args.fixtures,
        {"onnxruntime": ort.__version__, "tolerance": 1e-5, "rows": rows.tolist(), "models": answers},
    )


if __name__ == "__main__":
    main()
