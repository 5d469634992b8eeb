"""The planning graph: uint8 photo in; mask, confidence, boundary and areas out (ONNX contract 1).

Everything around the network lives here so that the exported file is self-contained:
resize (longer side to the working size, aspect kept), normalisation, padding to a multiple
of 32, softmax, argmax, nearest upsampling to the photo's size, boundaries and areas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dermaseg.train.model import SegmentationNet

CONTRACT_VERSION = "1"
STRIDE = 32


def boundary_of(mask: torch.Tensor) -> torch.Tensor:
    """1 where a pixel's 3x3 neighbourhood (inside the image) holds another class, else 0."""
    labels = mask[:, None].float()
    padded = F.pad(labels, (1, 1, 1, 1), mode="replicate")
    highest = F.max_pool2d(padded, kernel_size=3, stride=1)
    lowest = -F.max_pool2d(-padded, kernel_size=3, stride=1)
    return (highest != lowest)[:, 0].to(torch.uint8)


class PlanningGraph(nn.Module):
    """Wraps a trained SegmentationNet with the contract's pre- and post-processing."""

    def __init__(self, net: SegmentationNet, working_size: int, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.working_size = working_size
        self.num_classes = num_classes

    def forward(self, image: torch.Tensor, mm_per_pixel: torch.Tensor):
        batch, height, width = image.shape[0], image.shape[1], image.shape[2]
        longer = torch.sym_max(height, width)
        work_h = torch.sym_max(1, (height * self.working_size + longer // 2) // longer)
        work_w = torch.sym_max(1, (width * self.working_size + longer // 2) // longer)
        pixels = image.permute(0, 3, 1, 2).float()
        pixels = F.interpolate(
            pixels, size=(work_h, work_w), mode="bilinear", align_corners=False, antialias=True
        )
        pad_h = (STRIDE - work_h % STRIDE) % STRIDE
        pad_w = (STRIDE - work_w % STRIDE) % STRIDE
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h))
        logits = self.net(pixels)[:, :, :work_h, :work_w]
        probabilities = logits.softmax(dim=1)
        top, labels = probabilities.max(dim=1)
        small = torch.stack([labels.float(), torch.round(top * 255)], dim=1)
        full = F.interpolate(small, size=(height, width), mode="nearest")
        mask = full[:, 0].to(torch.uint8)
        confidence = full[:, 1].to(torch.uint8)
        area_px = torch.stack(
            [(mask == c).sum(dim=(1, 2)) for c in range(self.num_classes)], dim=1
        ).to(torch.int64)
        scale = mm_per_pixel.to(torch.float32).reshape(batch, 1)
        area_mm2 = area_px.to(torch.float32) * scale * scale
        return mask, confidence, boundary_of(mask), area_px, area_mm2
