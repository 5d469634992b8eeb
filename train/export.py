"""`dermaseg export`: a checkpoint becomes one self-contained planning ONNX model, verified.

Every export is checked before it gets its final name: onnx.checker, then the contract's
invariants and agreement with the PyTorch model at several photo sizes (odd ones included).
With a dataset (`data`, by default the one the checkpoint was trained on, when it is there),
the confidence temperature and the post-processing rule are fitted on its val split
(`train/output_fit.py`); with `int8`, an int8 sibling (`model.int8.onnx`) calibrated on its
train split is written when it passes the accuracy guard (`train/quantize.py`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from dermaseg import __version__
from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.synth import generate_photo
from dermaseg.errors import DermasegError, OutputExistsError
from dermaseg.fileio import atomic_open
from dermaseg.infer import contract
from dermaseg.infer.session import PlanningModel
from dermaseg.train.evaluate import load_model
from dermaseg.train.metrics import boundary_mask
from dermaseg.train.output_fit import fit_temperature, learn_postprocess, val_passes
from dermaseg.train.planning_graph import PlanningGraph, to_photo_size
from dermaseg.validation import WORKING_SIZE, working_size_text

PARITY_SIZES = ((333, 517), (1080, 1920), (517, 333), (256, 256))
MIN_MASK_AGREEMENT = 0.999
# A pixel whose two most likely classes are closer than this (calibrated probability) is a
# near-tie: float rounding between ORT and PyTorch may pick either class there, so parity is
# judged on the other (decisive) pixels. Without it a model that is unsure over a large region
# of an unfamiliar photo fails export though both runtimes compute the same network.
TIE_MARGIN = 0.02
MIN_RAW_AGREEMENT = 0.99  # over every pixel, near-ties included: a floor near-ties cannot hide


@dataclass
class ExportReport:
    path: str
    precision: str
    working_size: int
    export_seconds: float = 0.0
    parity: list[dict] = field(default_factory=list)
    tta: str = "none"
    confidence_calibration: dict | None = None
    postprocess: dict | None = None
    int8: dict | None = None  # the guard's report; "path" when written, "refused" when not


def check_invariants(outputs: list[np.ndarray], mm_per_pixel: np.ndarray, classes: int) -> None:
    """Raise DermasegError if any documented invariant of the outputs fails."""
    mask, _, boundary, area_px, area_mm2 = outputs[:5]
    for i in range(mask.shape[0]):
        counts = np.bincount(mask[i].ravel(), minlength=classes)
        if len(counts) > classes or not np.array_equal(counts, area_px[i]):
            raise DermasegError("area_px does not equal the mask's class counts")
        if int(area_px[i].sum()) != mask[i].size:
            raise DermasegError("area_px does not sum to H*W")
        expected = boundary_mask(torch.from_numpy(mask[i]).long(), ignore_index=-1).numpy()
        if not np.array_equal(boundary[i], expected):
            raise DermasegError("boundary differs from its definition")
        expected = area_px[i].astype(np.float64) * float(mm_per_pixel[i]) ** 2
        if not np.allclose(area_mm2[i], expected, rtol=1e-5):
            raise DermasegError("area_mm2 is not area_px x mm_per_pixel^2")


def sample_photos(sizes=PARITY_SIZES) -> list[np.ndarray]:
    """Synthetic skin and scalp photos at the given (height, width) sizes."""
    photos = []
    for i, (height, width) in enumerate(sizes):
        photo = generate_photo(1000 + i, (width, height), with_marker=i % 2 == 0)
        photos.append(photo.rgb)
    return photos


@torch.no_grad()
def decisive_pixels(probabilities: torch.Tensor, photo_size: tuple[int, int]) -> np.ndarray:
    """bool [N, H, W]: pixels whose top-two class probabilities (the graph's
    `working_probabilities`, resampled to the photo's size as the graph resamples them) differ
    by at least TIE_MARGIN."""
    top2 = to_photo_size(probabilities.float(), *photo_size).topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1] >= TIE_MARGIN).numpy()


def export_tta(meta: dict, asked: str | None) -> str | None:
    """The graph's test-time augmentation (None, "flip" or "mirror"): `asked` ("none", "flip"
    or "mirror") when given, else what the checkpoint's recipe asks for (`export.tta`;
    checkpoints from before the key: none)."""
    tta = asked or (meta["config"].get("export") or {}).get("tta", "none")
    return None if tta == "none" else tta


def verify_against_torch(
    onnx_path: Path,
    graph: PlanningGraph,
    classes: int,
    photos: list[np.ndarray],
    min_agreement: float,
) -> list[dict]:
    """Contract invariants and mask agreement with the PyTorch graph, per photo size.

    `mask_agreement` is judged on decisive pixels (`decisive_pixels`); `raw_agreement` counts
    every pixel and `near_tie_share` says how many were left out."""
    model = PlanningModel(onnx_path, threads=0)
    rows = []
    for photo in photos:
        mm = np.array([0.1, 0.0], dtype=np.float32)
        batch = np.stack([photo, photo[::-1].copy()])
        outputs = model.run_batch(batch, mm)
        check_invariants(outputs, mm, classes)
        with torch.no_grad():  # one run of the network gives the reference and the margins
            image = torch.from_numpy(batch)
            logits, probabilities = graph.working_probabilities(image)
            reference = graph.outputs(image, logits, probabilities, torch.from_numpy(mm))
        same = outputs[0] == reference[0].numpy()
        decisive = decisive_pixels(probabilities, batch.shape[1:3])
        agreement = float(same[decisive].mean()) if decisive.any() else 1.0
        rows.append(
            {
                "height": photo.shape[0],
                "width": photo.shape[1],
                "mask_agreement": agreement,
                "raw_agreement": float(same.mean()),
                "near_tie_share": float(1.0 - decisive.mean()),
            }
        )
        if agreement < min_agreement or rows[-1]["raw_agreement"] < MIN_RAW_AGREEMENT:
            raise DermasegError(
                f"ONNX and PyTorch masks agree on {agreement:.4%} of the pixels where the model "
                f"is decisive (need {min_agreement:.1%}) and on {rows[-1]['raw_agreement']:.4%} "
                f"of all (need {MIN_RAW_AGREEMENT:.0%}) at {photo.shape[1]}x{photo.shape[0]}"
            )
    return rows


def _metadata(
    meta: dict,
    working_size: int,
    precision: str,
    calibration: dict,
    postprocess: dict | None,
    tta: str | None,
) -> dict[str, str]:
    config = meta["config"]
    metrics = meta.get("metrics") or {}
    recipe = {
        "name": config["name"],
        "encoder": config["model"]["encoder"],
        "encoder_weights": config["model"]["encoder_weights"],
        "decoder_channels": config["model"]["decoder_channels"],
        "decoder_attention": config["model"].get("decoder_attention"),  # older checkpoints: none
        "trained_input_size": config["input"]["size"],
        "epochs": meta["epoch"],
        "loss": config["loss"]["name"],
        "data": config["data"],
        "normalisation": meta["normalisation"],
    }
    summary = {k: metrics.get(k) for k in ("mean_dice", "mean_iou", "mean_boundary_f1")}
    summary["per_class"] = metrics.get("per_class")
    return {
        contract.KEY_CONTRACT: contract.CONTRACT_VERSION,
        contract.KEY_CLASSES: json.dumps(meta["taxonomy"]),
        contract.KEY_WORKING_SIZE: str(working_size),
        contract.KEY_RECIPE: json.dumps(recipe),
        contract.KEY_METRICS: json.dumps(summary),
        contract.KEY_VERSION: __version__,
        contract.KEY_PRECISION: precision,
        contract.KEY_BOUNDARY: contract.BOUNDARY_DEFINITION,
        contract.KEY_CALIBRATION: json.dumps(calibration),
        contract.KEY_TTA: json.dumps({"mode": tta or "none"}),
        **({contract.KEY_POSTPROCESS: json.dumps(postprocess)} if postprocess else {}),
    }


def to_onnx(graph: PlanningGraph, path: Path) -> None:
    """Export with torch.export (dynamic batch, height and width; opset 18)."""
    example = (torch.zeros(2, 96, 128, 3, dtype=torch.uint8), torch.zeros(2))
    batch = torch.export.Dim("batch", min=1, max=256)
    height = torch.export.Dim("height", min=8, max=32768)
    width = torch.export.Dim("width", min=8, max=32768)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on shared dynamic axis names
        program = torch.onnx.export(
            graph,
            example,
            dynamo=True,
            opset_version=18,
            verbose=False,
            input_names=list(contract.INPUTS),
            output_names=list(contract.OUTPUTS)
            + (list(contract.OPTIONAL_OUTPUTS) if graph.tta else []),
            dynamic_shapes={"image": {0: batch, 1: height, 2: width}, "mm_per_pixel": {0: batch}},
        )
    program.save(str(path))


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "dermaseg"
    model.doc_string = (
        "dermaseg planning model, contract "
        f"{contract.CONTRACT_VERSION}: uint8 photo in; mask, areas out"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def fitting_data(meta: dict, data: Path | None) -> Dataset | None:
    """The dataset to fit on: `data`, else the checkpoint's training data if it is still there."""
    if data is None:
        trained_on = meta["config"].get("data")
        if not trained_on or not Path(trained_on).exists():
            return None
        data = Path(trained_on)
    dataset = Dataset.open(data)
    names = [c["name"] for c in meta["taxonomy"]]
    if dataset.taxonomy.names != names:
        raise DermasegError(
            f"{data}: classes {dataset.taxonomy.names} differ from the model's {names}"
        )
    return dataset


