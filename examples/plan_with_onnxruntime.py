"""Use a dermaseg planning model with plain onnxruntime: no dermaseg import needed.

python examples/plan_with_onnxruntime.py model.onnx photo.jpg [mm_per_pixel]
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

model_path, photo_path = sys.argv[1], sys.argv[2]
mm_per_pixel = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0

session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
metadata = session.get_modelmeta().custom_metadata_map
classes = json.loads(metadata["dermaseg.classes"])

photo = np.asarray(ImageOps.exif_transpose(Image.open(photo_path)).convert("RGB"))
mask, confidence, boundary, area_px, area_mm2 = session.run(
    ["mask", "confidence", "boundary", "area_px", "area_mm2"],
    {"image": photo[None], "mm_per_pixel": np.array([mm_per_pixel], dtype=np.float32)},
)
result = {
    "contract_version": metadata["dermaseg.contract_version"],
    "size": list(mask.shape[1:]),
    "boundary_pixels": int(boundary.sum()),
    "classes": [
        {
            "name": c["name"],
            "treatable": c["treatable"],
            "area_px": int(area_px[0, c["id"]]),
            "area_mm2": float(area_mm2[0, c["id"]]),
        }
        for c in classes
    ],
}
print(json.dumps(result))
