"""The streaming VideoPredictor: paper-exact tracks, weights handling, flat memory."""

import itertools
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from helpers import frame_outputs

from minvis.config import build_config
from minvis.data.video_io import open_frame_source
from minvis.modeling import CheckpointLoadError, VideoInputError
from minvis.predictor import VideoPredictor
from minvis.tracking import Tracker, output_masks

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"


@pytest.fixture(scope="module")
def parity_weights(parity_fixture, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "parity.pth"
    torch.save({"model": parity_fixture["state_dict"]}, path)
    return path


def _parity_predictor(parity_cfg, weights: Path) -> VideoPredictor:
    cfg = parity_cfg.clone()
    # The fixture frames are already at model input size (96x128): keep them as they are.
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "INPUT.MIN_SIZE_TEST", 96])
    return VideoPredictor.from_config(cfg, score_threshold=0.0)


def test_streaming_tracks_equal_the_paper_exact_tracks(parity_fixture, parity_cfg, parity_weights):
    predictor = _parity_predictor(parity_cfg, parity_weights)
    frames = [f.permute(1, 2, 0).numpy() for f in parity_fixture["input"]["frames"]]  # [H, W, 3]
    results = list(predictor(frames))

    raw = parity_fixture["raw"]  # the official release's outputs of the same frames
    tracker = Tracker()
    reference = [frame_outputs(*frame, (96, 128), (96, 128)) for frame in zip(*raw.values())]
    reference_perms = [tracker.step(frame) for frame in reference]
    assert [r.frame_index for r in results] == list(range(len(frames)))
    for ours, frame, perm in zip(results, reference, reference_perms, strict=True):
        # Each reported track's mask is that of the query the official outputs align to it.
        expected = output_masks(frame.masks[perm[ours.track_ids]], frame, (96, 128))
        assert all(_iou(a, b) >= 0.999 for a, b in zip(ours.masks, expected, strict=True))

    # On the last frame the running class distribution is the whole-video one.
    aligned = torch.stack([lg[p] for lg, p in zip(raw["pred_logits"], reference_perms)])  # [T, Q, K+1]
    probabilities = torch.softmax(aligned.mean(0), dim=1)[:, :-1]  # [Q, K]
    last = results[-1]
    assert len(last.track_ids) > 0
    expected_scores, expected_labels = probabilities[last.track_ids].max(dim=1)
    assert torch.equal(last.labels, expected_labels)
    assert torch.allclose(last.scores, expected_scores, atol=1e-4)
    assert last.masks.dtype == torch.bool and last.masks.shape[1:] == (96, 128)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def test_weights_errors_name_the_file(parity_cfg, parity_weights, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        VideoPredictor.from_config(build_config(str(TINY_CONFIG), ["MODEL.WEIGHTS", str(missing)]))
    # A checkpoint of another architecture (the parity model) does not fit the tiny config.
    with pytest.raises(CheckpointLoadError, match="parity.pth: the checkpoint does not match"):
        VideoPredictor.from_config(build_config(str(TINY_CONFIG), ["MODEL.WEIGHTS", str(parity_weights)]))


def test_bad_frames_are_rejected():
    predictor = VideoPredictor.from_config(build_config(str(TINY_CONFIG), []))
    frame = np.zeros((64, 80, 3), dtype=np.uint8)
    with pytest.raises(VideoInputError, match=r"frame 1 has size \(32, 80\)"):
        list(predictor([frame, frame[:32]]))
    with pytest.raises(VideoInputError, match="frame 0: expected an RGB uint8"):
        list(predictor([frame.astype(np.float32)]))


def test_preprocessing_matches_the_test_mapper():
    cfg = build_config(str(TINY_CONFIG), ["INPUT.MIN_SIZE_TEST", 64, "INPUT.FORMAT", "BGR"])
    predictor = VideoPredictor.from_config(cfg)
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    image = predictor.preprocess(frame)
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 85)  # shortest edge 64
    assert predictor.class_names == ["circle", "square", "triangle", "star"]


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.slow  # all 795 frames of vtest.avi: ~30 s idle, many minutes on a busy CPU
def test_memory_is_flat_over_a_long_video():
    """All 795 frames of vtest.avi (576x768) through the tiny model: RSS stays flat (~30 s)."""
    predictor = VideoPredictor.from_config(build_config(str(TINY_CONFIG), []), score_threshold=0.0)
    rss = {}
    reported = 0
    for result in predictor(open_frame_source(VTEST)):
        reported += len(result.track_ids)
        if result.frame_index in (100, 794):
            rss[result.frame_index] = _rss_mb()
    assert reported > 0  # masks at full resolution were made on every frame
    assert rss[794] - rss[100] < 50, rss


def test_streaming_does_not_hold_the_video():
    """The predictor pulls frames lazily: results arrive before the source is exhausted."""
    predictor = VideoPredictor.from_config(build_config(str(TINY_CONFIG), []))
    pulled = 0

    def frames():
        nonlocal pulled
        for frame in open_frame_source(VTEST):
            pulled += 1
            yield frame

    first = next(iter(predictor(frames())))
    assert first.frame_index == 0 and pulled == 1
    assert len(list(itertools.islice(predictor(frames()), 3))) == 3


@pytest.mark.parametrize("image_format", ["BGR", "RGB"])
def test_model_input_equals_the_test_mappers_on_the_same_frames(image_format, tmp_path, monkeypatch):
    """What the streaming predictor feeds the model is what the test dataset mapper makes
    of the same frames read from image files, in both INPUT.FORMAT channel orders."""
    from PIL import Image

    from minvis.data.mapper import YTVISDatasetMapper

    frames = list(itertools.islice(open_frame_source(VTEST), 3))  # RGB [576, 768, 3]
    files = []
    for index, frame in enumerate(frames):
        files.append(str(tmp_path / f"{index:05d}.png"))
        Image.fromarray(frame).save(files[-1])
    video = {"file_names": files, "height": 576, "width": 768, "length": 3, "video_id": 1}
    cfg = build_config(str(TINY_CONFIG), ["INPUT.FORMAT", image_format])
    expected = YTVISDatasetMapper(cfg, is_train=False)(video)["image"]  # uint8 [3, h, w] each

    predictor = VideoPredictor.from_config(cfg)
    fed = []
    frame_outputs_of = predictor.model.frame_outputs
    monkeypatch.setattr(
        predictor.model, "frame_outputs", lambda images: frame_outputs_of(fed.append(i) or i for i in images)
    )
    list(predictor(frames))
    assert len(fed) == len(expected) == 3
    assert expected[0].shape == (3, 128, 171)  # resized by the test size: a real comparison
    for ours, reference in zip(fed, expected, strict=True):
        assert ours.dtype == reference.dtype == torch.uint8
        assert torch.equal(ours, reference)
