"""A tiny planning model without a network, written with onnx.helper: a pixel is class 1 when its
red channel is above 127, and the confidence is |red - 127.5| + 127.5 (so red 0 or 255 is sure,
red near 128 is a coin toss). It honours the planning contract (names, types, metadata), so
tests run the real onnxruntime path in milliseconds and control the confidence exactly."""

from __future__ import annotations

import json
from pathlib import Path

CLASSES = [
    {"id": 0, "name": "background", "color": [0, 0, 0], "treatable": False},
    {"id": 1, "name": "vitiligo", "color": [255, 196, 0], "treatable": True},
]


def write_rule_model(
    path: Path, metadata: dict[str, str] | None = None, classes: list[dict] | None = None
) -> Path:
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, values, dtype=TensorProto.FLOAT, dims=None):
        dims = [len(values)] if dims is None else dims
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, dtype, dims, values)
        )

    nodes = [
        const("c0", [0], TensorProto.INT64),
        const("c1", [1], TensorProto.INT64),
        const("c3", [3], TensorProto.INT64),
        const("axes_hw", [1, 2], TensorProto.INT64),
        const("half", [127.5], dims=[]),
        const("minus1", [-1.0], dims=[]),
        helper.make_node("Slice", ["image", "c0", "c1", "c3"], ["red4"]),
        helper.make_node("Squeeze", ["red4", "c3"], ["red"]),
        helper.make_node("Cast", ["red"], ["redf"], to=TensorProto.FLOAT),
        helper.make_node("Greater", ["redf", "half"], ["fg"]),
        helper.make_node("Cast", ["fg"], ["mask"], to=TensorProto.UINT8),
        helper.make_node("Sub", ["redf", "half"], ["centred"]),
        helper.make_node("Abs", ["centred"], ["distance"]),
        helper.make_node("Add", ["distance", "half"], ["conff"]),
        helper.make_node("Cast", ["conff"], ["confidence"], to=TensorProto.UINT8),
        helper.make_node("Less", ["redf", "minus1"], ["never"]),
        helper.make_node("Cast", ["never"], ["boundary"], to=TensorProto.UINT8),
        helper.make_node("Cast", ["fg"], ["fgf"], to=TensorProto.FLOAT),
        helper.make_node("Not", ["fg"], ["bg"]),
        helper.make_node("Cast", ["bg"], ["bgf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["fgf", "axes_hw"], ["fg_n"], keepdims=0),
        helper.make_node("ReduceSum", ["bgf", "axes_hw"], ["bg_n"], keepdims=0),
        helper.make_node("Unsqueeze", ["fg_n", "c1"], ["fg_col"]),
        helper.make_node("Unsqueeze", ["bg_n", "c1"], ["bg_col"]),
        helper.make_node("Concat", ["bg_col", "fg_col"], ["areaf"], axis=1),
        helper.make_node("Cast", ["areaf"], ["area_px"], to=TensorProto.INT64),
        helper.make_node("Mul", ["mm_per_pixel", "mm_per_pixel"], ["mm2"]),
        helper.make_node("Unsqueeze", ["mm2", "c1"], ["mm2_col"]),
        helper.make_node("Mul", ["areaf", "mm2_col"], ["area_mm2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rule_model",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3]),
            helper.make_tensor_value_info("mm_per_pixel", TensorProto.FLOAT, ["N"]),
        ],
        [
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", "H", "W"]),
            helper.make_tensor_value_info("confidence", TensorProto.UINT8, ["N", "H", "W"]),
            helper.make_tensor_value_info("boundary", TensorProto.UINT8, ["N", "H", "W"]),
            helper.make_tensor_value_info("area_px", TensorProto.INT64, ["N", 2]),
            helper.make_tensor_value_info("area_mm2", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {
        "dermaseg.contract_version": "1",
        "dermaseg.classes": json.dumps(classes or CLASSES),
        "dermaseg.working_size": "64",
    } | (metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
