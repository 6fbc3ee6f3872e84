"""Build two models whose cost is what matters, not their answers, for the core crate's
tests and benchmarks of the path around a model.

* `identity`: `x` FP32 `[batch, 4]` passed through (`Identity`): a model that costs nothing,
  so that what a request costs is the framework's path around it.
* `tanh-chain`: `x` FP32 `[batch, 128]` through 1000 rounds of `y = tanh(y @ W)` with one
  128x128 weight matrix: a few milliseconds per row, a slow model, which must never run on the
  async runtime and whose requests batch under load.

Usage: python build_cost_models.py --models DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artifacts import write_version

WIDTH = 128
ROUNDS = 1000
SEED = 7


def model(name: str, nodes, width: int, initializers=()) -> bytes:
    """An opset-17 model with input `x` and output `y`, both FP32 `[batch, width]`."""
    shape = ["batch", width]
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=list(initializers),
    )
    built = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="oxiserve-trainer"
    )
    built.ir_version = 8
    onnx.checker.check_model(built)
    return built.SerializeToString()


def identity() -> bytes:
    return model("identity", [helper.make_node("Identity", ["x"], ["y"])], 4)


def tanh_chain() -> bytes:
    # Scaled so that activations stay in tanh's slope instead of saturating.
    rng = np.random.default_rng(SEED)
    weight = (rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
    nodes, current = [], "x"
    for i in range(ROUNDS):
        last = i == ROUNDS - 1
        product, out = f"p{i}", "y" if last else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [product]))
        nodes.append(helper.make_node("Tanh", [product], [out]))
        current = out
    return model("tanh-chain", nodes, WIDTH, [numpy_helper.from_array(weight, "w")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    args = parser.parse_args()
    write_version(args.models, "identity", 1, identity(), {})
    write_version(args.models, "tanh-chain", 1, tanh_chain(), {"rounds": ROUNDS})


if __name__ == "__main__":
    main()
