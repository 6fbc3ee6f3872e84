"""A real KServe v2 client (tritonclient) against a running oxiserve.

Run by tests/integration/kserve.rs.

Usage:
  kserve_client.py http HOST:PORT MODELS_DIR   metadata, readiness, inference, errors over HTTP
  kserve_client.py grpc HOST:PORT MODELS_DIR   the same over gRPC, raw and typed contents
  kserve_client.py health HOST:PORT STATUS     grpc.health.v1 reports STATUS (SERVING or
                                               NOT_SERVING) for the server and each service,
                                               within 2 s; reflection lists the services

Every check raises AssertionError with what differed; the exit status tells the Rust test.
Expected results come from Python onnxruntime on the same model files.
"""

import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

MODE, URL = sys.argv[1], sys.argv[2]
MODELS = Path(sys.argv[3]) if MODE in ("http", "grpc") else None
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
    """`call` fails with `status` (an HTTP code, or a gRPC code as `StatusCode.NAME`) and a
    message containing `words`."""
    try:
        call()
    except InferenceServerException as error:
        assert error.status() == str(status), (error.status(), error.message())
        assert words in error.message(), (words, error.message())
        return
    raise AssertionError(f"expected {status} ({words}), the call succeeded")


def same_signature(name, metadata):
    """`metadata` (name, datatype, shape of inputs and outputs) is the manifest's."""
    declared = manifest(name)
    for kind in ("inputs", "outputs"):
        got = [(t["name"], t["datatype"], list(t["shape"])) for t in metadata[kind]]
        want = [(t["name"], t["datatype"], t["shape"]) for t in declared[kind]]
        assert got == want, (name, kind, got, want)


def check_result(name, result, features):
    """Both outputs of `result` equal onnxruntime's on `features`."""
    label, probabilities = reference(name, features)
    got_label = result.as_numpy("label")
    got_probabilities = result.as_numpy("probabilities")
    assert got_label.dtype == np.int64 and got_label.shape == label.shape, got_label
    assert (got_label == label).all(), (name, got_label, label)
    assert got_probabilities.dtype == np.float32, got_probabilities.dtype
    np.testing.assert_allclose(got_probabilities, probabilities, rtol=0, atol=1e-6)


def http_checks():
    client = httpclient.InferenceServerClient(URL)
    rng = np.random.default_rng(7)

    def features_input(features, binary, datatype="FP32"):
        tensor = httpclient.InferInput("features", list(features.shape), datatype)
        tensor.set_data_from_numpy(features, binary_data=binary)
        return tensor

    # Server and model metadata, readiness.
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "oxiserve" and "binary_tensor_data" in server["extensions"], server
    for name in NAMES:
        meta = client.get_model_metadata(name)
        assert meta["name"] == name and meta["versions"] == ["1"], meta
        assert meta["platform"] == "onnxruntime_onnx", meta
        same_signature(name, meta)
        assert client.get_model_metadata(name, model_version="1") == meta
        assert client.is_model_ready(name) and client.is_model_ready(name, model_version="1")
        assert not client.is_model_ready(name, model_version="7")
    assert not client.is_model_ready("no-such-model")
    refused(lambda: client.get_model_metadata("no-such-model"), 404, "no-such-model")
    refused(lambda: client.get_model_metadata(NAMES[0], model_version="7"), 404, "version 7")

    # Inference in binary mode (tritonclient's default) and JSON mode, batch sizes 1 and 7.
    for name in NAMES:
        for rows in (1, 7):
            features = rng.normal(size=(rows, 9)).astype(np.float32)
            for binary in (True, False):
                outputs = [
                    httpclient.InferRequestedOutput("label", binary_data=binary),
                    httpclient.InferRequestedOutput("probabilities", binary_data=binary),
                ]
                result = client.infer(name, [features_input(features, binary)], outputs=outputs)
                check_result(name, result, features)
                response = result.get_response()
                assert response["model_name"] == name and response["model_version"] == "1"
            # No outputs named: all of them, in binary (tritonclient asks binary_data_output).
            result = client.infer(name, [features_input(features, True)], request_id="req-1")
            check_result(name, result, features)
            assert result.get_response()["id"] == "req-1"

    # Requested outputs: only what was asked for comes back; a versioned call.
    features = rng.normal(size=(3, 9)).astype(np.float32)
    _, probabilities = reference(NAMES[1], features)
    only = [httpclient.InferRequestedOutput("probabilities")]
    good = features_input(features, True)
    result = client.infer(NAMES[1], [good], outputs=only, model_version="1")
    assert result.as_numpy("label") is None
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-6)

    # Errors: unknown model or version 404, a bad request 400, each saying why.
    refused(lambda: client.infer("no-such-model", [good]), 404, "no-such-model")
    refused(lambda: client.infer(NAMES[0], [good], model_version="7"), 404, "version 7")
    for binary in (True, False):
        wide = features_input(rng.normal(size=(2, 8)).astype(np.float32), binary)
        refused(lambda: client.infer(NAMES[0], [wide]), 400, "shape [2, 8]")
    doubles = features_input(features.astype(np.float64), True, "FP64")
    refused(lambda: client.infer(NAMES[0], [doubles]), 400, "datatype FP64")
    nope = [httpclient.InferRequestedOutput("nope")]
    refused(lambda: client.infer(NAMES[0], [good], outputs=nope), 400, "no output `nope`")
    renamed = httpclient.InferInput("pixels", [3, 9], "FP32")
    renamed.set_data_from_numpy(features)
    refused(lambda: client.infer(NAMES[0], [renamed]), 400, "no input `pixels`")


