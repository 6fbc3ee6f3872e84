"""One training run of a penguin model (split, fit, export to ONNX), and the score of any
version on any rows, run by onnxruntime: what the quality gate compares on the reference set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from penguins import SEED, TARGET, estimator, fit_preprocessing, matrix, to_onnx

METRICS = {
    "accuracy": accuracy_score,
    "f1_macro": lambda truth, predicted: f1_score(truth, predicted, average="macro"),
}


@dataclass
class Candidate:
    """A trained, exported model and what it was trained and checked on."""

    graph: bytes
    classes: list
    preprocessing: dict
    rows: dict
    held_out: pd.DataFrame


def train(frame: pd.DataFrame, model: str, hyperparameters: dict, test_size: float) -> Candidate:
    """Fits `model` on a stratified split of `frame` and exports it; the held-out rows are kept
    for the candidate's own score and its golden examples."""
    classes = sorted(frame[TARGET].unique().tolist())
    fit, held_out = train_test_split(
        frame, test_size=test_size, random_state=SEED, stratify=frame[TARGET]
    )
    params = fit_preprocessing(fit)
    fitted = estimator(model, hyperparameters)
    fitted.fit(matrix(fit, params), fit[TARGET].map(classes.index).to_numpy())
    graph = to_onnx(fitted, len(params["feature_order"]))
    rows = {"train": len(fit), "test": len(held_out)}
    return Candidate(graph, classes, params, rows, held_out.reset_index(drop=True))


def score(graph: bytes, metadata: dict, rows: pd.DataFrame, metric: str) -> float:
    """`metric` of a version (its graph and its manifest's metadata: classes, preprocessing)
    on `rows`, run by onnxruntime as the server would."""
    session = ort.InferenceSession(graph)
    features = matrix(rows, metadata["preprocessing"])
    (labels,) = session.run(["label"], {"features": features})
    predicted = np.asarray(metadata["classes"], dtype=object)[labels]
    return float(METRICS[metric](rows[TARGET].to_numpy(dtype=object), predicted))


def feeds(candidate: Candidate, count: int) -> list:
    """The first `count` held-out rows as model inputs, one run each: the golden examples."""
    features = matrix(candidate.held_out.head(count), candidate.preprocessing)
    return [{"features": row[None, :]} for row in features]
