"""Mask-overlap tracking costs (paper Table 4), an extension of the paper's matching.

The paper matches on the query embeddings only (:class:`~minvis.tracking.tracker.QueryCost`).
For its Table 4 analysis, :data:`MATCHING_MODES` name the alternatives:

* ``"query"`` — MinVIS: ``1 - cos`` of the query embeddings.
* ``"heuristic"`` — mask overlap only (:class:`MaskOverlapCost`): the tracks' last
  outputs are treated as ground truth and scored with Mask2Former's training matching
  costs, on dense masks at the mask-logit resolution (deterministic, no point sampling).
* ``"heuristic+query"`` — the sum of both, with equal weights.

The tracker adds the terms of a mode into one ``[N, Q]`` cost and solves one assignment.
Pure torch.
"""

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .mask_costs import pairwise_dice, pairwise_sigmoid_bce
from .tracker import CostTerm, FrameQueries, QueryCost

__all__ = ["MATCHING_MODES", "MaskOverlapCost", "matching_cost_terms"]

MATCHING_MODES = ("query", "heuristic", "heuristic+query")


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
