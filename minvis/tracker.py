"""Query matching between frames: MinVIS's tracker.

Every frame of a video goes through the image model independently, so query slot ``i``
of frame ``t`` and slot ``i`` of frame ``t + 1`` need not describe the same object.
MinVIS aligns them with the Hungarian algorithm on the cost ``1 - cos(e_prev, e_cur)``
between query embeddings, matching each new frame against the *aligned* embeddings of
the previous frame. After alignment a slot index is a track: births and deaths need no
heuristics, they are queries whose masks become non-empty or empty.

Pure torch/scipy; the cost is computed on the embeddings' device and the assignment is
solved on the CPU.
"""

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def _unit_rows(x: Tensor) -> Tensor:
    # [Q, C] -> [Q, C], each row scaled to unit L2 norm (zero rows stay zero).
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def match_embeddings(prev: Tensor, cur: Tensor) -> Tensor:
    """Return the permutation that aligns the current queries to the previous ones.

    Args:
        prev: ``[Q, C]`` embeddings of the previous frame, already aligned (the targets).
        cur: ``[Q, C]`` embeddings of the current frame.

    Returns:
        CPU ``LongTensor [Q]`` ``perm`` such that ``cur[perm][i]`` continues ``prev[i]``.

    The assignment is solved on the ``[target, current]`` cost matrix and its column
    indices are the permutation; solving the transposed problem can break ties
    differently, so this orientation is the one the official release uses.
    """
    if prev.dim() != 2 or prev.shape != cur.shape:
        raise ValueError(
            f"expected two [Q, C] embedding matrices of the same shape, "
            f"got {tuple(prev.shape)} and {tuple(cur.shape)}"
        )
    similarity = _unit_rows(cur) @ _unit_rows(prev).T  # [Q_cur, Q_prev]
    cost = (1 - similarity).T  # [Q_prev, Q_cur]: target x current
    _, columns = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(columns, dtype=torch.long)


class QueryTracker:
    """Online tracker: aligns each frame's queries to the previous frame's.

    The first frame fixes the track order (identity permutation); every later frame is
    matched against the previous frame's aligned embeddings. Memory is one ``[Q, C]``
    matrix, whatever the video length.
    """

    def __init__(self) -> None:
        self._aligned: Tensor | None = None  # [Q, C] aligned embeddings of the last frame

    @property
    def aligned_embeddings(self) -> Tensor | None:
        """The last frame's embeddings in track order, ``[Q, C]`` (None before any frame)."""
        return self._aligned

    def reset(self) -> None:
        """Forget the video; the next frame starts new tracks."""
        self._aligned = None

    def step(self, embeddings: Tensor) -> Tensor:
        """Consume one frame's ``[Q, C]`` query embeddings.

        Returns:
            CPU ``LongTensor [Q]`` ``perm``: ``x[perm]`` puts any per-query output of this
            frame in track order (slot ``i`` = track ``i``).
        """
        if embeddings.dim() != 2:
            raise ValueError(f"expected [Q, C] embeddings, got shape {tuple(embeddings.shape)}")
        if self._aligned is None:
            perm = torch.arange(embeddings.shape[0])
        elif embeddings.shape != self._aligned.shape:
            raise ValueError(
                f"embeddings of shape {tuple(embeddings.shape)} do not match the previous "
                f"frames' {tuple(self._aligned.shape)} (Q and C must stay constant)"
            )
        else:
            perm = match_embeddings(self._aligned, embeddings)
        self._aligned = embeddings[perm.to(embeddings.device)]
        return perm
