"""Supervised matching (paper Table 5): the hinge loss, its wiring into training, and the defaults."""

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from mask2former.criterion import SetCriterion
from mask2former.matcher import HungarianMatcher
from minvis.config import build_config
from minvis.data.mapper import YTVISDatasetMapper
from minvis.modeling.supervised_matching import (
    matched_query_pairs,
    pair_hinge_terms,
    supervised_matching_loss,
)

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"


def indices(queries: list[int], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(queries), torch.tensor(targets)


def test_pairs_follow_instance_ids_not_target_order() -> None:
    # Frame A: targets (ids 7, 9) matched to queries 4, 1; frame B lists id 9 first and
    # has a new id 5; id 7 is missing from B.
    pairs = matched_query_pairs(
        indices([1, 4], [1, 0]), indices([0, 2], [1, 0]), torch.tensor([7, 9]), torch.tensor([9, 5])
    )
    assert pairs.tolist() == [[1, 2]]  # id 9: query 1 in A, query 2 in B
    none = matched_query_pairs(indices([0], [0]), indices([0], [0]), torch.tensor([1]), torch.tensor([2]))
    assert none.shape == (0, 2)


def test_zero_for_perfectly_separated_embeddings() -> None:
    embds = torch.eye(4)  # each query orthogonal to all others, same in both frames
    pairs = torch.tensor([[0, 0], [2, 2], [3, 3]])
    total, count = pair_hinge_terms(embds, 5.0 * embds, pairs, margin=0.5)  # scale is ignored
    assert total.item() == 0.0 and count == 3 * 3


def test_tiny_case_by_hand() -> None:
    embds_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embds_b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    pairs = torch.tensor([[0, 0], [1, 1]])
    # Pair (0, 0): s+ = 1, s(a0, b1) = 0.6 -> max(0, 0.5 - 1 + 0.6) = 0.1.
    # Pair (1, 1): s+ = 0.8, s(a1, b0) = 0 -> max(0, 0.5 - 0.8 + 0) = 0.
    total, count = pair_hinge_terms(embds_a, embds_b, pairs, margin=0.5)
    assert total.item() == pytest.approx(0.1) and count == 2
    loss = supervised_matching_loss(
        torch.stack([embds_a, embds_b]),
        [torch.tensor([3, 4]), torch.tensor([3, 4])],
        [indices([0, 1], [0, 1]), indices([0, 1], [0, 1])],
        frames_per_video=[2],
        margin=0.5,
    )
    assert loss.item() == pytest.approx(0.05)


def test_gradients_flow_and_empty_batches_stay_in_the_graph() -> None:
    embds = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ids = [torch.tensor([1, 2])] * 4
    matched = [indices([0, 3], [0, 1]), indices([2, 4], [1, 0])] * 2
    loss = supervised_matching_loss(embds, ids, matched, frames_per_video=[2, 2], margin=1.0)
    loss.backward()
    assert loss.item() > 0
    assert embds.grad[0].abs().sum() > 0 and embds.grad[1].abs().sum() > 0
    # Frames of different videos are never paired: one-frame videos give no terms.
    empty = supervised_matching_loss(embds, ids, matched, frames_per_video=[1, 1, 1, 1], margin=1.0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_criterion_exposes_its_matching_without_changing_its_losses() -> None:
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=16)
    criterion = SetCriterion(2, matcher, {}, 0.1, ["labels", "masks"], 16, 3.0, 0.75)
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8)}
    outputs["aux_outputs"] = [{k: v.clone() for k, v in outputs.items()}]
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.rand(2, 8, 8) > 0.5}] * 2
    torch.manual_seed(0)
    plain = criterion(outputs, targets)
    torch.manual_seed(0)
    losses, matched = criterion.forward_with_indices(outputs, targets)
    assert plain.keys() == losses.keys() and all(torch.equal(plain[k], losses[k]) for k in plain)
    assert len(matched) == 2 and all(len(q) == len(t) == 2 for q, t in matched)


def test_mapper_samples_pairs_only_when_enabled() -> None:
    cfg = build_config(str(TINY))
    default = YTVISDatasetMapper.from_config(cfg, is_train=True)
    assert (default["sampling_frame_num"], default["sampling_frame_range"]) == (1, 20)
    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.ENABLED = True
    pair = YTVISDatasetMapper.from_config(cfg, is_train=True)
    assert (pair["sampling_frame_num"], pair["sampling_frame_range"]) == (2, 1)  # consecutive frames
    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.FRAME_RANGE = 0
    wide = YTVISDatasetMapper.from_config(cfg, is_train=True)
    assert wide["sampling_frame_range"] == cfg.INPUT.SAMPLING_FRAME_RANGE


def _clip() -> list[dict]:
    """One video, two 64x64 frames: instance 1 in both, instance 2 only in the first."""
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8, generator=generator) for _ in range(2)]
    masks = torch.zeros(2, 2, 64, 64, dtype=torch.bool)  # [frame, instance, H, W]
    masks[0, 0, 8:30, 8:30] = masks[1, 0, 10:32, 10:32] = True
    masks[0, 1, 40:60, 30:50] = True
    per_frame = []
    for frame_masks in masks:
        instances = Instances((64, 64))
        instances.gt_classes = torch.tensor([0, 2])
        instances.gt_ids = torch.where(frame_masks.flatten(1).any(dim=1), torch.tensor([1, 2]), -1)
        instances.gt_masks = BitMasks(frame_masks)
        per_frame.append(instances)
    return [{"image": frames, "instances": per_frame}]


def test_training_adds_loss_match_only_when_enabled() -> None:
    cfg = build_config(str(TINY), ["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    torch.manual_seed(1)
    default = model(_clip())
    assert default.keys() == model.criterion.weight_dict.keys()  # no loss_match

    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.ENABLED = True
    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.WEIGHT = 2.0
    torch.manual_seed(0)
    supervised = build_model(cfg).train()  # same initial weights
    torch.manual_seed(1)
    losses = supervised(_clip())
    assert losses.keys() == {*default, "loss_match"}
    assert all(torch.equal(losses[k], default[k]) for k in default)  # image losses unchanged
    assert losses["loss_match"].item() >= 0
    losses["loss_match"].backward()
    grads = [p.grad for p in supervised.sem_seg_head.predictor.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_loss_match_is_scaled_by_its_configured_weight() -> None:
    """``loss_match`` is WEIGHT times the hinge loss: same model, same clip, two weights."""
    cfg = build_config(str(TINY), ["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64])
    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.ENABLED = True
    cfg.MODEL.MINVIS.SUPERVISED_MATCHING.MARGIN = 2.0  # every hinge term is active: loss > 0
    losses = {}
    for weight in (1.0, 3.0):
        cfg.MODEL.MINVIS.SUPERVISED_MATCHING.WEIGHT = weight
        torch.manual_seed(0)
        model = build_model(cfg).train()  # same initial weights
        torch.manual_seed(1)
        losses[weight] = model(_clip())["loss_match"].item()
    assert losses[1.0] > 0
    assert losses[3.0] == pytest.approx(3.0 * losses[1.0], rel=1e-6)
