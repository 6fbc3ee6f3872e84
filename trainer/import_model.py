"""Import an ONNX model a team already has into a new service: write it as version 1 of a
model repository (the manifest's signature read from a real onnxruntime session) and a parity
fixture of a few random inputs with what Python onnxruntime answered for them.
`cargo xtask new NAME --model FILE` runs it, then writes a pipeline whose request and answer
fields are the model's own tensors.

Only tensors that a JSON request can carry row by row are supported: FP32 or INT64, with a
dynamic first (batch) dimension, one to three dimensions in all. Anything else stops the
import with a message naming the tensor, and nothing is written.

Usage: python import_model.py --model FILE --models DIR --name NAME --fixtures FILE
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifacts import signature, write_version

SUPPORTED = {"FP32", "INT64"}
CASES = 4
SEED = 7


def check(specs: list, role: str) -> None:
    for spec in specs:
        name, datatype, shape = spec["name"], spec["datatype"], spec["shape"]
        if datatype not in SUPPORTED:
            sys.exit(f"{role} `{name}` is {datatype}: --model supports FP32 and INT64 tensors")
        if not 1 <= len(shape) <= 3 or shape[0] != -1:
            sys.exit(
                f"{role} `{name}` has shape {shape}: --model supports tensors of one to three "
                "dimensions whose first (the batch) is dynamic"
            )
        if any(d == -1 for d in shape[1:]):
            sys.exit(f"{role} `{name}` has shape {shape}: only the first dimension may be dynamic")


def random_row(spec: dict, rng: np.random.Generator) -> np.ndarray:
    shape = [1, *spec["shape"][1:]]
    if spec["datatype"] == "INT64":
        return rng.integers(0, 4, size=shape, dtype=np.int64)
    return rng.normal(size=shape).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--fixtures", type=Path, required=True)
    args = parser.parse_args()
    try:
        session = ort.InferenceSession(str(args.model))
    except Exception as error:  # onnxruntime raises several types for an unreadable model
        sys.exit(f"ONNX Runtime cannot open {args.model}: {error}")
    inputs, outputs = signature(session)
    check(inputs, "input")
    check(outputs, "output")

    rng = np.random.default_rng(SEED)
    cases = []
    for _ in range(CASES):
        feed = {spec["name"]: random_row(spec, rng) for spec in inputs}
        answers = session.run([spec["name"] for spec in outputs], feed)
        cases.append(
            {
                "input": {name: value.tolist() for name, value in feed.items()},
                "output": {spec["name"]: a.tolist() for spec, a in zip(outputs, answers)},
            }
        )
    metadata = {"imported_from": args.model.name}
    write_version(args.models, args.name, 1, args.model.read_bytes(), metadata)
    args.fixtures.parent.mkdir(parents=True, exist_ok=True)
    fixture = {"model": args.name, "tolerance": 1e-5, "cases": cases}
    args.fixtures.write_text(json.dumps(fixture, indent=2) + "\n")


if __name__ == "__main__":
    main()
