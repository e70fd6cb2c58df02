"""Reference helpers of the tests, built on the product API (not used by the product)."""

import numpy as np
from torch import Tensor

from minvis.tracking import FrameOutputs, Size, Tracker, track_video
from minvis.ytvis_format import RLE, encode_masks


def encode_mask(mask: np.ndarray) -> RLE:
    """Encode one ``[h, w]`` boolean mask to a compressed RLE dict."""
    if mask.ndim != 2:
        raise ValueError(f"expected a mask of shape [h, w], got {mask.shape}")
    return encode_masks(mask[None])[0]


def match_embeddings(prev: Tensor, cur: Tensor) -> Tensor:
    """The paper's matching of two frames: ``perm [Q]`` with ``cur[perm][i]`` continuing ``prev[i]``."""
    if prev.dim() != 2 or prev.shape != cur.shape:
        raise ValueError(
            f"expected two [Q, C] embedding matrices of the same shape, "
            f"got {tuple(prev.shape)} and {tuple(cur.shape)}"
        )
    tracker = Tracker()
    for embds in (prev, cur):  # the first frame fixes the track order
        perm = tracker.step(
            frame_outputs(embds.new_zeros(len(embds), 2), embds.new_zeros(len(embds), 1, 1), embds)
        )
    return perm


def frame_outputs(
    logits: Tensor, masks: Tensor, embds: Tensor, image_size: Size = (4, 4), padded_size: Size = (4, 4)
) -> FrameOutputs:
    return FrameOutputs(logits, masks, embds, image_size, padded_size)


def paper_exact_video_results(
    logits: Tensor,
    masks: Tensor,
    embds: Tensor,
    *,
    image_size: tuple[int, int],
    padded_size: tuple[int, int],
    output_size: tuple[int, int],
    top_k: int = 10,
) -> dict:
    """The official eval-mode dict from a whole video's stacked ``[T, Q, ...]`` outputs."""
    frames = [
        frame_outputs(*frame, image_size, padded_size) for frame in zip(logits, masks, embds, strict=True)
    ]
    return dict(track_video(frames, output_size, top_k=top_k))
