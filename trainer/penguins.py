"""The penguin-species models of `services/tabular-scoring`: their features, preprocessing,
estimators and ONNX export, shared by the reference script (`train_penguins.py`) and the
training service (`service/`).

Preprocessing happens outside the ONNX graph, in the Rust pipeline, so its parameters travel
in each manifest's `metadata.preprocessing`; `preprocess` here is an independent
implementation of the same steps.
"""

from __future__ import annotations

import math

import numpy as np
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
TARGET = "species"
SEED = 7
MODELS = ["penguins-linear", "penguins-forest"]


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


def matrix(frame, params: dict) -> np.ndarray:
    """Every row of a data frame as a feature matrix (FP32 `[rows, features]`)."""
    return np.stack([preprocess(r, params) for r in frame.to_dict("records")])


def estimator(model: str, hyperparameters: dict | None = None):
    """The unfitted estimator of `model`, with the reference hyperparameters unless given."""
    given = hyperparameters or {}
    if model == "penguins-linear":
        return LogisticRegression(max_iter=given.get("max_iter", 1000), C=given.get("C", 0.5))
    if model == "penguins-forest":
        return RandomForestClassifier(
            n_estimators=given.get("n_estimators", 25),
            max_depth=given.get("max_depth", 5),
            random_state=SEED,
        )
    raise ValueError(f"unknown model `{model}`: one of {', '.join(MODELS)}")


def to_onnx(model, width: int) -> bytes:
    """The fitted estimator as an ONNX graph: `features` FP32 `[rows, width]` in, `label` INT64
    and `probabilities` FP32 out."""
    onx = skl2onnx.to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, width]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    return onx.SerializeToString()


def request_body(row) -> dict:
    """A dataset row as the service's JSON request body (missing values are left out)."""
    body = {}
    for name in NUMERIC + CATEGORICAL:
        value = row[name]
        if isinstance(value, float) and math.isnan(value) or value is None:
            continue
        body[name] = value if name in CATEGORICAL else float(value)
    return body
