"""Reference helpers of the tests, built on the product API (not used by the product)."""

import numpy as np
from torch import Tensor

from minvis.inference import FrameOutputs, MaskGeometry, VideoResultAccumulator
from minvis.tracking import FrameQueries, QueryCost, solve_assignment
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
    return solve_assignment(QueryCost()(FrameQueries(prev), FrameQueries(cur)))


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
    if logits.dim() != 3 or masks.dim() != 4 or embds.dim() != 3:
        raise ValueError(
            "expected logits [T, Q, K+1], masks [T, Q, h, w], embds [T, Q, C]; got shapes "
            f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(embds.shape)}"
        )
    if not logits.shape[0] == masks.shape[0] == embds.shape[0]:
        raise ValueError(
            f"inconsistent number of frames: logits {logits.shape[0]}, masks {masks.shape[0]}, "
            f"embds {embds.shape[0]}"
        )
    accumulator = VideoResultAccumulator(
        MaskGeometry(image_size, padded_size, output_size), top_k=top_k, storage_device=masks.device
    )
    for frame in zip(logits, masks, embds, strict=True):
        accumulator.add_frame(FrameOutputs(*frame))
    return accumulator.finalize().to_dict()
