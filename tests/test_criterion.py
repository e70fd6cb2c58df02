"""Hungarian matcher and set criterion on hand-built predictions with hand-computed losses.

Bilinear point sampling pads with zeros and blends pixels at boundaries, so a mask is only
reproduced exactly at pixel centres, or where it is zero. Exact mask-loss cases therefore
either replace the importance sampler by the pixel centres or use all-zero masks and logits.
"""

import math

import pytest
import torch
import torch.distributed as dist

import mask2former.criterion as criterion_module
from mask2former.criterion import SetCriterion, average_num_masks
from mask2former.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_bce

NUM_CLASSES = 3  # the no-object class is index NUM_CLASSES
SIZE = 8  # masks are SIZE x SIZE
LOGIT = 20.0


class FixedMatcher:
    """Stands in for the Hungarian matcher: always returns the given assignment."""

    def __init__(self, *pairs: tuple[list[int], list[int]]) -> None:
        self.indices = [
            (torch.tensor(p, dtype=torch.int64), torch.tensor(t, dtype=torch.int64)) for p, t in pairs
        ]

    def __call__(self, outputs: dict, targets: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.indices


def stripes(num: int) -> torch.Tensor:
    """``[num, SIZE, SIZE]`` disjoint horizontal stripes, all of the same area."""
    masks = torch.zeros(num, SIZE, SIZE)
    height = SIZE // num
    for i in range(num):
        masks[i, i * height : (i + 1) * height] = 1
    return masks


def columns(first: int, last: int) -> torch.Tensor:
    """``[SIZE, SIZE]`` mask of the columns first..last (inclusive)."""
    mask = torch.zeros(SIZE, SIZE)
    mask[:, first : last + 1] = 1
    return mask


def confident_predictions(
    num_queries: int, slots: list[int], labels: list[int], masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query ``slots[j]`` predicts target j; all other queries predict no-object, empty mask.

    Returns ``pred_logits`` ``[Q, K + 1]`` and ``pred_masks`` ``[Q, SIZE, SIZE]``.
    """
    logits = torch.zeros(num_queries, NUM_CLASSES + 1)
    logits[:, NUM_CLASSES] = LOGIT
    mask_logits = torch.full((num_queries, SIZE, SIZE), -LOGIT)
    for slot, label, mask in zip(slots, labels, masks, strict=True):
        logits[slot] = 0
        logits[slot, label] = LOGIT
        mask_logits[slot] = LOGIT * (2 * mask - 1)
    return logits, mask_logits


def batch(*images: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    logits, masks = zip(*images, strict=True)
    return {"pred_logits": torch.stack(logits), "pred_masks": torch.stack(masks)}


def target(labels: list[int], masks: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"labels": torch.tensor(labels, dtype=torch.int64), "masks": masks.bool()}


def empty_target() -> dict[str, torch.Tensor]:
    return target([], torch.zeros(0, SIZE, SIZE))


def assignment(indices: tuple[torch.Tensor, torch.Tensor]) -> dict[int, int]:
    pred_idx, tgt_idx = indices
    assert pred_idx.dtype == tgt_idx.dtype == torch.int64
    return dict(zip(pred_idx.tolist(), tgt_idx.tolist(), strict=True))


def make_criterion(
    matcher: object | None = None, eos_coef: float = 0.1, num_points: int = 64
) -> SetCriterion:
    return SetCriterion(
        num_classes=NUM_CLASSES,
        matcher=matcher or HungarianMatcher(2.0, 5.0, 5.0, num_points=num_points),
        weight_dict={"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0},
        eos_coef=eos_coef,
        losses=["labels", "masks"],
        num_points=num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )


@pytest.fixture
def pixel_centre_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the criterion sample every mask at all its pixel centres, where sampling is exact."""
    centres = (torch.arange(SIZE) + 0.5) / SIZE
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([x.flatten(), y.flatten()], dim=-1)  # [SIZE * SIZE, 2] as (x, y)

    def sample(masks: torch.Tensor, *args: object) -> torch.Tensor:
        return points.expand(masks.shape[0], -1, -1)

    monkeypatch.setattr(criterion_module, "get_uncertain_point_coords_with_randomness", sample)


# --- matcher ------------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [[2, 0, 3], [0, 1, 2], [4, 3, 1]])
def test_matcher_recovers_permutation(slots: list[int]) -> None:
    torch.manual_seed(0)
    labels, masks = [0, 1, 2], stripes(3)
    outputs = batch(confident_predictions(5, slots, labels, masks))
    (indices,) = HungarianMatcher(2.0, 5.0, 5.0, num_points=256)(outputs, [target(labels, masks)])
    assert assignment(indices) == {slot: j for j, slot in enumerate(slots)}
    assert indices[0].tolist() == sorted(slots)


def test_matcher_mask_costs_follow_swapped_masks() -> None:
    torch.manual_seed(0)
    labels, masks = [1, 1], stripes(2)  # same class: only the masks tell the targets apart
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=256)
    straight = batch(confident_predictions(3, [0, 1], labels, masks))
    swapped = batch(confident_predictions(3, [0, 1], labels, masks.flip(0)))
    assert assignment(matcher(straight, [target(labels, masks)])[0]) == {0: 0, 1: 1}
    assert assignment(matcher(swapped, [target(labels, masks)])[0]) == {0: 1, 1: 0}


def test_matcher_class_cost_follows_swapped_classes() -> None:
    torch.manual_seed(0)
    masks = stripes(1).expand(2, -1, -1)  # same mask: only the classes tell the targets apart
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=256)
    outputs = batch(confident_predictions(3, [0, 1], [2, 0], masks))
    assert assignment(matcher(outputs, [target([2, 0], masks)])[0]) == {0: 0, 1: 1}
    assert assignment(matcher(outputs, [target([0, 2], masks)])[0]) == {0: 1, 1: 0}


