"""Build `dtype-echo`, a model with one input and one output of every KServe datatype, for the
core crate's KServe v2 datatype tests (BYTES as ONNX strings).

Each output is its input passed through (`Identity`), except the boolean one, which is
negated (`Not`), so that every byte of every datatype must survive the wire both ways and the
tests compare against what Python onnxruntime computes. All shapes are `[batch, 3]`.

Usage: python build_dtype_echo.py --models DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from onnx import TensorProto, helper

from artifacts import write_version

NAME = "dtype-echo"
# KServe datatype name -> ONNX element type.
DATATYPES = {
    "bool": TensorProto.BOOL,
    "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16,
    "uint32": TensorProto.UINT32,
    "uint64": TensorProto.UINT64,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "fp16": TensorProto.FLOAT16,
    "fp32": TensorProto.FLOAT,
    "fp64": TensorProto.DOUBLE,
    "bytes": TensorProto.STRING,
}


def graph() -> bytes:
    """`y_<type> = x_<type>` for every type, `y_bool = not x_bool`."""
    shape = ["batch", 3]
    inputs, outputs, nodes = [], [], []
    for name, element in DATATYPES.items():
        inputs.append(helper.make_tensor_value_info(f"x_{name}", element, shape))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", element, shape))
        op = "Not" if name == "bool" else "Identity"
        nodes.append(helper.make_node(op, [f"x_{name}"], [f"y_{name}"]))
    model = helper.make_model(
        helper.make_graph(nodes, NAME, inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="model repository root")
    args = parser.parse_args()
    path = write_version(args.models, NAME, 1, graph(), {"datatypes": list(DATATYPES)})
    print(f"wrote {NAME} to {path}")


if __name__ == "__main__":
    main()
