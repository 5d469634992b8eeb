"""INT8 planning models: onnxruntime static QDQ quantization calibrated on the train split.

int8 pays only on CPUs with an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI, Arm
dotprod): there MLAS runs QLinearConv/QDQ convolutions about 1.3-1.5x faster than fp32. Without
one (vpmaddubsw + vpmaddwd issue at half the FMA rate on AVX2-only CPUs), int8 is slower than
fp32 and `plan --precision auto` keeps fp32 (`infer/precision.py`). `quantize_dynamic` is not
used: on these conv nets it is several times slower.

Settings (`QDQ_SETTINGS`): per-channel int8 weights, uint8 activations calibrated with the
99.99th percentile of each tensor over up to 32 train photos (MinMax lets rare outliers stretch
the scale), only Conv quantized, the stem and the segmentation head kept in fp32 (they cost
little and lose most). The accuracy guard: the model is written only when the mean over the
val photos of the per-image Dice on the fixed class set (`metrics.per_image_dice`, the
non-background classes with support in the val truth) is within `max_dice_drop` of fp32's.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.records import Sample
from dermaseg.errors import DermasegError
from dermaseg.fileio import write_bytes
from dermaseg.infer import contract
from dermaseg.infer.session import PlanningModel
from dermaseg.train.metrics import SegmentationMetrics

QDQ_SETTINGS = {
    "format": "QDQ",
    "weights": "int8, per channel",
    "activations": "uint8, percentile 99.99 calibration",
    "quantized_ops": ["Conv"],
    "kept_fp32": "the first and the last convolution (stem and segmentation head)",
}


def _shrink(image: np.ndarray, longer: int) -> np.ndarray:
    """Photos are calibrated at about twice the working size: the graph resizes them anyway."""
    scale = longer / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class PhotoReader(CalibrationDataReader):
    """Feeds calibration photos to onnxruntime's calibrator, one at a time."""

    def __init__(self, photos: list[np.ndarray]) -> None:
        self._feeds: Iterator[dict] = iter(
            {"image": photo[None], "mm_per_pixel": np.zeros(1, np.float32)} for photo in photos
        )

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def load_samples(dataset: Dataset, split: str, limit: int, longer: int) -> list[Sample]:
    records = dataset.split_records(split)[:limit]
    samples = []
    for record in records:
        sample = dataset.load(record)
        image = _shrink(sample.image, longer)
        mask = cv2.resize(
            sample.mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        samples.append(Sample(image, mask, record, split))
    return samples


def guard_scores(model: PlanningModel, samples: list[Sample], classes: list[str] | None = None):
    """Per-image Dice of a planning model's masks (`metrics.per_image_dice`) averaged over a
    fixed class set: `classes`, or the non-background classes with support in the samples'
    truth. Returns (set metrics from `SegmentationMetrics`, the class set, per-image scores)."""
    names = model.taxonomy.names
    metrics = SegmentationMetrics(len(names), names, keep_images=True)
    for sample in samples:
        mask = model.run(sample.image).mask
        metrics.update(torch.from_numpy(mask)[None], torch.from_numpy(sample.mask)[None])
    summary = metrics.compute()
    classes = summary["fixed_classes"] if classes is None else classes
    scores = [
        float(np.mean([row["per_class"][c]["dice"] for c in classes])) if classes else 1.0
        for row in metrics.per_image()
    ]
    return summary, classes, scores


def quantize_qdq(prepared: Path, quantized: Path, reader: CalibrationDataReader) -> None:
    """Static QDQ: per-channel int8 weights, uint8 activations (percentile-calibrated); the first
    and last convolutions stay fp32."""
    quantize_static(
        str(prepared),
        str(quantized),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=_first_and_last_conv(prepared),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": 99.99},
    )


def quantize_model(
    fp32_path: Path,
    out: Path,
    calibration: Path | Dataset,
    *,
    max_dice_drop: float = 0.01,
    calibration_photos: int = 32,
    overwrite: bool = False,
) -> dict:
    """Quantize `fp32_path` to QDQ int8 at `out` if Dice holds; returns the Dice report."""
    fp32 = PlanningModel(fp32_path)
    dataset = calibration if isinstance(calibration, Dataset) else Dataset.open(calibration)
    longer = 2 * fp32.working_size
    calibrate = load_samples(dataset, "train", calibration_photos, longer)
    validate = load_samples(dataset, "val", 10_000, longer)
    if not calibrate or not validate:
        raise DermasegError(
            f"{calibration}: need photos in the train (calibration) and val (accuracy check) splits"
        )
    with tempfile.TemporaryDirectory(prefix="dermaseg-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
            quantize_qdq(prepared, quantized, PhotoReader([s.image for s in calibrate]))
        _copy_metadata(fp32_path, quantized)
        int8 = PlanningModel(quantized)
        fp32_set, classes, fp32_scores = guard_scores(fp32, validate)
        int8_set, _, int8_scores = guard_scores(int8, validate, classes)
        report = {
            "guard": "mean over validation photos of per-image Dice on the fixed class set",
            "fixed_classes": classes,
            "fp32_dice": {
                "mean": float(np.mean(fp32_scores)),
                "pooled": fp32_set["fixed_mean_dice"],
            },
            "int8_dice": {
                "mean": float(np.mean(int8_scores)),
                "pooled": int8_set["fixed_mean_dice"],
            },
            "worst_image_drop": float(np.max(np.subtract(fp32_scores, int8_scores))),
            "calibration_photos": len(calibrate),
            "validation_photos": len(validate),
            "max_dice_drop": max_dice_drop,
            "settings": QDQ_SETTINGS,
        }
        report["dice_drop"] = report["fp32_dice"]["mean"] - report["int8_dice"]["mean"]
        if not report["dice_drop"] <= max_dice_drop:
            raise DermasegError(
                f"int8 mean Dice {report['int8_dice']['mean']:.4f} is "
                f"{report['dice_drop']:.4f} below fp32 ({report['fp32_dice']['mean']:.4f}) on "
                f"{', '.join(classes) or 'no class'}; limit {max_dice_drop}: no int8 model written"
            )
        write_bytes(out, quantized.read_bytes(), overwrite=overwrite)
    return report


def _first_and_last_conv(path: Path) -> list[str]:
    """The stem and the segmentation head stay fp32: they cost little and lose most in int8."""
    import onnx

    convs = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"]
    return [convs[0], convs[-1]] if len(convs) > 1 else convs


def _copy_metadata(source: Path, target: Path) -> None:
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    metadata[contract.KEY_PRECISION] = "int8"
    from dermaseg.train.export import set_metadata

    set_metadata(target, metadata)
