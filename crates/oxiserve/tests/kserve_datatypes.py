"""Every datatype over KServe v2 with tritonclient; run by tests/integration/kserve_datatypes.rs.

Usage: kserve_datatypes.py HTTP_HOST:PORT GRPC_HOST:PORT MODELS_DIR

Sends one [4, 3] tensor of each datatype to `dtype-echo` (HTTP binary, HTTP JSON, gRPC raw)
and asserts that every output equals Python onnxruntime's on the same model: the values span
each type's range, so a byte lost or an endianness slip shows.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

HTTP, GRPC, MODELS = sys.argv[1], sys.argv[2], Path(sys.argv[3])
MODEL = "dtype-echo"
TYPES = {
    "bool": (np.bool_, "BOOL"),
    "uint8": (np.uint8, "UINT8"),
    "uint16": (np.uint16, "UINT16"),
    "uint32": (np.uint32, "UINT32"),
    "uint64": (np.uint64, "UINT64"),
    "int8": (np.int8, "INT8"),
    "int16": (np.int16, "INT16"),
    "int32": (np.int32, "INT32"),
    "int64": (np.int64, "INT64"),
    "fp16": (np.float16, "FP16"),
    "fp32": (np.float32, "FP32"),
    "fp64": (np.float64, "FP64"),
    "bytes": (np.object_, "BYTES"),
}


def values(name, dtype):
    """A [4, 3] array across the type's range, extremes included."""
    rng = np.random.default_rng(len(name))
    if dtype is np.object_:
        words = ["", "penguin", "Adélie", "ペンギン", "a b", "x" * 300]
        return np.array([[words[(i + j) % len(words)] for j in range(3)] for i in range(4)], dtype=object)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=(4, 3)).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(4, 3), dtype=dtype, endpoint=True)
        array[0, 0], array[0, 1] = info.min, info.max
        return array
    scale = 1e3 if dtype is np.float16 else 1e6
    return (rng.normal(size=(4, 3)) * scale).astype(dtype)


arrays = {name: values(name, dtype) for name, (dtype, _) in TYPES.items()}
session = onnxruntime.InferenceSession(str(MODELS / MODEL / "1" / "model.onnx"))
expected = dict(
    zip(
        [f"y_{n}" for n in TYPES],
        session.run([f"y_{n}" for n in TYPES], {f"x_{n}": a for n, a in arrays.items()}),
    )
)
checked = 0


def text(array):
    """BYTES as tritonclient returns them (bytes) and as onnxruntime does (str), made alike."""
    return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(array)


def compare(result, mode):
    global checked
    for name, (dtype, _) in TYPES.items():
        got = result.as_numpy(f"y_{name}")
        want = expected[f"y_{name}"]
        if dtype is np.object_:
            got, want = text(got), text(want)
        assert got is not None, (mode, name)
        assert got.dtype == want.dtype and got.shape == want.shape, (mode, name, got, want)
        assert (got == want).all(), (mode, name, got, want)
        checked += 1


for binary in (True, False):
    client = httpclient.InferenceServerClient(HTTP)
    inputs = []
    for name, (_, datatype) in TYPES.items():
        tensor = httpclient.InferInput(f"x_{name}", [4, 3], datatype)
        tensor.set_data_from_numpy(arrays[name], binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(f"y_{n}", binary_data=binary) for n in TYPES]
    compare(client.infer(MODEL, inputs, outputs=outputs), f"http binary={binary}")

client = grpcclient.InferenceServerClient(GRPC)
inputs = []
for name, (_, datatype) in TYPES.items():
    tensor = grpcclient.InferInput(f"x_{name}", [4, 3], datatype)
    tensor.set_data_from_numpy(arrays[name])
    inputs.append(tensor)
compare(client.infer(MODEL, inputs), "grpc")

metadata = client.get_model_metadata(MODEL, as_json=True)
assert [t["datatype"] for t in metadata["inputs"]] == [d for _, d in TYPES.values()], metadata
print(json.dumps({"checked": checked}))
