"""Tracking is invariant to each frame's query order and to the embeddings' norms, on real models.

The image model's query slots carry no identity across frames: MinVIS finds it by
Hungarian matching on ``1 - cos`` of the query embeddings. So shuffling every frame's
queries (another permutation per frame, applied to logits, masks and embeddings alike)
and rescaling every query's embedding by its own positive factor must not change the
video result. The parity fixture's own tracking is the identity on all frames with
nearly equal embedding norms, which neither a tracker that does nothing nor one that
matches on raw dot products would get wrong; here per-frame shuffles defeat the first
and per-query rescaling the second.

The outputs are changed where the network hands them over
(``VideoMaskFormer_frame._network``), so both the paper-exact path (``model(video)``,
one and several frames per forward) and the streaming ``VideoPredictor`` see them.
"""

import pytest
import torch
from detectron2.modeling import build_model
from test_model_parity import MIN_MASK_IOU, SCORE_TOLERANCE, _mask_iou, _video_input

from minvis.predictor import VideoPredictor

WINDOW_SIZE = 3  # does not divide T = 8: windows of 3, 3 and 2 frames
SCALE_RANGE = (0.05, 20.0)  # log-uniform embedding scale factors


class ShuffledOutputs:
    """Replaces ``model._network``: each frame's queries in a fresh random order, each
    embedding scaled by a random positive factor; records what it did per frame."""

    def __init__(self, model, seed: int) -> None:
        self.original = model._network
        self.generator = torch.Generator().manual_seed(seed)
        self.perms: list[torch.Tensor] = []  # per frame [Q]: shuffled slot i = original query perms[t][i]

    def __call__(self, images: torch.Tensor) -> dict:
        outputs = self.original(images)
        num_frames, num_queries = outputs["pred_embds"].shape[:2]
        perms = torch.stack(
            [torch.randperm(num_queries, generator=self.generator) for _ in range(num_frames)]
        )  # [n, Q]
        low, high = (torch.tensor(s).log() for s in SCALE_RANGE)
        scales = (low + (high - low) * torch.rand(num_frames, num_queries, 1, generator=self.generator)).exp()
        self.perms.extend(perms)
        take = (torch.arange(num_frames)[:, None], perms)  # [n, Q] per-frame gather
        return {
            "pred_logits": outputs["pred_logits"][take],
            "pred_masks": outputs["pred_masks"][take],
            "pred_embds": outputs["pred_embds"][take] * scales,
        }


@pytest.fixture(scope="module")
def model(parity_cfg, parity_fixture):
    model = build_model(parity_cfg).eval()
    model.load_state_dict(parity_fixture["state_dict"], strict=True)
    return model


def _shuffle(model, monkeypatch, seed: int) -> ShuffledOutputs:
    shuffled = ShuffledOutputs(model, seed)
    monkeypatch.setattr(model, "_network", shuffled)
    return shuffled


def _assert_equals_official(ours: dict, reference: dict) -> None:
    """Instances paired by (label, score), as the fixture's README says."""
    assert len(ours["pred_scores"]) == len(reference["pred_scores"]) == 10
    unmatched = list(range(len(reference["pred_scores"])))
    for score, label, mask in zip(ours["pred_scores"], ours["pred_labels"], ours["pred_masks"], strict=True):
        candidates = [j for j in unmatched if reference["pred_labels"][j] == label]
        assert candidates, f"no reference instance of class {label} left"
        j = min(candidates, key=lambda j: abs(reference["pred_scores"][j] - score))
        unmatched.remove(j)
        assert abs(reference["pred_scores"][j] - score) < SCORE_TOLERANCE
        assert _mask_iou(mask, reference["pred_masks"][j]) >= MIN_MASK_IOU


@pytest.mark.parametrize("window, seed", [(False, 0), (True, 1)])
def test_paper_exact_result_ignores_query_order_and_norms(model, parity_fixture, monkeypatch, window, seed):
    model.frames_per_forward = WINDOW_SIZE if window else 1
    shuffled = _shuffle(model, monkeypatch, seed)
    with torch.no_grad():
        ours = model(_video_input(parity_fixture))
    num_frames = len(parity_fixture["input"]["frames"])
    assert len(shuffled.perms) == num_frames
    # Every frame really was reordered, and not all in the same way.
    assert all(not torch.equal(p, torch.arange(len(p))) for p in shuffled.perms)
    assert len({tuple(p.tolist()) for p in shuffled.perms}) == num_frames
    _assert_equals_official(ours, parity_fixture["output"])


@pytest.fixture(scope="module")
def predictor(model, parity_cfg, parity_fixture, tmp_path_factory) -> VideoPredictor:
    weights = tmp_path_factory.mktemp("weights") / "parity.pth"
    torch.save({"model": parity_fixture["state_dict"]}, weights)
    cfg = parity_cfg.clone()
    # The fixture frames are already at model input size (96x128): keep them as they are.
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "INPUT.MIN_SIZE_TEST", 96])
    return VideoPredictor.from_config(cfg, score_threshold=0.0)


def _frames(fixture) -> list:
    return [f.permute(1, 2, 0).numpy() for f in fixture["input"]["frames"]]  # RGB [H, W, 3]


def test_streaming_tracks_ignore_query_order_and_norms(predictor, parity_fixture, monkeypatch):
    reference = list(predictor(_frames(parity_fixture)))
    shuffled = _shuffle(predictor.model, monkeypatch, seed=2)
    ours = list(predictor(_frames(parity_fixture)))
    assert len(ours) == len(reference) == len(shuffled.perms)
    # Frame 0 fixes the track order: shuffled track j is the original track perms[0][j].
    track_of = shuffled.perms[0]
    for t, (a, b) in enumerate(zip(ours, reference, strict=True)):
        assert len(b.track_ids) > 0
        order = torch.argsort(track_of[a.track_ids])  # ours in the reference's track order
        assert torch.equal(track_of[a.track_ids][order], b.track_ids), t
        assert torch.equal(a.labels[order], b.labels), t
        assert torch.allclose(a.scores[order], b.scores, atol=SCORE_TOLERANCE), t
        assert all(_mask_iou(m, n) >= MIN_MASK_IOU for m, n in zip(a.masks[order], b.masks, strict=True)), t
