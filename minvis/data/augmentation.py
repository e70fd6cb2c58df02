"""Clip-consistent augmentation of the frames of a training clip.

A :class:`PerClip` augmentation is drawn on a clip's first frame and its transform replayed
on the others (officially: a counter in the augmentation object). The optional crop is drawn
per clip too (officially per frame), so a clip's frames stay aligned. For MinVIS's one-frame
clips this is the official augmentation.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import transforms as T

_OPTIONAL = {
    "brightness": lambda: T.RandomBrightness(0.9, 1.1),
    "contrast": lambda: T.RandomContrast(0.9, 1.1),
    "saturation": lambda: T.RandomSaturation(0.9, 1.1),
    "rotation": lambda: T.RandomRotation(
        [-15, 15], expand=False, center=[(0.4, 0.4), (0.6, 0.6)], sample_style="range"
    ),
}


class PerClip(T.Augmentation):
    """Marks ``aug`` as drawn once per clip by :func:`augment_clip`; elsewhere it is ``aug``."""

    def __init__(self, aug: T.Augmentation) -> None:
        super().__init__()
        self.aug = aug
        self.input_args = aug.input_args

    def get_transform(self, *args: Any) -> T.Transform:
        return self.aug.get_transform(*args)

    def __repr__(self) -> str:
        return f"PerClip({self.aug!r})"


def augment_clip(
    augmentations: Sequence[T.Augmentation], images: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[T.TransformList]]:
    """Augment the frames of one clip; returns the images and each frame's transforms."""
    per_clip: dict[int, T.Transform] = {}
    out_images, out_transforms = [], []
    for image in images:
        aug_input = T.AugInput(image)
        transforms = []
        for i, aug in enumerate(augmentations):
            if i in per_clip:
                aug_input.transform(per_clip[i])
                transforms.append(per_clip[i])
                continue
            transform = aug(aug_input)
            if isinstance(aug, PerClip):
                per_clip[i] = transform
            transforms.append(transform)
        out_images.append(aug_input.image)
        out_transforms.append(T.TransformList(transforms))
    return out_images, out_transforms


def _resize(cfg: CfgNode) -> T.Augmentation:
    style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    base_style = style.removesuffix("_by_clip")
    if base_style not in ("choice", "range"):
        raise ValueError(f"Unknown INPUT.MIN_SIZE_TRAIN_SAMPLING {style!r}.")
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, base_style)
    return PerClip(resize) if style.endswith("_by_clip") else resize


def _flip(mode: str) -> T.Augmentation:
    if mode == "flip_by_clip":
        return PerClip(T.RandomFlip(horizontal=True, vertical=False))
    if mode not in ("horizontal", "vertical"):
        raise ValueError(f"Unknown INPUT.RANDOM_FLIP {mode!r}.")
    return T.RandomFlip(horizontal=mode == "horizontal", vertical=mode == "vertical")


def build_augmentation(cfg: CfgNode, is_train: bool) -> list[T.Augmentation]:
    """The augmentations of the official video configs: training crop, resize, flip (``*_by_clip``
    variants drawn per clip) and ``INPUT.AUGMENTATIONS``; test resize."""
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs: list[T.Augmentation] = []
    if cfg.INPUT.CROP.ENABLED:
        augs.append(PerClip(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE)))
    augs.append(_resize(cfg))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(_flip(cfg.INPUT.RANDOM_FLIP))
    unknown = set(cfg.INPUT.AUGMENTATIONS) - set(_OPTIONAL)
    if unknown:
        raise ValueError(f"Unknown INPUT.AUGMENTATIONS {sorted(unknown)}; known: {sorted(_OPTIONAL)}.")
    augs.extend(make() for name, make in _OPTIONAL.items() if name in cfg.INPUT.AUGMENTATIONS)
    return augs
