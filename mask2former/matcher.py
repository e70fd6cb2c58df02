"""Hungarian assignment of predicted queries to the ground-truth instances of each image.

In MinVIS every training frame is an independent image, so matching is per image. The
official video matcher run on a single frame (T = 1) computes exactly these costs: its
point sampling of ``[Q, T, h, w]`` masks flattened to ``[Q, T * P]`` is ``[Q, P]`` here.
"""

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

__all__ = ["HungarianMatcher", "pairwise_dice", "pairwise_sigmoid_bce"]


def pairwise_sigmoid_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean sigmoid cross-entropy of every prediction against every target.

    ``logits``: ``[Q, P]`` mask logits; ``targets``: ``[N, P]`` in [0, 1]. Returns ``[Q, N]``.
    The cross-entropy of logit x against target t is softplus(x) - x t, so all pairs come
    out of one pass over the logits and one matrix product.
    """
    total = F.softplus(logits).sum(-1)[:, None] - logits @ targets.T  # [Q, N]
    return total / logits.shape[1]


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Smoothed dice loss of every prediction against every target.

    ``logits``: ``[Q, P]`` mask logits; ``targets``: ``[N, P]`` in [0, 1]. Returns ``[Q, N]``.
    """
    probs = logits.sigmoid()  # [Q, P]
    overlap = 2 * torch.einsum("qp,np->qn", probs, targets)  # [Q, N]
    total = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # [Q, N]
    return 1 - (overlap + 1) / (total + 1)


class HungarianMatcher(nn.Module):
    """One-to-one matching of queries to targets minimising class + mask + dice costs.

    Queries left unmatched are supervised as "no object" by the criterion.
    """

    def __init__(
        self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0, num_points: int = 0
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(self, pred_logits: Tensor, pred_masks: Tensor, labels: Tensor, masks: Tensor) -> Tensor:
        """Matching cost ``[Q, N]`` of one image, in float32 whatever the autocast state.

        ``pred_logits``: ``[Q, K + 1]``; ``pred_masks``: ``[Q, h, w]`` logits;
        ``labels``: ``[N]``; ``masks``: ``[N, H, W]`` (any resolution: sampling is in
        normalised coordinates, at points shared by all predictions and targets).
        """
        with torch.autocast(pred_logits.device.type, enabled=False):
            class_cost = -pred_logits.float().softmax(-1)[:, labels]  # [Q, N]
            coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)  # [1, P, 2]
            pred_points = self._sample(pred_masks.float(), coords)  # [Q, P]
            target_points = self._sample(masks.float(), coords)  # [N, P]
            return (
                self.cost_class * class_cost
                + self.cost_mask * pairwise_sigmoid_bce(pred_points, target_points)
                + self.cost_dice * pairwise_dice(pred_points, target_points)
            )

    @staticmethod
    def _sample(masks: Tensor, coords: Tensor) -> Tensor:
        """Values of ``[M, H, W]`` masks at ``[1, P, 2]`` points in [0, 1]^2 -> ``[M, P]``. The
        points are shared, so the masks are sampled as the channels of one image (the same
        values as one image per mask, several times faster on a CPU)."""
        return point_sample(masks[None], coords, align_corners=False)[0]

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(pred_idx, tgt_idx)``, int64 of length ``min(Q, N)``, ``pred_idx`` ascending, from
        ``pred_logits [B, Q, K + 1]``, ``pred_masks [B, Q, h, w]`` and per image ``labels``, ``masks``."""
        indices = []
        for pred_logits, pred_masks, target in zip(
            outputs["pred_logits"], outputs["pred_masks"], targets, strict=True
        ):
            cost = self.cost_matrix(pred_logits, pred_masks, target["labels"], target["masks"])
            pred_idx, tgt_idx = linear_sum_assignment(cost.cpu())
            indices.append(tuple(torch.as_tensor(i, dtype=torch.int64) for i in (pred_idx, tgt_idx)))
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )
