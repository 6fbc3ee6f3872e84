"""text-embedding in Python: the FastAPI service oxiserve is measured against.

Written the way a competent team would write it: the same `tokenizers` library and
`tokenizer.json` as the Rust service (its Rust core does the tokenising, batched), one
onnxruntime session created at start-up (one intra-op thread, one worker process per core),
a request's texts sorted by length and run in padded groups of similar lengths, the pooling
in numpy, and pydantic models for the contract. Same model files, same routes and JSON
(`/v1/embeddings` as OpenAI's, `/embed` as TEI's, `/v1/predict`);
`services/text-embedding/tests/integration/baseline.rs` checks both answer alike.
What it cannot do without much more machinery is batch texts across concurrent requests.

Run: uvicorn app:app --app-dir bench/fastapi/text-embedding --workers N --loop uvloop
--http httptools (`cargo xtask serve --service text-embedding --baseline fastapi` does it).
MODELS_DIR overrides the model repository.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from tokenizers import Tokenizer

REPOSITORY = Path(
    os.environ.get(
        "MODELS_DIR", Path(__file__).resolve().parents[3] / "services/text-embedding/models"
    )
)
MAX_ITEMS, MAX_CHARS = 256, 20_000
MODEL_ID = "all-MiniLM-L6-v2"
DIMENSION = 384


def similar_lengths(ids: list[list[int]]) -> list[list[int]]:
    """Indexes of `ids` sorted by length and cut into groups of similar lengths, as the Rust
    core cuts padded batches: a group's longest is at most a quarter plus 8 tokens longer than
    its shortest. One long text then does not make the short ones run at its length."""
    groups: list[list[int]] = []
    for index in sorted(range(len(ids)), key=lambda i: len(ids[i])):
        shortest = len(ids[groups[-1][0]]) if groups else None
        if shortest is not None and len(ids[index]) <= shortest + shortest // 4 + 8:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class Model:
    """The newest version of `minilm`: its tokenizer, limit and session."""

    def __init__(self):
        directory = max(
            (d for d in (REPOSITORY / "minilm").iterdir() if d.name.isdigit()),
            key=lambda d: int(d.name),
        )
        manifest = json.loads((directory / "manifest.json").read_text())
        self.max_tokens = manifest["metadata"]["max_tokens"]
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls = self.tokenizer.token_to_id("[CLS]")
        self.sep = self.tokenizer.token_to_id("[SEP]")
        self.vocabulary = self.tokenizer.get_vocab_size(with_added_tokens=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options)

    def ids(self, inputs: list, truncate: bool) -> list[list[int]]:
        """Token ids of every input, checked like the Rust service checks them."""
        if not inputs:
            raise HTTPException(422, "inputs: must hold at least one input")
        if len(inputs) > MAX_ITEMS:
            raise HTTPException(422, f"inputs: at most {MAX_ITEMS} are accepted")
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        for i, text in texts:
            if not text:
                raise HTTPException(422, f"inputs[{i}]: is empty")
            if len(text) > MAX_CHARS:
                raise HTTPException(422, f"inputs[{i}]: has more than {MAX_CHARS} characters")
        encoded = dict(zip((i for i, _ in texts), self.tokenizer.encode_batch([t for _, t in texts])))
        result = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                ids = encoded[i].ids
            else:
                if not item:
                    raise HTTPException(422, f"inputs[{i}]: holds no token id")
                if any(not 0 <= t < self.vocabulary for t in item):
                    raise HTTPException(422, f"inputs[{i}]: a token id is outside the vocabulary")
                ids = [self.cls, *item, self.sep]
            if len(ids) > self.max_tokens:
                if not truncate:
                    raise HTTPException(422, f"inputs[{i}]: more than {self.max_tokens} tokens")
                ids = ids[: self.max_tokens - 1] + [self.sep]
            result.append(ids)
        return result

    @staticmethod
    def feed(ids: list[list[int]]) -> dict[str, np.ndarray]:
        """The model's inputs for one run over every input, padded to the longest."""
        length = max(len(row) for row in ids)
        batch = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros_like(batch)
        for row, tokens in enumerate(ids):
            batch[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)}

    def embed(self, ids: list[list[int]], normalize: bool) -> np.ndarray:
        """One padded run per group of similar lengths; mean over real tokens; L2 when asked."""
        pooled = np.empty((len(ids), DIMENSION), dtype=np.float32)
        for group in similar_lengths(ids):
            feed = self.feed([ids[i] for i in group])
            (hidden,) = self.session.run(["last_hidden_state"], feed)
            weights = feed["attention_mask"][:, :, None].astype(np.float32)
            pooled[group] = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        if normalize:
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)


MODEL = Model()
app = FastAPI(title="text-embedding (FastAPI baseline)")

Input = Union[str, list[int]]


class PredictInput(BaseModel):
    inputs: list[Input]
    truncate: bool = True
    normalize: bool = True
    encoding: Literal["float", "base64"] = "float"


def encode(vector: np.ndarray, encoding: str):
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


@app.get("/health/ready")
async def ready() -> dict:
    return {"status": "ready"}


@app.post("/v1/predict")
def predict(body: PredictInput):
    ids = MODEL.ids(body.inputs, body.truncate)
    vectors = MODEL.embed(ids, body.normalize)
    return {"embeddings": [encode(v, body.encoding) for v in vectors], "tokens": [len(i) for i in ids]}


class OpenAiRequest(BaseModel):
    input: Union[str, list[str], list[int], list[list[int]]]
    model: str
    encoding_format: Optional[Literal["float", "base64"]] = None
    dimensions: Optional[int] = None
    user: Optional[str] = None


@app.post("/v1/embeddings")
def embeddings(body: OpenAiRequest):
    items = body.input
    inputs = [items] if isinstance(items, str) or (items and isinstance(items[0], int)) else items
    try:
        if body.dimensions not in (None, 384):
            raise HTTPException(422, f"dimensions: {body.dimensions} is not served")
        ids = MODEL.ids(inputs, truncate=True)
    except HTTPException as error:
        message = {"message": error.detail, "type": "invalid_request_error", "param": None, "code": None}
        return JSONResponse({"error": message}, status_code=400)
    vectors = MODEL.embed(ids, normalize=True)
    tokens = sum(len(i) for i in ids)
    data = [
        {"object": "embedding", "index": i, "embedding": encode(v, body.encoding_format or "float")}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": MODEL_ID, "usage": usage}


class TeiRequest(BaseModel):
    inputs: Union[str, list[str]]
    normalize: bool = True
    truncate: bool = False


@app.post("/embed")
def embed(body: TeiRequest):
    inputs = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    return MODEL.embed(MODEL.ids(inputs, body.truncate), body.normalize).tolist()
