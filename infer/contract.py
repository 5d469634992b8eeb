"""The ONNX planning contract (version 1): names, types and metadata keys other tools rely on.

Inputs:  image uint8 [N, H, W, 3] RGB, any H and W; mm_per_pixel float32 [N] (0 = not calibrated).
Outputs: mask uint8 [N, H, W] class ids; confidence uint8 [N, H, W] (top probability x 255);
         boundary uint8 [N, H, W] (1 where the 3x3 neighbourhood inside the image holds another
         class); area_px int64 [N, C]; area_mm2 float32 [N, C] = area_px x mm_per_pixel^2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

CONTRACT_VERSION = "1"
INPUTS = {"image": "tensor(uint8)", "mm_per_pixel": "tensor(float)"}
OUTPUTS = {
    "mask": "tensor(uint8)",
    "confidence": "tensor(uint8)",
    "boundary": "tensor(uint8)",
    "area_px": "tensor(int64)",
    "area_mm2": "tensor(float)",
}
# present only in models exported with flip test-time augmentation (`--tta flip`):
# float32 [N], share of working-size pixels whose class differs between the photo and its mirror
OPTIONAL_OUTPUTS = {"tta_disagreement": "tensor(float)"}
# metadata_props keys
KEY_CONTRACT = "dermaseg.contract_version"
KEY_CLASSES = "dermaseg.classes"  # JSON list of {id, name, color, treatable, description}
KEY_WORKING_SIZE = "dermaseg.working_size"  # longer side, in px, that the network sees
KEY_RECIPE = "dermaseg.recipe"  # JSON: encoder, decoder, weights, epochs, input size...
KEY_METRICS = "dermaseg.validation_metrics"  # JSON: per-class Dice/IoU... of the checkpoint
KEY_VERSION = "dermaseg.version"
KEY_PRECISION = "dermaseg.precision"  # fp32 | int8
KEY_BOUNDARY = "dermaseg.boundary_definition"
# JSON {"method": "temperature" | "none", "temperature", "ece_before", "ece_after", "fitted_on",
# "photos", "pixels", "bins"}: how `confidence` was calibrated (on the validation split)
KEY_CALIBRATION = "dermaseg.confidence_calibration"
# JSON {"mode": "none" | "flip" | "mirror"}: test-time augmentation inside the graph
KEY_TTA = "dermaseg.tta"
# JSON post-processing learned on the validation split, for the planner to apply to `mask`
# first (`dermaseg.infer.postprocess.apply_postprocess`); the graph's outputs are before it:
#   {"min_component_fraction": {class name: float}, components of that class smaller than this
#    share of the photo's pixels become background (8-connected);
#    "largest_only": [class name], only the largest component of these classes is kept;
#    "fill_holes": bool, background enclosed by one class becomes that class;
#    "fitted_on", "dice_before", "dice_after": provenance}
KEY_POSTPROCESS = "dermaseg.postprocess"
INT8_SUFFIX = ".int8.onnx"
BOUNDARY_DEFINITION = (
    "boundary[y,x] = 1 if any pixel in the 3x3 neighbourhood of (y,x) that lies inside the image "
    "has a different mask class than (y,x), else 0"
)


def working_shape(height: int, width: int, size: int, sym_max: Callable = max) -> tuple[int, int]:
    """(height, width) of a photo resized so its longer side is `size`, aspect kept, rounded to
    the nearest pixel (at least 1). The one definition used by training, the exported graph
    (`sym_max=torch.sym_max` while tracing) and the clinic path."""
    longer = sym_max(height, width)
    return (
        sym_max(1, (height * size + longer // 2) // longer),
        sym_max(1, (width * size + longer // 2) // longer),
    )


def int8_sibling(model: str | Path) -> Path:
    """Where `dermaseg export --int8` writes the int8 model beside the fp32 one:
    model.onnx -> model.int8.onnx."""
    path = Path(model)
    return path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)
