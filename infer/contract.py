"""The ONNX planning contract (version 1): names, types and metadata keys other tools rely on.

Inputs:  image uint8 [N, H, W, 3] RGB, any H and W; mm_per_pixel float32 [N] (0 = not calibrated).
Outputs: mask uint8 [N, H, W] class ids; confidence uint8 [N, H, W] (top probability x 255);
         boundary uint8 [N, H, W] (1 where the 3x3 neighbourhood inside the image holds another
         class); area_px int64 [N, C]; area_mm2 float32 [N, C] = area_px x mm_per_pixel^2.
"""

from __future__ import annotations

CONTRACT_VERSION = "1"
INPUTS = {"image": "tensor(uint8)", "mm_per_pixel": "tensor(float)"}
OUTPUTS = {
    "mask": "tensor(uint8)",
    "confidence": "tensor(uint8)",
    "boundary": "tensor(uint8)",
    "area_px": "tensor(int64)",
    "area_mm2": "tensor(float)",
}
# metadata_props keys
KEY_CONTRACT = "dermaseg.contract_version"
KEY_CLASSES = "dermaseg.classes"  # JSON list of {id, name, color, treatable, description}
KEY_WORKING_SIZE = "dermaseg.working_size"  # longer side, in px, that the network sees
KEY_RECIPE = "dermaseg.recipe"  # JSON: encoder, decoder, weights, epochs, input size...
KEY_METRICS = "dermaseg.validation_metrics"  # JSON: per-class Dice/IoU... of the checkpoint
KEY_VERSION = "dermaseg.version"
KEY_PRECISION = "dermaseg.precision"  # fp32 | int8
KEY_BOUNDARY = "dermaseg.boundary_definition"
BOUNDARY_DEFINITION = (
    "boundary[y,x] = 1 if any pixel in the 3x3 neighbourhood of (y,x) that lies inside the image "
    "has a different mask class than (y,x), else 0"
)
