"""Identity switches of predicted tracks against ground-truth instances (``tracking_analysis.py``).

Definition. For each ground-truth instance ``g`` and each frame ``t`` where ``g``'s mask is
non-empty (a *visible frame*), ``g``'s *match* at ``t`` is the predicted track whose mask
at ``t`` has the highest IoU with ``g``'s (ties: the lowest track index), provided that
IoU is at least ``min_iou``; otherwise ``g`` is unmatched at ``t``. An **identity switch**
is a frame where ``g`` is matched to a different track than at its most recent earlier
matched frame. Frames where ``g`` is invisible or unmatched neither count nor reset that
memory, so an object that leaves and comes back under a new track counts one switch, and
one that comes back under its old track counts none. Which predicted tracks take part is
the caller's choice (e.g. the confident tracks of a video's result).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdentityStats:
    """Identity switches, and how many visible (instance, frame) pairs had a match at all."""

    switches: int = 0
    matched_frames: int = 0
    visible_frames: int = 0

    def __add__(self, other: "IdentityStats") -> "IdentityStats":
        return IdentityStats(
            self.switches + other.switches,
            self.matched_frames + other.matched_frames,
            self.visible_frames + other.visible_frames,
        )


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``a [M, H, W]`` with every mask of ``b [N, H, W]`` -> ``[M, N]``."""
    a_flat = a.reshape(len(a), -1).astype(np.float64)  # [M, P]
    b_flat = b.reshape(len(b), -1).astype(np.float64)  # [N, P]
    intersection = a_flat @ b_flat.T  # [M, N]
    union = a_flat.sum(1)[:, None] + b_flat.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def identity_stats(gt_masks: np.ndarray, track_masks: np.ndarray, min_iou: float) -> IdentityStats:
    """Identity statistics of one video (see the module docstring) from the ``[G, T, H, W]`` masks
    of the ground-truth instances and the ``[P, T, H, W]`` masks of the predicted tracks (P may be 0)."""
    visible = gt_masks.reshape(*gt_masks.shape[:2], -1).any(axis=2)  # [G, T]
    if len(track_masks) == 0:
        return IdentityStats(visible_frames=int(visible.sum()))
    switches = matched = 0
    last_match = [None] * len(gt_masks)  # per instance: track at its last matched frame
    for t in range(gt_masks.shape[1]):
        iou = mask_iou(gt_masks[:, t], track_masks[:, t])  # [G, P]
        for g in np.flatnonzero(visible[:, t]):
            track = int(iou[g].argmax())
            if iou[g, track] < min_iou:
                continue
            matched += 1
            switches += last_match[g] is not None and last_match[g] != track
            last_match[g] = track
    return IdentityStats(switches, matched, int(visible.sum()))
