"""Cost terms of the tracker's Hungarian matching (paper Table 4).

A cost term compares the tracks (their remembered query outputs, ``N`` rows) with the
current frame's queries (``Q`` rows) and returns an ``[N, Q]`` cost; the tracker adds
its terms and solves one assignment. :data:`MATCHING_MODES` name the combinations:

* ``"query"`` — MinVIS: ``1 - cos`` of the query embeddings (:class:`QueryCost`).
* ``"heuristic"`` — mask overlap only (:class:`MaskOverlapCost`): the tracks' last
  outputs are treated as ground truth and scored with Mask2Former's training matching
  costs, on dense masks at the mask-logit resolution (deterministic, no point sampling).
* ``"heuristic+query"`` — the sum of both, with equal weights.

Pure torch; no detectron2 code.
"""

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from mask2former.mask_costs import pairwise_dice, pairwise_sigmoid_bce

__all__ = [
    "MATCHING_MODES",
    "CostTerm",
    "FrameQueries",
    "MaskOverlapCost",
    "QueryCost",
    "cosine_similarity",
    "matching_cost_terms",
    "unit_rows",
]

MATCHING_MODES = ("query", "heuristic", "heuristic+query")


@dataclass(frozen=True)
class FrameQueries:
    """Per-query outputs of one frame (or per-track memory), as the cost terms see them.

    Attributes:
        embds: ``[N, C]`` query embeddings.
        logits: ``[N, K+1]`` class logits (last = no object), if a cost term needs them.
        masks: ``[N, h, w]`` mask logits, if a cost term needs them.
    """

    embds: Tensor
    logits: Tensor | None = None
    masks: Tensor | None = None

    def __len__(self) -> int:
        return self.embds.shape[0]

    def take(self, index: Tensor) -> "FrameQueries":
        """Rows ``index [M]`` (any device) of every field."""
        return FrameQueries(*(None if x is None else x[index.to(x.device)] for x in self.fields()))

    def fields(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        return self.embds, self.logits, self.masks


class CostTerm(Protocol):
    """``(tracks [N rows], current [Q rows]) -> cost [N, Q]``; lower is a better match."""

    needs_outputs: bool  # reads logits and masks (the tracker then remembers them per track)

    def __call__(self, tracks: FrameQueries, current: FrameQueries) -> Tensor: ...


def unit_rows(x: Tensor) -> Tensor:
    """``[N, C] -> [N, C]``, each row scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of ``[M, C]`` and ``[M, C]`` -> ``[M]``."""
    return (unit_rows(a) * unit_rows(b)).sum(dim=1)


@dataclass(frozen=True)
class QueryCost:
    """MinVIS's cost ``1 - cos(e_track, e_current)`` on the query embeddings."""

    needs_outputs: ClassVar[bool] = False

    def __call__(self, tracks: FrameQueries, current: FrameQueries) -> Tensor:
        # Computed as [current, track] and transposed, as the official release does:
        # other orientations round differently and can break ties differently.
        similarity = unit_rows(current.embds) @ unit_rows(tracks.embds).T  # [Q, N]
        return (1 - similarity).T  # [N, Q]


@dataclass(frozen=True)
class MaskOverlapCost:
    """Mask2Former's matching cost with the tracks' last outputs as ground truth.

    A track's target class is the argmax of its logits (no-object included, so a
    background track is best continued by a background query) and its target mask its
    mask logits > 0. A current query's cost is ``class_weight * -p(target class) +
    mask_weight * sigmoid BCE + dice_weight * dice loss``, the BCE and dice over all
    pixels of the ``[h, w]`` mask logits.
    """

    class_weight: float
    mask_weight: float
    dice_weight: float
    needs_outputs: ClassVar[bool] = True

    def __call__(self, tracks: FrameQueries, current: FrameQueries) -> Tensor:
        if tracks.logits is None or tracks.masks is None or current.logits is None or current.masks is None:
            raise ValueError("the mask-overlap cost needs the logits and masks of tracks and queries")
        labels = tracks.logits.argmax(dim=1)  # [N]
        targets = (tracks.masks > 0).flatten(1).float()  # [N, h*w]
        predictions = current.masks.flatten(1).float()  # [Q, h*w]
        class_cost = -current.logits.float().softmax(dim=1)[:, labels]  # [Q, N]
        cost = (
            self.class_weight * class_cost
            + self.mask_weight * pairwise_sigmoid_bce(predictions, targets)
            + self.dice_weight * pairwise_dice(predictions, targets)
        )  # [Q, N]
        return cost.T  # [N, Q]


def matching_cost_terms(
    mode: str, *, class_weight: float, mask_weight: float, dice_weight: float
) -> tuple[CostTerm, ...]:
    """The cost terms of a matching mode (see the module docstring)."""
    if mode not in MATCHING_MODES:
        raise ValueError(f"unknown matching mode {mode!r}; known: {', '.join(MATCHING_MODES)}")
    terms: list[CostTerm] = []
    if "heuristic" in mode:
        terms.append(MaskOverlapCost(class_weight, mask_weight, dice_weight))
    if "query" in mode:
        terms.append(QueryCost())
    return tuple(terms)
