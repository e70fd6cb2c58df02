"""Typed per-frame outputs of the image model and the geometry that goes with them.

Per frame ``t`` the image model gives :class:`FrameOutputs`: ``logits [Q, K+1]`` (class
logits, last = no object), ``masks [Q, h, w]`` (mask logits at 1/4 of the padded input
size) and ``embds [Q, C]`` (query embeddings). The model runs on windows of ``n`` frames
and returns :class:`WindowOutputs` (the same fields with a leading ``[n]``), which knows
the input's unpadded and padded sizes; :class:`MaskGeometry` adds the output size and
takes mask logits to output masks.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from minvis.tracking import NO_QUERY

__all__ = ["FrameOutputs", "MaskGeometry", "Size", "WindowOutputs"]

Size = tuple[int, int]


@dataclass(frozen=True)
class MaskGeometry:
    """Sizes that take mask logits from the model's grid to the output frame.

    Attributes:
        image_size: ``(h_img, w_img)`` of the frame fed to the model, without padding.
        padded_size: ``(H_pad, W_pad)`` of the padded model input.
        output_size: ``(height, width)`` the results are reported at (original video size).
    """

    image_size: Size
    padded_size: Size
    output_size: Size

    def __post_init__(self) -> None:
        sizes = (*self.image_size, *self.padded_size, *self.output_size)
        if min(sizes) <= 0:
            raise ValueError(f"sizes must be positive, got {self}")
        if self.image_size[0] > self.padded_size[0] or self.image_size[1] > self.padded_size[1]:
            raise ValueError(f"image_size {self.image_size} exceeds padded_size {self.padded_size}")

    def mask_logits_to_output(self, mask_logits: Tensor) -> Tensor:
        """Resize ``[N, h, w]`` mask logits to ``[N, height, width]`` output logits."""
        if mask_logits.shape[0] == 0:  # interpolate rejects empty inputs
            return mask_logits.new_zeros((0, *self.output_size))
        x = F.interpolate(
            mask_logits[None], size=self.padded_size, mode="bilinear", align_corners=False
        )  # [1, N, H_pad, W_pad]
        x = x[:, :, : self.image_size[0], : self.image_size[1]]  # [1, N, h_img, w_img]
        x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        return x[0]  # [N, height, width]

    def binary_masks(self, mask_logits: Tensor) -> Tensor:
        """``[N, h, w]`` mask logits -> ``[N, height, width]`` bool masks (logit > 0)."""
        return self.mask_logits_to_output(mask_logits) > 0

    def track_masks(self, masks: Tensor, queries: Tensor, device: torch.device) -> Tensor:
        """Bool ``[k, height, width]`` masks, on ``device``, of the ``queries [k]`` of one
        frame's ``[Q, h, w]`` mask logits (resized on ``device``); empty where ``NO_QUERY``."""
        present = queries != NO_QUERY  # [k]
        selected = masks[queries[present].to(masks.device)].to(device)  # [m, h, w]
        if bool(present.all()):
            return self.binary_masks(selected)
        out = torch.zeros((len(queries), *self.output_size), dtype=torch.bool, device=device)
        out[present.to(device)] = self.binary_masks(selected)
        return out


@dataclass(frozen=True)
class FrameOutputs:
    """The image model's per-query outputs for one frame.

    Attributes:
        logits: ``[Q, K+1]`` class logits (last = no object).
        masks: ``[Q, h, w]`` mask logits.
        embds: ``[Q, C]`` query embeddings.
    """

    logits: Tensor
    masks: Tensor
    embds: Tensor

    def __post_init__(self) -> None:
        logits, masks, embds = self.logits, self.masks, self.embds
        if logits.dim() != 2 or masks.dim() != 3 or embds.dim() != 2:
            raise ValueError(
                "expected logits [Q, K+1], masks [Q, h, w], embds [Q, C]; got shapes "
                f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(embds.shape)}"
            )
        if not logits.shape[0] == masks.shape[0] == embds.shape[0]:
            raise ValueError(
                f"inconsistent number of queries in one frame: logits {logits.shape[0]}, "
                f"masks {masks.shape[0]}, embds {embds.shape[0]}"
            )
        if logits.shape[1] < 2:
            raise ValueError(f"logits need >= 1 class plus no-object, got {logits.shape[1]}")

    @property
    def shapes(self) -> tuple[torch.Size, torch.Size, torch.Size]:
        return self.logits.shape, self.masks.shape, self.embds.shape

    def float(self) -> "FrameOutputs":
        """The outputs as float32 (e.g. after mixed-precision inference)."""
        return FrameOutputs(self.logits.float(), self.masks.float(), self.embds.float())


@dataclass(frozen=True)
class WindowOutputs:
    """The image model's outputs for a window of ``n`` frames of one video.

    Attributes:
        logits: ``[n, Q, K+1]``; masks: ``[n, Q, h, w]``; embds: ``[n, Q, C]``.
        image_size: ``(h_img, w_img)`` of the frames fed to the model, without padding.
        padded_size: ``(H_pad, W_pad)`` of the padded model input (``h, w = H_pad/4, W_pad/4``).
    """

    logits: Tensor
    masks: Tensor
    embds: Tensor
    image_size: Size
    padded_size: Size

    def __len__(self) -> int:
        return self.logits.shape[0]

    def frames(self) -> Iterator[FrameOutputs]:
        """The window's frames, in order."""
        for logits, masks, embds in zip(self.logits, self.masks, self.embds, strict=True):
            yield FrameOutputs(logits, masks, embds)

    def geometry(self, output_size: Size) -> MaskGeometry:
        """The geometry that takes these mask logits to ``output_size`` masks."""
        return MaskGeometry(self.image_size, self.padded_size, output_size)
