"""Identity switches of predicted tracks against ground-truth instances (one video).

Definition. For each ground-truth instance ``g`` and each frame ``t`` where ``g``'s mask is
non-empty, ``g``'s *match* at ``t`` is the predicted track whose mask at ``t`` has the
highest IoU with ``g``'s (ties: the lowest track index), provided that IoU is at least
``min_iou``; otherwise ``g`` is unmatched at ``t``. An **identity switch** is a frame
where ``g`` is matched to a different track than at its most recent earlier matched
frame. Frames where ``g`` is invisible or unmatched neither count nor reset that memory,
so an object that leaves and comes back under a new track counts one switch, and one
that comes back under its old track counts none.
"""

import numpy as np

__all__ = ["identity_switches", "mask_iou"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``a [M, H, W]`` with every mask of ``b [N, H, W]`` -> ``[M, N]``."""
    a_flat = a.reshape(len(a), -1).astype(np.float64)  # [M, P]
    b_flat = b.reshape(len(b), -1).astype(np.float64)  # [N, P]
    intersection = a_flat @ b_flat.T  # [M, N]
    union = a_flat.sum(1)[:, None] + b_flat.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def identity_switches(gt_masks: np.ndarray, track_masks: np.ndarray, min_iou: float) -> int:
    """Identity switches of one video (see the module docstring).

    Args:
        gt_masks: ``[G, T, H, W]`` bool masks of the ground-truth instances.
        track_masks: ``[P, T, H, W]`` bool masks of the predicted tracks.
        min_iou: the IoU a track needs on a frame to be an instance's match there.
    """
    if len(gt_masks) == 0 or len(track_masks) == 0:
        return 0
    switches = 0
    last_match = [-1] * len(gt_masks)  # per instance: track at its last matched frame
    for t in range(gt_masks.shape[1]):
        iou = mask_iou(gt_masks[:, t], track_masks[:, t])  # [G, P]
        visible = gt_masks[:, t].reshape(len(gt_masks), -1).any(axis=1)  # [G]
        for g in np.flatnonzero(visible):
            track = int(iou[g].argmax())
            if iou[g, track] < min_iou:
                continue
            switches += last_match[g] not in (-1, track)
            last_match[g] = track
    return switches
