"""Train `blobs`, a small scikit-learn classifier, and its parity fixture.

The core crate's remote-backend tests serve it twice: as ONNX in process, and as the fitted
estimator (`model.joblib`) on MLServer, a real KServe v2 server, through `models.remote`. It is
a multinomial logistic regression over 4 features and 3 classes of synthetic Gaussian blobs,
small enough to commit. The fixture holds feature rows and what Python onnxruntime returns for
each of them.

Usage: python build_blobs.py --models DIR --fixtures FILE
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

from artifacts import write_version

NAME = "blobs"
FEATURES = 4
CLASSES = 3
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--fixtures", type=Path, required=True)
    args = parser.parse_args()

    x, y = make_blobs(n_samples=300, n_features=FEATURES, centers=CLASSES, random_state=SEED)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    onx = skl2onnx.to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, FEATURES]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    estimator = io.BytesIO()
    joblib.dump(model, estimator)
    path = write_version(
        args.models,
        NAME,
        1,
        onx.SerializeToString(),
        {"classes": CLASSES, "features": FEATURES},
        {"model.joblib": estimator.getvalue()},
    )

    # Rows near each centre and between them, where the probabilities are far from 0 and 1.
    rng = np.random.default_rng(SEED)
    rows = np.concatenate([x[:8], rng.uniform(x.min(0), x.max(0), size=(8, FEATURES))])
    rows = rows.astype(np.float32)
    session = ort.InferenceSession(str(path))
    labels, probabilities = session.run(["label", "probabilities"], {"features": rows})
    cases = [
        {
            "features": row.tolist(),
            "label": int(label),
            "probabilities": p.tolist(),
        }
        for row, label, p in zip(rows, labels, probabilities)
    ]
    fixture = {"onnxruntime": ort.__version__, "tolerance": 1e-5, "cases": cases}
    args.fixtures.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    main()
