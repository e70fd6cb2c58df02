"""Clip-consistent augmentation of the frames of a training clip.

The official video augmentation draws a "by clip" augmentation's random parameters once
per ``SAMPLING_FRAME_NUM`` calls, through a counter kept in the augmentation object.
Here an augmentation wrapped in :class:`PerClip` is drawn on the first frame of a clip
and its transform reused for the others (:func:`augment_clip`); the frames of a video
share one size, so the transform fits them all. The optional crop is drawn per clip too
(officially per frame), so a clip's frames stay aligned. MinVIS trains on one-frame
clips, for which all of this is the same as the official augmentation.
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
    """Marks ``aug`` as drawn once per clip by :func:`augment_clip`.

    Used alone (e.g. in a :class:`~detectron2.data.transforms.AugmentationList`) it
    behaves exactly like ``aug``.
    """

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
    """Augment the frames of one clip; returns the images and each frame's transforms.

    Augmentations are applied in order to every frame; a :class:`PerClip` one is drawn
    on the first frame and its transform replayed on the next ones, the others are drawn
    again for every frame.
    """
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
    """The augmentations of the official video configs.

    Training: optional crop (``INPUT.CROP``, drawn once per clip), shortest-edge resize
    (``INPUT.MIN_SIZE_TRAIN_SAMPLING``: ``choice``/``range`` per frame,
    ``choice_by_clip``/``range_by_clip`` per clip), flip (``INPUT.RANDOM_FLIP``:
    ``none``, ``horizontal``, ``vertical`` per frame, ``flip_by_clip`` horizontal per
    clip), then the per-frame ``INPUT.AUGMENTATIONS`` among brightness, contrast,
    saturation and rotation. Test: resize to ``MIN_SIZE_TEST``/``MAX_SIZE_TEST``.
    """
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