def test_matcher_empty_targets_give_empty_indices() -> None:
    torch.manual_seed(0)
    labels, masks = [0, 1], stripes(2)
    outputs = batch(
        confident_predictions(4, [3, 1], labels, masks), confident_predictions(4, [], [], masks[:0])
    )
    matched, empty = HungarianMatcher(num_points=64)(outputs, [target(labels, masks), empty_target()])
    assert assignment(matched) == {3: 0, 1: 1}
    assert empty[0].shape == empty[1].shape == (0,)
    assert empty[0].dtype == empty[1].dtype == torch.int64


def test_pairwise_mask_costs_by_hand() -> None:
    """Every (prediction, target) pair against the per-pair formulas: mean sigmoid BCE and
    the smoothed dice 1 - (2 |p t| + 1) / (|p| + |t| + 1), for binary and soft targets."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 30, generator=generator) * 3  # [Q, P]
    binary = (torch.rand(2, 30, generator=generator) > 0.5).float()
    targets = torch.cat([binary, torch.rand(1, 30, generator=generator)])  # [N, P]: binary and soft
    bce, dice = pairwise_sigmoid_bce(logits, targets), pairwise_dice(logits, targets)
    assert bce.shape == dice.shape == (4, 3)
    for q in range(4):
        p = logits[q].sigmoid()
        for n in range(3):
            t = targets[n]
            expected_bce = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
            expected_dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
            torch.testing.assert_close(bce[q, n], expected_bce, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dice[q, n], expected_dice, rtol=1e-5, atol=1e-6)
    # Large logits: the BCE stays finite (log-sum-exp form) and near 0 on the right side.
    confident = torch.tensor([[100.0, -100.0]])
    assert pairwise_sigmoid_bce(confident, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0, abs=1e-6)
    assert pairwise_sigmoid_bce(confident, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(100, rel=1e-6)


def test_matcher_cost_by_hand() -> None:
    # Zero logits and all-zero masks are reproduced exactly at any sampled point.
    num_points = 100
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=num_points)
    cost = matcher.cost_matrix(
        torch.zeros(2, NUM_CLASSES + 1),
        torch.zeros(2, SIZE // 2, SIZE // 2),
        torch.tensor([1]),
        torch.zeros(1, SIZE, SIZE, dtype=torch.bool),
    )
    expected = 2.0 * -1 / (NUM_CLASSES + 1) + 5.0 * math.log(2) + 5.0 * (1 - 1 / (num_points / 2 + 1))
    assert cost.shape == (2, 1)
    torch.testing.assert_close(cost, torch.full((2, 1), expected))



def test_matcher_samples_every_mask_at_the_shared_points() -> None:
    left = torch.zeros(SIZE, SIZE)
    left[:, : SIZE // 2] = 1.0  # x < 0.5
    top = left.T.clone()  # y < 0.5
    # Pixel centres: (x, y) = (0.1875, 0.8125) is left and bottom, (0.8125, 0.1875) right and top.
    coords = torch.tensor([[[1.5 / SIZE, 6.5 / SIZE], [6.5 / SIZE, 1.5 / SIZE]]])  # [1, P=2, 2]
    sampled = HungarianMatcher._sample(torch.stack([left, top]), coords)
    assert sampled.tolist() == [[1.0, 0.0], [0.0, 1.0]]

def test_matcher_costs_are_float32_under_autocast() -> None:
    logits = torch.randn(4, NUM_CLASSES + 1, dtype=torch.bfloat16)
    masks = torch.randn(4, SIZE, SIZE, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = HungarianMatcher(num_points=32).cost_matrix(logits, masks, torch.tensor([0, 2]), stripes(2))
    assert cost.dtype == torch.float32


# --- criterion ----------------------------------------------------------------------------


def test_empty_weight_buffer() -> None:
    state = make_criterion(eos_coef=0.25).state_dict()
    assert list(state) == ["empty_weight"]
    assert state["empty_weight"].tolist() == [1.0, 1.0, 1.0, 0.25]


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="boxes"):
        SetCriterion(NUM_CLASSES, FixedMatcher(), {}, 0.1, ["labels", "boxes"], 16, 3.0, 0.75)


@pytest.mark.usefixtures("pixel_centre_points")
def test_perfect_prediction_has_near_zero_losses() -> None:
    torch.manual_seed(0)
    labels, masks = [2, 0], stripes(2)
    outputs = batch(confident_predictions(4, [1, 3], labels, masks))
    losses = make_criterion()(outputs, [target(labels, masks)])
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}
    for name, value in losses.items():
        assert 0 <= value.item() < 1e-6, name


def test_cross_entropy_with_no_object_weight_by_hand() -> None:
    # Query 0 is matched to a class-0 target, query 1 is unmatched (no-object, weight eos).
    eos = 0.1
    logits = torch.tensor([[[2.0, 0, 0, 0], [2.0, 0, 0, 0]]])  # [1, 2, K + 1]
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 2, SIZE, SIZE)}
    criterion = make_criterion(FixedMatcher(([0], [0])), eos_coef=eos)
    losses = criterion(outputs, [target([0], stripes(1))])
    normaliser = math.exp(2) + NUM_CLASSES
    ce_matched = -math.log(math.exp(2) / normaliser)
    ce_unmatched = -math.log(1 / normaliser)
    expected = (1.0 * ce_matched + eos * ce_unmatched) / (1.0 + eos)
    assert losses["loss_ce"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.usefixtures("pixel_centre_points")
def test_half_overlap_mask_losses_by_hand() -> None:
    # Target 0 covers columns 2-5, its prediction columns 0-3: half of each overlaps.
    # Target 1 is predicted perfectly. Both losses are summed over masks and divided by 2.
    gt = torch.stack([columns(2, 5), columns(6, 7)])
    pred = torch.stack([columns(0, 3), columns(6, 7)])
    _, pred_masks = confident_predictions(2, [0, 1], [0, 0], pred)
    outputs = {"pred_logits": torch.zeros(1, 2, NUM_CLASSES + 1), "pred_masks": pred_masks[None]}
    losses = make_criterion(FixedMatcher(([0, 1], [0, 1])))(outputs, [target([0, 0], gt)])
    area, overlap, pixels = 32, 16, SIZE * SIZE
    dice_half = 1 - (2 * overlap + 1) / (2 * area + 1)
    wrong_pixels = 2 * (area - overlap)  # each costs softplus(LOGIT) = LOGIT + log(1 + e^-LOGIT)
    bce_half = wrong_pixels / pixels * (LOGIT + math.log1p(math.exp(-LOGIT)))
    assert losses["loss_dice"].item() == pytest.approx(dice_half / 2, rel=1e-5)
    assert losses["loss_mask"].item() == pytest.approx(bce_half / 2, rel=1e-5)


def test_mask_losses_by_hand_with_importance_sampling() -> None:
    # Zero logits against an all-zero target mask: every sampled point is exact.
    torch.manual_seed(0)
    num_points = 64
    outputs = {"pred_logits": torch.zeros(1, 3, NUM_CLASSES + 1), "pred_masks": torch.zeros(1, 3, 4, 4)}
    criterion = make_criterion(FixedMatcher(([1], [0])), num_points=num_points)
    losses = criterion(outputs, [target([1], torch.zeros(1, SIZE, SIZE))])
    assert losses["loss_mask"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(1 - 1 / (num_points / 2 + 1), rel=1e-6)


def test_empty_targets() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, NUM_CLASSES + 1, requires_grad=True)
    masks = torch.randn(2, 5, SIZE // 2, SIZE // 2, requires_grad=True)
    losses = make_criterion()({"pred_logits": logits, "pred_masks": masks}, [empty_target(), empty_target()])
    # Every query targets no-object; with equal weights the weighted mean is the plain mean.
    expected_ce = -torch.log_softmax(logits, -1)[..., NUM_CLASSES].mean()
    torch.testing.assert_close(losses["loss_ce"], expected_ce)
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0
    sum(losses.values()).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert masks.grad is not None and torch.equal(masks.grad, torch.zeros_like(masks))


def test_batch_mixing_empty_and_annotated_images() -> None:
    torch.manual_seed(0)
    labels, gt = [0, 1], stripes(2)
    logits = torch.randn(2, 4, NUM_CLASSES + 1, requires_grad=True)
    masks = torch.randn(2, 4, SIZE // 2, SIZE // 2, requires_grad=True)
    outputs = {"pred_logits": logits, "pred_masks": masks}
    losses = make_criterion()(outputs, [empty_target(), target(labels, gt)])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert masks.grad[0].abs().sum() == 0 and masks.grad[1].abs().sum() > 0


def test_deep_supervision_keys() -> None:
    torch.manual_seed(0)
    labels, gt = [0, 2], stripes(2)
    final = batch(confident_predictions(4, [1, 2], labels, gt))
    outputs = {**final, "aux_outputs": [dict(final), dict(final)]}
    losses = make_criterion()(outputs, [target(labels, gt)])
    names = ["loss_ce", "loss_mask", "loss_dice"]
    assert set(losses) == {f"{n}{s}" for n in names for s in ["", "_0", "_1"]}
    assert losses["loss_ce_0"].item() == losses["loss_ce"].item()


def test_num_masks_is_averaged_over_workers(tmp_path: object) -> None:
    targets = [target([0, 1], stripes(2)), target([2], stripes(1))]
    assert average_num_masks([empty_target()], torch.device("cpu")) == 1.0
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert average_num_masks(targets, torch.device("cpu")) == 3.0
    finally:
        dist.destroy_process_group()
