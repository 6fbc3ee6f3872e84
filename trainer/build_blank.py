"""Build the model of the `blank` service template: `x` FP32 `[batch, 4]` in, `y` FP32
`[batch, 2]` out, a scikit-learn linear regression exported with skl2onnx, and the parity
fixture that a generated service's tests check it against (inputs and what Python onnxruntime
answered).

It is the smallest honest example of what a team does with its own model: fit in scikit-learn,
export to ONNX with named inputs and outputs, write a version with its manifest, and record
reference answers from Python onnxruntime. `cargo xtask new NAME --kind blank` copies both
into the new service.

Usage: python build_blank.py --models DIR --fixtures FILE
"""

from __future__ import annotations


import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from artifacts import model_and_fixture_args, write_fixture, write_version

FEATURES = 4
TARGETS = 2
SEED = 7
NAME = "model"


def fit() -> LinearRegression:
    """Two noisy linear targets of four features."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(200, FEATURES))
    coefficients = rng.normal(size=(FEATURES, TARGETS))
    y = x @ coefficients + 0.5 + rng.normal(scale=0.1, size=(200, TARGETS))
    return LinearRegression().fit(x, y)


def export(model: LinearRegression) -> bytes:
    onnx_model = convert_sklearn(
        model,
        initial_types=[("x", FloatTensorType([None, FEATURES]))],
        final_types=[("y", FloatTensorType([None, TARGETS]))],
        target_opset=17,
    )
    return onnx_model.SerializeToString()


def main() -> None:
    args = model_and_fixture_args(__doc__)
    metadata = {"estimator": "LinearRegression"}
    model_path = write_version(args.models, NAME, 1, export(fit()), metadata)

    # Reference answers: a few rows, Python onnxruntime on the file just written.
    rng = np.random.default_rng(SEED + 1)
    rows = rng.normal(size=(8, FEATURES)).astype(np.float32)
    session = ort.InferenceSession(str(model_path))
    (outputs,) = session.run(["y"], {"x": rows})
    cases = [
        {"x": [float(v) for v in row], "y": [float(v) for v in out]}
        for row, out in zip(rows, outputs)
    ]
    fixture = {"model": NAME, "tolerance": 1e-5, "cases": cases}
    write_fixture(args.fixtures, fixture)


if __name__ == "__main__":
    main()
