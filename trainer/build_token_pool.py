"""Build `token-pool`, a small variable-length model, and its parity fixture.

The core crate's padding tests serve it: token ids of any length go through an embedding
table; the model outputs the per-token embeddings (zeroed where the attention mask is 0) and
their masked mean. Padded positions therefore change nothing, which is what lets requests of
different lengths share a batch. The fixture holds id sequences of lengths 1 to 16 and what
Python onnxruntime returns for each one run alone.

Usage: python build_token_pool.py --models DIR --fixtures FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from artifacts import write_version

NAME = "token-pool"
VOCABULARY = 64
WIDTH = 8
SEED = 7


def graph() -> bytes:
    """The ONNX graph: Gather, mask, masked mean."""
    rng = np.random.default_rng(SEED)
    table = rng.normal(size=(VOCABULARY, WIDTH)).astype(np.float32)
    dims = ["batch", "sequence"]
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["gathered"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["gathered", "mask3"], ["token_embeddings"]),
        helper.make_node("ReduceSum", ["token_embeddings", "sequence_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "sequence_axis"], ["counts"], keepdims=0),
        helper.make_node("Div", ["summed", "counts"], ["pooled"]),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            NAME,
            inputs=[
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
            ],
            outputs=[
                helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", WIDTH]),
                helper.make_tensor_value_info(
                    "token_embeddings", TensorProto.FLOAT, [*dims, WIDTH]
                ),
            ],
            initializer=[
                numpy_helper.from_array(table, "embeddings"),
                numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
                numpy_helper.from_array(np.array([1], dtype=np.int64), "sequence_axis"),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="oxiserve-trainer",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--fixtures", type=Path, required=True)
    args = parser.parse_args()

    path = write_version(args.models, NAME, 1, graph(), {"vocabulary": VOCABULARY})
    session = ort.InferenceSession(str(path))
    rng = np.random.default_rng(SEED + 1)
    cases = []
    for length in [*range(1, 17), 3, 16, 1, 9]:
        ids = rng.integers(0, VOCABULARY, size=(1, length), dtype=np.int64)
        pooled, tokens = session.run(
            ["pooled", "token_embeddings"],
            {"input_ids": ids, "attention_mask": np.ones_like(ids)},
        )
        cases.append(
            {"ids": ids[0].tolist(), "pooled": pooled[0].tolist(), "tokens": tokens[0].tolist()}
        )
    fixture = {"onnxruntime": ort.__version__, "tolerance": 1e-5, "cases": cases}
    args.fixtures.parent.mkdir(parents=True, exist_ok=True)
    args.fixtures.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {NAME} and {len(cases)} cases to {args.fixtures}")


if __name__ == "__main__":
    main()
