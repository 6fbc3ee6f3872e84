"""Writing a model version the way the server reads it: `<out>/<name>/<version>/` holding
`model.onnx` and `manifest.json` (sha256 and size of every file, the signature read from a real
onnxruntime session, free-form metadata, and optionally golden examples: inputs with the
outputs this onnxruntime gave, which the server reproduces before it adopts the version).
Files are written first and the manifest last, as the publication protocol requires.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path

import onnxruntime as ort

MANIFEST_FORMAT = 1


def file_entry(data: bytes) -> dict:
    """What the manifest records of a file: checked by the server before the file is used."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def signature(session: ort.InferenceSession) -> tuple[list, list]:
    """The session's real inputs and outputs, in the manifest's KServe v2 vocabulary."""
    dtypes = {
        "tensor(bool)": "BOOL",
        "tensor(uint8)": "UINT8",
        "tensor(uint16)": "UINT16",
        "tensor(uint32)": "UINT32",
        "tensor(uint64)": "UINT64",
        "tensor(int8)": "INT8",
        "tensor(int16)": "INT16",
        "tensor(int32)": "INT32",
        "tensor(int64)": "INT64",
        "tensor(float16)": "FP16",
        "tensor(float)": "FP32",
        "tensor(double)": "FP64",
        "tensor(string)": "BYTES",
    }

    def describe(arg):
        shape = [d if isinstance(d, int) else -1 for d in arg.shape]
        return {"name": arg.name, "datatype": dtypes[arg.type], "shape": shape}

    return [describe(a) for a in session.get_inputs()], [describe(a) for a in session.get_outputs()]


def manifest(
    name: str, version: int, files: dict, metadata: dict, golden: dict | None = None
) -> dict:
    """The manifest of a version whose `files` (name -> bytes) hold `model.onnx`: every
    file's sha256 and size, the graph's signature from a real session, `metadata`, and the
    `golden` examples when given (see `golden_examples`)."""
    inputs, outputs = signature(ort.InferenceSession(files["model.onnx"]))
    written = {
        "format_version": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "files": {file_name: file_entry(data) for file_name, data in files.items()},
        "inputs": inputs,
        "outputs": outputs,
        "metadata": metadata,
    }
    if golden is not None:
        written["golden"] = golden
    return written


def golden_examples(graph: bytes, feeds: list, absolute: float = 1e-5) -> dict:
    """A manifest's `golden` section: each of `feeds` (input name -> numpy array, one model
    run each) with every output this onnxruntime gives for it."""
    session = ort.InferenceSession(graph)
    inputs, outputs = signature(session)
    datatypes = {spec["name"]: spec["datatype"] for spec in inputs + outputs}
    names = [output.name for output in session.get_outputs()]

    def tensor(name, array):
        return {
            "datatype": datatypes[name],
            "shape": list(array.shape),
            "data": array.reshape(-1).tolist(),
        }

    examples = []
    for feed in feeds:
        outputs = session.run(names, feed)
        examples.append(
            {
                "inputs": {name: tensor(name, array) for name, array in feed.items()},
                "outputs": {name: tensor(name, array) for name, array in zip(names, outputs)},
            }
        )
    return {"absolute": absolute, "relative": 0.0, "examples": examples}


def write_version(
    out: Path, name: str, version: int, graph: bytes, metadata: dict, extra: dict | None = None
) -> Path:
    """Write `<out>/<name>/<version>/model.onnx`, the `extra` files (name -> bytes) and the
    manifest; returns the model's path."""
    directory = out / name / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": graph, **(extra or {})}
    for file_name, data in files.items():
        (directory / file_name).write_bytes(data)
    written = manifest(name, version, files, metadata)
    (directory / "manifest.json").write_text(json.dumps(written, indent=2) + "\n")
    return directory / "model.onnx"


def model_and_fixture_args(doc: str) -> argparse.Namespace:
    """The command line of a script that builds a model and its parity fixture:
    `--models DIR --fixtures FILE`, described by the first line of the script's `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--fixtures", type=Path, required=True)
    return parser.parse_args()


def write_fixture(path: Path, fixture: dict) -> None:
    """Write a parity fixture (inputs and what Python onnxruntime answered) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fixture, indent=2) + "\n")
