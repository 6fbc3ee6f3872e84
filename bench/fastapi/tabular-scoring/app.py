"""tabular-scoring in Python: the FastAPI service oxiserve is measured against.

Written the way a competent team would write it, not as a strawman: pydantic models for the
contract, the preprocessing parameters read once per model from the same manifests, numpy for
the arithmetic, one `onnxruntime.InferenceSession` per model created at start-up (one intra-op
thread, as oxiserve runs it), responses serialised by pydantic-core straight to JSON bytes
from the declared response model (FastAPI's fastest path since 0.130; it deprecated
`ORJSONResponse` for it), and uvicorn with uvloop and httptools, one worker per core. Same models, same preprocessing, same business rule and same JSON contract
as `services/tabular-scoring`; `tests/integration/baseline.rs` there checks that both answer alike.

Run: uvicorn app:app --app-dir bench/fastapi/tabular-scoring --workers N --loop uvloop
--http httptools (`cargo xtask serve --baseline fastapi` does it). MODELS_DIR overrides the
model repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

REPOSITORY = Path(
    os.environ.get(
        "MODELS_DIR", Path(__file__).resolve().parents[3] / "services/tabular-scoring/models"
    )
)
LINEAR, FOREST = "penguins-linear", "penguins-forest"
RUNS = {"fast": [LINEAR], "accurate": [FOREST], "ensemble": [LINEAR, FOREST]}
DEFAULT_MIN_CONFIDENCE = 0.7


class Model:
    """The newest version of a model: its session and its preprocessing as numpy arrays."""

    def __init__(self, name: str):
        directory = max(
            (d for d in (REPOSITORY / name).iterdir() if d.name.isdigit()),
            key=lambda d: int(d.name),
        )
        manifest = json.loads((directory / "manifest.json").read_text())
        self.name, self.version = name, manifest["version"]
        card = manifest["metadata"]
        self.classes = card["classes"]
        numeric = card["preprocessing"]["numeric"]
        self.measurements = [n["name"] for n in numeric]
        self.impute = np.array([n["impute"] for n in numeric])
        self.mean = np.array([n["mean"] for n in numeric])
        self.std = np.array([n["std"] for n in numeric])
        self.low = np.array([n["min"] for n in numeric])
        self.high = np.array([n["max"] for n in numeric])
        self.categorical = [(c["name"], c["vocabulary"]) for c in card["preprocessing"]["categorical"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options)

    def encode(self, body: "PenguinInput") -> tuple[np.ndarray, int]:
        """The feature row, and how many measurements were imputed."""
        raw = np.array(
            [np.nan if (v := getattr(body, m)) is None else v for m in self.measurements],
            dtype=np.float64,
        )
        missing = np.isnan(raw)
        outside = ~missing & ~((raw >= self.low) & (raw <= self.high))
        if outside.any():
            i = int(np.argmax(outside))
            raise HTTPException(
                422,
                f"{self.measurements[i]}: {raw[i]} is outside the valid range "
                f"{self.low[i]}..={self.high[i]}",
            )
        scaled = (np.where(missing, self.impute, raw) - self.mean) / self.std
        onehot = [
            1.0 if getattr(body, name) == value else 0.0
            for name, vocabulary in self.categorical
            for value in vocabulary
        ]
        row = np.concatenate([scaled, onehot]).astype(np.float32)[None, :]
        return row, int(missing.sum())

    def probabilities(self, row: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {"features": row})[0][0]


class PenguinInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    island: str
    sex: Optional[Literal["female", "male"]] = None
    bill_length_mm: Optional[float] = None
    bill_depth_mm: Optional[float] = None
    flipper_length_mm: Optional[float] = None
    body_mass_g: Optional[float] = None
    mode: Literal["fast", "accurate", "ensemble"] = "accurate"
    min_confidence: Optional[float] = Field(default=None, ge=0.0, le=1.0)


class ModelVersion(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    species: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    review_reasons: list[Literal["low_confidence", "mostly_imputed"]]
    models: list[ModelVersion]


MODELS = {name: Model(name) for name in (LINEAR, FOREST)}
app = FastAPI(title="tabular-scoring (FastAPI baseline)")


@app.get("/health/ready")
async def ready() -> dict:
    return {"status": "ready"}


@app.post("/v1/predict")
async def predict(body: PenguinInput) -> Prediction:
    ran = [MODELS[name] for name in RUNS[body.mode]]
    total = np.zeros(len(ran[0].classes), dtype=np.float32)
    imputed_share = 0.0
    for model in ran:
        row, imputed = model.encode(body)
        total += model.probabilities(row)
        imputed_share = max(imputed_share, imputed / len(model.measurements))
    probabilities = total / np.float32(len(ran))
    best = int(np.argmax(probabilities))
    confidence = float(probabilities[best])
    reasons = []
    threshold = DEFAULT_MIN_CONFIDENCE if body.min_confidence is None else body.min_confidence
    if confidence < np.float32(threshold):
        reasons.append("low_confidence")
    if imputed_share > 0.5:
        reasons.append("mostly_imputed")
    classes = ran[0].classes
    return Prediction(
        species=classes[best],
        confidence=confidence,
        probabilities=dict(zip(classes, probabilities.tolist())),
        needs_review=bool(reasons),
        review_reasons=reasons,
        models=[ModelVersion(name=m.name, version=m.version) for m in ran],
    )