def grpc_checks():
    client = grpcclient.InferenceServerClient(URL)
    rng = np.random.default_rng(11)

    def features_input(features, datatype="FP32"):
        tensor = grpcclient.InferInput("features", list(features.shape), datatype)
        tensor.set_data_from_numpy(features)
        return tensor

    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "oxiserve", server
    for name in NAMES:
        meta = client.get_model_metadata(name, as_json=True)
        assert meta["name"] == name and meta["versions"] == ["1"], meta
        assert meta["platform"] == "onnxruntime_onnx", meta
        # Protobuf JSON spells int64 shapes as strings.
        for kind in ("inputs", "outputs"):
            for tensor in meta[kind]:
                tensor["shape"] = [int(d) for d in tensor["shape"]]
        same_signature(name, meta)
        assert client.is_model_ready(name) and client.is_model_ready(name, model_version="1")
        assert not client.is_model_ready(name, model_version="7")
    refused(lambda: client.is_model_ready("no-such-model"), "StatusCode.NOT_FOUND", "no-such")
    refused(
        lambda: client.get_model_metadata(NAMES[0], model_version="7"),
        "StatusCode.NOT_FOUND",
        "version 7",
    )

    # raw_input_contents (tritonclient's way), batch sizes 1 and 7, all or some outputs.
    for name in NAMES:
        for rows in (1, 7):
            features = rng.normal(size=(rows, 9)).astype(np.float32)
            result = client.infer(name, [features_input(features)], request_id="req-2")
            check_result(name, result, features)
            response = result.get_response()
            assert (response.model_name, response.model_version, response.id) == (
                name,
                "1",
                "req-2",
            )
    features = rng.normal(size=(3, 9)).astype(np.float32)
    only = [grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer(NAMES[1], [features_input(features)], outputs=only, model_version="1")
    assert result.as_numpy("label") is None
    _, probabilities = reference(NAMES[1], features)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-6)

    # Typed contents, through the protocol's stub: the answer comes back typed too.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(URL))
    request = service_pb2.ModelInferRequest(model_name=NAMES[0])
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[3, 9])
    tensor.contents.fp32_contents.extend(features.ravel().tolist())
    response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    outputs = {o.name: o for o in response.outputs}
    label, probabilities = reference(NAMES[0], features)
    assert list(outputs["label"].contents.int64_contents) == label.tolist()
    got = np.array(outputs["probabilities"].contents.fp32_contents, dtype=np.float32)
    np.testing.assert_allclose(got.reshape(3, 3), probabilities, rtol=0, atol=1e-6)
    assert list(outputs["probabilities"].shape) == [3, 3]

    # Errors with their status codes.
    good = features_input(features)
    refused(lambda: client.infer("no-such-model", [good]), "StatusCode.NOT_FOUND", "no-such")
    wide = features_input(rng.normal(size=(2, 8)).astype(np.float32))
    refused(lambda: client.infer(NAMES[0], [wide]), "StatusCode.INVALID_ARGUMENT", "shape [2, 8]")
    doubles = features_input(features.astype(np.float64), "FP64")
    invalid = "StatusCode.INVALID_ARGUMENT"
    refused(lambda: client.infer(NAMES[0], [doubles]), invalid, "datatype FP64")
    short = service_pb2.ModelInferRequest(model_name=NAMES[0])
    short.inputs.add(name="features", datatype="FP32", shape=[3, 9]).contents.fp32_contents.extend(
        [1.0] * 26
    )
    try:
        stub.ModelInfer(short)
        raise AssertionError("26 values for a [3, 9] tensor were accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "26 values" in error.details(), error.details()


def health_checks(expected):
    channel = grpc.insecure_channel(URL)
    health = health_pb2_grpc.HealthStub(channel)
    want = health_pb2.HealthCheckResponse.ServingStatus.Value(expected)
    deadline = time.monotonic() + 2
    services = ["inference.GRPCInferenceService", "oxiserve.v1.Pipeline"]
    for service in ["", *services]:
        while True:
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            if status == want or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == want, (service, status, expected)
    listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {*services, "grpc.health.v1.Health"} <= listed, listed


CHECKS = {"http": http_checks, "grpc": grpc_checks}
if MODE == "health":
    health_checks(sys.argv[3])
else:
    CHECKS[MODE]()
print(json.dumps({"passed": MODE}))
