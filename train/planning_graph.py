"""The planning graph: uint8 photo in; mask, confidence, boundary and areas out (ONNX contract 1).

Everything around the network lives here so that the exported file is self-contained:
resize to the working size (`to_working_size`, the one definition that training uses too),
normalisation (inside the network), padding to a multiple of 32, optional mirror test-time
augmentation (`TTA_FLIPS`), temperature-scaled softmax (calibrated confidence), bilinear
upsampling of the probabilities to the photo's size (`to_photo_size`), argmax, boundaries
(`metrics.boundary_mask`, the one definition) and areas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dermaseg.infer.contract import working_shape
from dermaseg.train.metrics import boundary_mask
from dermaseg.train.model import SegmentationNet

NO_IGNORE = -1  # the graph's masks have no ignored pixels
STRIDE = 32
# test-time augmentation: the image axes ([N, C, h, w]) each extra pass mirrors, besides the
# photo itself. flip: left-right (2 passes); mirror: every combination of both axes, as nnU-Net
# mirrors along every axis it trained with (4 passes; recipes that train with vflip)
TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "flip": ((3,),),
    "mirror": ((3,), (2,), (2, 3)),
}


def to_working_size(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Photos [N, 3, H, W] (float, 0..255) resized so the longer side is `size` (aspect kept,
    `contract.working_shape`): antialiased bilinear, rounded and clipped to 0..255, as uint8
    photos would hold them. Training (`train.data.resize_photo`) and the exported graph both
    resize with this function."""
    height, width = working_shape(pixels.shape[2], pixels.shape[3], size, sym_max=torch.sym_max)
    resized = F.interpolate(
        pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.round().clamp(0, 255)


def pad_to_stride(pixels: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Zero padding at the bottom and right up to a multiple of `stride`."""
    pad_h = (stride - pixels.shape[2] % stride) % stride
    pad_w = (stride - pixels.shape[3] % stride) % stride
    return F.pad(pixels, (0, pad_w, 0, pad_h))


def pass_logits(net: nn.Module, pixels: torch.Tensor, tta: str | None) -> list[torch.Tensor]:
    """Logits [N, C, h, w] of the network on working-size photos [N, 3, h, w], one per pass:
    the photo, and with `tta` ("flip" or "mirror", `TTA_FLIPS`) also its mirror images (flipped
    back). Each pass is padded at the bottom/right to a multiple of 32, as in training."""
    height, width = pixels.shape[2], pixels.shape[3]
    if tta is None:
        return [net(pad_to_stride(pixels))[:, :, :height, :width]]
    flips = TTA_FLIPS[tta]
    batch = pixels.shape[0]
    variants = torch.cat([pixels, *(pixels.flip(dims) for dims in flips)])
    logits = net(pad_to_stride(variants))[:, :, :height, :width]
    passes = [logits[:batch]]
    for k, dims in enumerate(flips, start=1):
        passes.append(logits[k * batch : (k + 1) * batch].flip(dims))
    return passes


def to_photo_size(probabilities: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Working-size class probabilities [N, C, h, w] resampled bilinearly to the photo's size
    [N, C, height, width] (as nnU-Net resamples softmax outputs): the argmax then follows the
    smooth outline, not the staircase of working-size pixels that upsampled labels give
    (fuseg-wounds, 512 px photos at 384: test Dice +0.2 points). Each pixel's probabilities
    still sum to 1."""
    return F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)


def calibrated_probabilities(logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Softmax of logits / temperature, averaged over the test-time augmentation passes."""
    probabilities = [(x / temperature).softmax(dim=1) for x in logits]
    return probabilities[0] if len(probabilities) == 1 else sum(probabilities) / len(probabilities)


class PlanningGraph(nn.Module):
    """Wraps a trained SegmentationNet with the contract's pre- and post-processing.

    `temperature` divides the logits before the softmax (confidence calibration; argmax is
    unchanged). `tta` ("flip" or "mirror") averages the probabilities of the photo and its mirror
    images and adds the output `tta_disagreement` (float [N]: the share of working-size pixels
    where a mirrored pass gives another class than the photo itself, averaged over the mirrored
    passes, so that one review threshold reads flip and mirror models alike).
    """

    def __init__(
        self,
        net: SegmentationNet,
        working_size: int,
        num_classes: int,
        temperature: float = 1.0,
        tta: str | None = None,
    ) -> None:
        super().__init__()
        if tta is not None and tta not in TTA_FLIPS:
            raise ValueError(f"tta must be None or one of {sorted(TTA_FLIPS)}, got {tta!r}")
        self.net = net
        self.working_size = working_size
        self.num_classes = num_classes
        self.temperature = float(temperature)
        self.tta = tta

    def forward(self, image: torch.Tensor, mm_per_pixel: torch.Tensor):
        logits, probabilities = self.working_probabilities(image)
        return self.outputs(image, logits, probabilities, mm_per_pixel)

    def working_probabilities(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The passes' logits and the calibrated class probabilities [N, C, h, w] at the
        working size, of uint8 photos [N, H, W, 3]."""
        pixels = to_working_size(image.permute(0, 3, 1, 2).float(), self.working_size)
        logits = pass_logits(self.net, pixels, self.tta)
        return logits, calibrated_probabilities(logits, self.temperature)

    def outputs(
        self,
        image: torch.Tensor,
        logits: list[torch.Tensor],
        probabilities: torch.Tensor,
        mm_per_pixel: torch.Tensor,
    ):
        """The contract's outputs for the photos `image` from their `working_probabilities`."""
        batch, height, width = image.shape[0], image.shape[1], image.shape[2]
        top, labels = to_photo_size(probabilities, height, width).max(dim=1)
        mask = labels.to(torch.uint8)
        confidence = torch.round(top * 255).to(torch.uint8)
        area_px = torch.stack(
            [(mask == c).sum(dim=(1, 2)) for c in range(self.num_classes)], dim=1
        ).to(torch.int64)
        scale = mm_per_pixel.to(torch.float32).reshape(batch, 1)
        area_mm2 = area_px.to(torch.float32) * scale * scale
        boundary = boundary_mask(mask, ignore_index=NO_IGNORE).to(torch.uint8)
        outputs = (mask, confidence, boundary, area_px, area_mm2)
        if self.tta is None:
            return outputs
        labels = [x.argmax(dim=1) for x in logits]
        shares = [(other != labels[0]).float().mean(dim=(1, 2)) for other in labels[1:]]
        return (*outputs, sum(shares) / len(shares))
