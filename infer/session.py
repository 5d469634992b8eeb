"""Load a dermaseg planning model with onnxruntime and check it honours the contract."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError
from dermaseg.fileio import MAX_MODEL_BYTES, check_regular_file
from dermaseg.infer import contract
from dermaseg.infer.precision import PrecisionChoice


@dataclass(frozen=True)
class PlanOutputs:
    """The model's outputs for one photo (batch dimension removed), all of the ONNX contract.

    Planning uses `mask` and `confidence` (and `tta_disagreement`): plans count areas and trace
    outlines on the mask as planned, after the model's post-processing or a person's correction,
    which `boundary` and `area_px` / `area_mm2` (of the raw mask) do not see; `dermaseg export`
    checks those against their definitions, and other tools of the contract read them."""

    mask: np.ndarray
    confidence: np.ndarray
    boundary: np.ndarray
    area_px: np.ndarray
    area_mm2: np.ndarray
    tta_disagreement: float | None = None  # models exported with --tta (flip or mirror) only


def session_options(threads: int = 0) -> ort.SessionOptions:
    """CPU session options: all cores by default, full graph optimisation, no custom ops."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


class PlanningModel:
    """An onnxruntime session over a checked dermaseg planning model."""

    def __init__(
        self, path: str | Path, threads: int = 0, choice: PrecisionChoice | None = None
    ) -> None:
        """`choice` (from `precision.choose_precision`) says why this file was picked."""
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(self.path, "model file not found")
        check_regular_file(self.path, max_bytes=MAX_MODEL_BYTES)  # no FIFO, device, giant
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise InputError(self.path, f"not a loadable ONNX model ({first_line[:200]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_contract()
        self.taxonomy = Taxonomy.from_json(self.metadata[contract.KEY_CLASSES])
        self.working_size = self._working_size()
        self.precision = self.metadata.get(contract.KEY_PRECISION, "fp32")
        self.precision_reason = choice.reason if choice else "the model file given"
        names = {o.name for o in self.session.get_outputs()}
        self.outputs = list(contract.OUTPUTS) + [n for n in contract.OPTIONAL_OUTPUTS if n in names]

    def _check_contract(self) -> None:
        version = self.metadata.get(contract.KEY_CONTRACT)
        if version is None:
            raise InputError(
                self.path,
                "not a dermaseg planning model (no contract version in "
                "its metadata; export one with `dermaseg export`)",
            )
        if version != contract.CONTRACT_VERSION:
            raise InputError(
                self.path,
                f"contract version {version}; this dermaseg reads "
                f"version {contract.CONTRACT_VERSION}",
            )
        found_inputs = {i.name: i.type for i in self.session.get_inputs()}
        found_outputs = {o.name: o.type for o in self.session.get_outputs()}
        for kind, expected, found in (
            ("input", contract.INPUTS, found_inputs),
            ("output", contract.OUTPUTS, found_outputs),
        ):
            for name, dtype in expected.items():
                if found.get(name) != dtype:
                    raise InputError(
                        self.path,
                        f"{kind} {name!r} should be {dtype}, found {found.get(name, 'nothing')}",
                    )
        try:
            Taxonomy.from_json(self.metadata.get(contract.KEY_CLASSES, ""))
        except (ValueError, TypeError) as exc:  # TypeError: JSON that is not a list of objects
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(self.path, f"invalid class list in metadata ({first_line})") from None

    def _working_size(self) -> int:
        text = self.metadata.get(contract.KEY_WORKING_SIZE, "0")
        try:
            size = int(text)
        except ValueError:
            size = -1
        if size < 0:
            raise InputError(self.path, f"invalid working size in metadata ({text[:40]!r})")
        return size

    def run(self, image: np.ndarray, mm_per_pixel: float = 0.0) -> PlanOutputs:
        """Run one RGB uint8 photo [H, W, 3]."""
        outputs = self.run_batch(image[None], np.array([mm_per_pixel], dtype=np.float32))
        return PlanOutputs(*(o[0] for o in outputs[:5]), *(float(o[0]) for o in outputs[5:]))

    def run_batch(self, images: np.ndarray, mm_per_pixel: np.ndarray) -> list[np.ndarray]:
        """Run a batch [N, H, W, 3]; returns mask, confidence, boundary, area_px, area_mm2 (and
        tta_disagreement when the model has it)."""
        feeds = {
            "image": np.ascontiguousarray(images, dtype=np.uint8),
            "mm_per_pixel": np.ascontiguousarray(mm_per_pixel, dtype=np.float32),
        }
        return self.session.run(self.outputs, feeds)

    def info(self) -> dict:
        """Contract version, inputs, outputs, classes and metadata, for `dermaseg model info`."""

        def decode(value: str):
            try:
                return json.loads(value)
            except (ValueError, RecursionError):
                return value

        def shape(arg) -> list:
            return [d if isinstance(d, int) else str(d) for d in arg.shape]

        return {
            "path": str(self.path),
            "contract_version": self.metadata[contract.KEY_CONTRACT],
            "inputs": [
                {"name": i.name, "type": i.type, "shape": shape(i)}
                for i in self.session.get_inputs()
            ],
            "outputs": [
                {"name": o.name, "type": o.type, "shape": shape(o)}
                for o in self.session.get_outputs()
            ],
            "classes": [c.model_dump() for c in self.taxonomy.classes],
            "working_size": self.working_size,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "metadata": {k: decode(v) for k, v in sorted(self.metadata.items())},
        }