def fit_outputs(
    net, dataset: Dataset | None, size: int, tta: str | None, names: list[str]
) -> tuple[dict, dict | None]:
    """Confidence calibration and post-processing fitted on the val split (none without one)."""
    passes = val_passes(net, dataset, size, tta) if dataset is not None else []
    if not passes:
        why = "no dataset given" if dataset is None else "no readable photos in the val split"
        return {"method": "none", "temperature": 1.0, "reason": why}, None
    calibration = fit_temperature(passes)
    return calibration, learn_postprocess(passes, names, calibration["temperature"])


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    working_size: int | None = None,
    overwrite: bool = False,
    *,
    int8: bool = False,
    data: Path | None = None,
    tta: str | None = None,
    max_dice_drop: float = 0.01,
) -> ExportReport:
    """Export and verify the fp32 planning model at `out`; with `int8`, quantize it too and write
    `contract.int8_sibling(out)` when the guard passes (its report is `report.int8` either way).
    `tta`: "none", "flip" or "mirror"; None: what the checkpoint's recipe asks for (`export_tta`).

    Only a model that passed every check is written, atomically.
    """
    sibling = contract.int8_sibling(out)
    for path in [out] + ([sibling] if int8 else []):
        if path.exists() and not overwrite:
            raise OutputExistsError(path)
    net, meta = load_model(checkpoint)
    tta = export_tta(meta, tta)
    size = int(working_size or meta["working_size"])
    if size % 32 or not WORKING_SIZE[0] <= size <= WORKING_SIZE[1]:
        raise DermasegError(f"--working-size {size}: must be {working_size_text()}")
    names = [c["name"] for c in meta["taxonomy"]]
    dataset = fitting_data(meta, data)
    if int8 and dataset is None:
        raise DermasegError(
            "--int8 needs a dataset (--data DIR; the checkpoint's training data is not there)"
        )
    calibration, postprocess = fit_outputs(net, dataset, size, tta, names)
    graph = PlanningGraph(net, size, len(names), calibration["temperature"], tta).eval()
    report = ExportReport(str(out), "fp32", size, tta=tta or "none")
    report.confidence_calibration, report.postprocess = calibration, postprocess
    with tempfile.TemporaryDirectory(prefix="dermaseg-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        started = time.perf_counter()
        to_onnx(graph, staged)
        set_metadata(staged, _metadata(meta, size, "fp32", calibration, postprocess, tta))
        report.export_seconds = time.perf_counter() - started
        report.parity = verify_against_torch(
            staged, graph, len(names), sample_photos(), MIN_MASK_AGREEMENT
        )
        with atomic_open(out, "wb", overwrite=overwrite) as handle:
            handle.write(staged.read_bytes())
        if int8:
            from dermaseg.train.quantize import quantize_model

            try:
                report.int8 = quantize_model(
                    staged, sibling, dataset, max_dice_drop=max_dice_drop, overwrite=overwrite
                )
                report.int8["path"] = str(sibling)
            except DermasegError as refused:
                report.int8 = {"refused": str(refused)}
    return report
