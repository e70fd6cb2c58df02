"""Mask2Former training losses: classification and point-sampled mask losses after matching."""

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from torch import Tensor, nn

Outputs = dict[str, Tensor]
Targets = list[dict[str, Tensor]]
Indices = list[tuple[Tensor, Tensor]]
Matcher = Callable[[Outputs, Targets], Indices]


def sigmoid_bce_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Per-mask mean sigmoid cross-entropy over ``[M, P]`` points, summed and divided by num_masks."""
    loss = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Per-mask smoothed dice loss over ``[M, P]`` points, summed and divided by num_masks."""
    probs = point_logits.sigmoid()
    overlap = 2 * (probs * point_labels).sum(-1)  # [M]
    total = probs.sum(-1) + point_labels.sum(-1)  # [M]
    return (1 - (overlap + 1) / (total + 1)).sum() / num_masks


def mask_uncertainty(logits: Tensor) -> Tensor:
    """Points whose ``[M, 1, P]`` logits are closest to 0 are the most uncertain."""
    return -logits.abs()


def matched_queries(indices: Indices) -> tuple[Tensor, Tensor]:
    """(image index, query index) of every matched prediction, image by image."""
    image_idx = torch.cat([torch.full_like(pred, i) for i, (pred, _) in enumerate(indices)])
    query_idx = torch.cat([pred for pred, _ in indices])
    return image_idx, query_idx


def matched_targets(targets: Targets, indices: Indices, key: str) -> Tensor:
    """``key`` entries of every matched target, in the order of ``matched_queries``."""
    return torch.cat([t[key][tgt] for t, (_, tgt) in zip(targets, indices, strict=True)])


def average_num_masks(targets: Targets, device: torch.device) -> float:
    """Target instances per worker, averaged over distributed workers, at least 1."""
    count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        world_size = dist.get_world_size()
    return torch.clamp(count / world_size, min=1).item()


class SetCriterion(nn.Module):
    """Matches each decoder layer's predictions to the targets and computes its losses.

    ``losses`` selects among ``"labels"`` (``loss_ce``) and ``"masks"`` (``loss_mask``,
    ``loss_dice``). Returned losses are unweighted; ``weight_dict`` is kept for the caller.
    """

    KNOWN_LOSSES = ("labels", "masks")  # computed by loss_labels and loss_masks

    def __init__(
        self, num_classes: int, matcher: Matcher, weight_dict: dict[str, float], eos_coef: float,
        losses: list[str], num_points: int, oversample_ratio: float, importance_sample_ratio: float,
    ) -> None:  # fmt: skip
        super().__init__()
        unknown = set(losses) - set(self.KNOWN_LOSSES)
        if unknown:
            raise ValueError(f"unknown losses {sorted(unknown)}; known: {self.KNOWN_LOSSES}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = losses
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef  # the no-object class
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(
        self, outputs: Outputs, targets: Targets, indices: Indices, num_masks: float
    ) -> dict[str, Tensor]:
        """Cross-entropy of every query; unmatched queries target the no-object class."""
        logits = outputs["pred_logits"].float()  # [B, Q, K + 1]
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[matched_queries(indices)] = matched_targets(targets, indices, "labels")
        loss = F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight)
        return {"loss_ce": loss}

    def loss_masks(
        self, outputs: Outputs, targets: Targets, indices: Indices, num_masks: float
    ) -> dict[str, Tensor]:
        """Sigmoid cross-entropy and dice of matched masks on importance-sampled points. All target
        masks must share one (padded) size; predictions may be smaller (normalised coordinates)."""
        pred = outputs["pred_masks"][matched_queries(indices)][:, None]  # [M, 1, h, w]
        gt = matched_targets(targets, indices, "masks").to(pred)[:, None]  # [M, 1, H, W]
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                pred, mask_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )  # [M, P, 2]
            point_labels = point_sample(gt, coords, align_corners=False).squeeze(1)  # [M, P]
        point_logits = point_sample(pred, coords, align_corners=False).squeeze(1)  # [M, P]
        return {
            "loss_mask": sigmoid_bce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def layer_losses(
        self, outputs: Outputs, targets: Targets, num_masks: float, indices: Indices | None = None
    ) -> dict[str, Tensor]:
        """The selected losses of one decoder layer, matched here unless ``indices`` are given."""
        if indices is None:
            indices = self.matcher(outputs, targets)
        losses: dict[str, Tensor] = {}
        for name in self.losses:
            loss_fn = getattr(self, f"loss_{name}")
            losses.update(loss_fn(outputs, targets, indices, num_masks))
        return losses

    def forward(self, outputs: Outputs, targets: Targets) -> dict[str, Tensor]:
        """Losses of the final layer, plus ``<name>_<i>`` for each of ``outputs["aux_outputs"]``."""
        return self.forward_with_indices(outputs, targets)[0]

    def forward_with_indices(self, outputs: Outputs, targets: Targets) -> tuple[dict[str, Tensor], Indices]:
        """:meth:`forward`'s losses and the final layer's matching: per image
        ``(pred_idx, tgt_idx)`` as returned by the matcher."""
        num_masks = average_num_masks(targets, outputs["pred_logits"].device)
        final = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        indices = self.matcher(final, targets)
        losses = self.layer_losses(final, targets, num_masks, indices)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses = self.layer_losses(aux, targets, num_masks)
            losses.update({f"{name}_{i}": value for name, value in aux_losses.items()})
        return losses, indices

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, losses={self.losses}, eos_coef={self.eos_coef}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}"
        )
