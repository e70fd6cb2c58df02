"""Test-time preprocessing of a decoded frame, exactly as the dataset mapper's inference path."""

import numpy as np
import torch
from detectron2.config import CfgNode
from torch import Tensor

from .augmentation import augment_clip, build_augmentation

CHANNEL_ORDERS = ("RGB", "BGR")


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``[H, W, C]`` array -> ``[C, H, W]`` tensor of the same dtype."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class FramePreprocessor:
    """RGB ``uint8 [H, W, 3]`` frame -> model input ``uint8 [3, h, w]`` (test resize)."""

    def __init__(self, cfg: CfgNode) -> None:
        if cfg.INPUT.FORMAT not in CHANNEL_ORDERS:
            raise ValueError(
                f"INPUT.FORMAT {cfg.INPUT.FORMAT!r} is not supported for decoded video frames; "
                f"use one of {CHANNEL_ORDERS}"
            )
        self.bgr = cfg.INPUT.FORMAT == "BGR"
        self.augmentations = build_augmentation(cfg, is_train=False)

    def __call__(self, frame: np.ndarray) -> Tensor:
        image = frame[:, :, ::-1] if self.bgr else frame
        (resized,), _ = augment_clip(self.augmentations, [image])
        return image_to_tensor(resized)  # [3, h, w]
