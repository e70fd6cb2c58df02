"""Pairwise mask costs of every prediction against every target (pure torch).

Shared by the training matcher (:class:`mask2former.matcher.HungarianMatcher`, on sampled
points) and MinVIS's mask-overlap tracking cost (:mod:`minvis.tracking.costs`, on dense
masks). It lives in the tracking layer, which imports no detectron2, so that the tracker
stays import-light; the image model imports it from here.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def pairwise_sigmoid_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean sigmoid cross-entropy of every prediction against every target.

    ``logits``: ``[Q, P]`` mask logits; ``targets``: ``[N, P]`` in [0, 1]. Returns ``[Q, N]``.
    The loss against a target is the target-weighted mix of the loss against all-ones and
    against all-zeros, so all pairs come out of two matrix products.
    """
    loss_if_fg = F.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none"
    )  # [Q, P]
    loss_if_bg = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    )  # [Q, P]
    total = torch.einsum("qp,np->qn", loss_if_fg, targets) + torch.einsum(
        "qp,np->qn", loss_if_bg, 1 - targets
    )  # [Q, N]
    return total / logits.shape[1]


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Smoothed dice loss of every prediction against every target.

    ``logits``: ``[Q, P]`` mask logits; ``targets``: ``[N, P]`` in [0, 1]. Returns ``[Q, N]``.
    """
    probs = logits.sigmoid()  # [Q, P]
    overlap = 2 * torch.einsum("qp,np->qn", probs, targets)  # [Q, N]
    total = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # [Q, N]
    return 1 - (overlap + 1) / (total + 1)
