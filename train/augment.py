"""Albumentations pipelines: geometry and colour augmentation for training, plain resize for eval.

Both start the way the exported model preprocesses a photo: the longer side resized to the
working size (aspect kept), then padded at the bottom/right. Padding is labelled IGNORE_INDEX.
"""

from __future__ import annotations

import albumentations as A
import cv2

from dermaseg.errors import DermasegError
from dermaseg.train.config import AugmentConfig
from dermaseg.train.losses import IGNORE_INDEX


def _resize_and_pad(size: int) -> list[A.BasicTransform]:
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_AREA),
        A.PadIfNeeded(
            min_height=size,
            min_width=size,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
        ),
    ]


def _augmentations(config: AugmentConfig) -> list[A.BasicTransform]:
    """The knob-driven augmentations: flips, affine, light elastic, colour, blur, JPEG, noise."""
    return [
        A.HorizontalFlip(p=config.hflip),
        A.VerticalFlip(p=config.vflip),
        A.Affine(
            scale=config.scale,
            rotate=(-config.rotate_deg, config.rotate_deg),
            translate_percent=(-0.05, 0.05),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
            p=config.affine,
        ),
        A.ElasticTransform(
            alpha=20,
            sigma=6,
            border_mode=cv2.BORDER_CONSTANT,
            fill_mask=IGNORE_INDEX,
            p=config.elastic,
        ),
        A.OneOf(
            [
                A.RandomBrightnessContrast(
                    brightness_limit=config.brightness_contrast,
                    contrast_limit=config.brightness_contrast,
                ),
                A.HueSaturationValue(
                    hue_shift_limit=config.hue_shift,
                    sat_shift_limit=config.saturation_shift,
                    val_shift_limit=15,
                ),
            ],
            p=config.color,
        ),
        A.GaussianBlur(blur_limit=(3, 5), p=config.blur),
        A.ImageCompression(quality_range=config.jpeg_quality, p=config.jpeg),
        A.GaussNoise(std_range=(0.01, 0.05), p=config.noise),
    ]


def _crop(side: int, on_labels: float = 0.5) -> list[A.BasicTransform]:
    """Random crops, the share `on_labels` of them on a labelled patch (background and padding
    don't count)."""
    return [
        A.OneOf(
            [
                A.RandomCrop(height=side, width=side, p=1.0 - on_labels),
                A.CropNonEmptyMaskIfExists(
                    height=side, width=side, ignore_values=[0, IGNORE_INDEX], p=on_labels
                ),
            ],
            p=1.0,
        )
    ]


def custom_transforms(pipeline: dict) -> list:
    """The transforms of an albumentations pipeline dict (`A.to_dict` form); a dict that is not
    one is a one-line `DermasegError`, whatever albumentations raises on it."""
    try:
        transforms = A.from_dict(pipeline).transforms
    except Exception as exc:  # KeyError, ValueError, TypeError, ImportError... from albumentations
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DermasegError(
            f"augment.pipeline: not an albumentations pipeline ({type(exc).__name__}: {detail}); "
            "write it as A.to_dict(...) does: {transform: {__class_fullname__: Compose, "
            "transforms: [...]}}"
        ) from None
    return list(transforms)


def train_pipeline(
    config: AugmentConfig, size: int, crop: int | None = None, crop_on_labels: float = 0.5
) -> A.Compose:
    """Training pipeline; a custom `pipeline` dict replaces the knob-driven augmentations."""
    geometry = _resize_and_pad(size) + (_crop(crop, crop_on_labels) if crop and crop < size else [])
    if config.pipeline is not None:
        return A.Compose([*geometry, *custom_transforms(config.pipeline)])
    return A.Compose([*geometry, *_augmentations(config)])


def eval_pipeline(size: int) -> A.Compose:
    """Evaluation pipeline: resize and pad only."""
    return A.Compose(_resize_and_pad(size))
