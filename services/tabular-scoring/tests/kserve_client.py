"""A real KServe v2 client (tritonclient) against a running oxiserve; run by tests/kserve.rs.

Usage: kserve_client.py HOST:PORT MODELS_DIR

Every check raises AssertionError with what differed; the exit status tells the Rust test.
Expected results come from Python onnxruntime on the same model files.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

URL, MODELS = sys.argv[1], Path(sys.argv[2])
NAMES = ["penguins-forest", "penguins-linear"]


def manifest(name):
    return json.loads((MODELS / name / "1" / "manifest.json").read_text())


def reference(name, features):
    session = onnxruntime.InferenceSession(
        str(MODELS / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    label, probabilities = session.run(["label", "probabilities"], {"features": features})
    return label, probabilities


def refused(call, status, words):
    """`call` fails with HTTP `status` and a message containing `words`."""
    try:
        call()
    except InferenceServerException as error:
        assert error.status() == str(status), (error.status(), error.message())
        assert words in error.message(), (words, error.message())
        return
    raise AssertionError(f"expected HTTP {status} ({words}), the call succeeded")


def features_input(features, binary, datatype="FP32"):
    tensor = httpclient.InferInput("features", list(features.shape), datatype)
    tensor.set_data_from_numpy(features, binary_data=binary)
    return tensor


client = httpclient.InferenceServerClient(URL)
checks = []

# Server and model metadata, readiness.
assert client.is_server_live() and client.is_server_ready()
server = client.get_server_metadata()
assert server["name"] == "oxiserve" and "binary_tensor_data" in server["extensions"], server
for name in NAMES:
    meta = client.get_model_metadata(name)
    declared = manifest(name)
    assert meta["name"] == name and meta["versions"] == ["1"], meta
    assert meta["platform"] == "onnxruntime_onnx", meta
    for kind in ("inputs", "outputs"):
        got = [(t["name"], t["datatype"], t["shape"]) for t in meta[kind]]
        want = [(t["name"], t["datatype"], t["shape"]) for t in declared[kind]]
        assert got == want, (name, kind, got, want)
    assert client.get_model_metadata(name, model_version="1") == meta
    assert client.is_model_ready(name) and client.is_model_ready(name, model_version="1")
    assert not client.is_model_ready(name, model_version="7")
assert not client.is_model_ready("no-such-model")
refused(lambda: client.get_model_metadata("no-such-model"), 404, "no-such-model")
refused(lambda: client.get_model_metadata(NAMES[0], model_version="7"), 404, "version 7")
checks.append("metadata and readiness")

# Inference in binary mode (tritonclient's default) and JSON mode, batch sizes 1 and 7, equal
# to Python onnxruntime on the same model.
rng = np.random.default_rng(7)
for name in NAMES:
    for rows in (1, 7):
        features = rng.normal(size=(rows, 9)).astype(np.float32)
        label, probabilities = reference(name, features)
        for binary in (True, False):
            outputs = [
                httpclient.InferRequestedOutput("label", binary_data=binary),
                httpclient.InferRequestedOutput("probabilities", binary_data=binary),
            ]
            result = client.infer(name, [features_input(features, binary)], outputs=outputs)
            got_label = result.as_numpy("label")
            got_probabilities = result.as_numpy("probabilities")
            assert got_label.dtype == np.int64 and got_label.shape == (rows,), got_label
            assert (got_label == label).all(), (name, binary, got_label, label)
            assert got_probabilities.dtype == np.float32, got_probabilities.dtype
            np.testing.assert_allclose(got_probabilities, probabilities, rtol=0, atol=1e-6)
            response = result.get_response()
            assert response["model_name"] == name and response["model_version"] == "1"
        # No outputs named: all of them, in binary (tritonclient asks binary_data_output).
        result = client.infer(name, [features_input(features, True)], request_id="req-1")
        assert (result.as_numpy("label") == label).all()
        assert result.get_response()["id"] == "req-1"
checks.append("binary and JSON inference equal onnxruntime")

# Requested outputs: only what was asked for comes back; a versioned call uses that version.
features = rng.normal(size=(3, 9)).astype(np.float32)
_, probabilities = reference(NAMES[1], features)
only = [httpclient.InferRequestedOutput("probabilities")]
result = client.infer(NAMES[1], [features_input(features, True)], outputs=only, model_version="1")
assert result.as_numpy("label") is None
assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-6)
checks.append("requested outputs")

# Errors: unknown model or version 404, a bad request 400, each with a message that says why.
good = features_input(features, True)
refused(lambda: client.infer("no-such-model", [good]), 404, "no-such-model")
refused(lambda: client.infer(NAMES[0], [good], model_version="7"), 404, "version 7")
wide = features_input(rng.normal(size=(2, 8)).astype(np.float32), True)
refused(lambda: client.infer(NAMES[0], [wide]), 400, "shape [2, 8]")
wide_json = features_input(rng.normal(size=(2, 8)).astype(np.float32), False)
refused(lambda: client.infer(NAMES[0], [wide_json]), 400, "shape [2, 8]")
doubles = features_input(features.astype(np.float64), True, "FP64")
refused(lambda: client.infer(NAMES[0], [doubles]), 400, "datatype FP64")
refused(
    lambda: client.infer(NAMES[0], [good], outputs=[httpclient.InferRequestedOutput("nope")]),
    400,
    "no output `nope`",
)
renamed = httpclient.InferInput("pixels", [3, 9], "FP32")
renamed.set_data_from_numpy(features)
refused(lambda: client.infer(NAMES[0], [renamed]), 400, "no input `pixels`")
checks.append("errors")

print(json.dumps({"passed": checks}))
