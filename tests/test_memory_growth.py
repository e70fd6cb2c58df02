"""Memory does not grow with the video: a CI-sized check of the streaming and bounded paths.

A few hundred small frames through the tiny model (random weights, every track shown);
the bytes of all live tensors (every tensor the garbage collector can reach, counted once
per storage) are measured after frame ``EARLY`` and after the last frame. Their growth
must stay below ``MAX_GROWTH_BYTES``, far less than what keeping any per-frame tensor
(e.g. each frame's ``[Q, h, w]`` mask logits, 15 kB here) would add over the video. The
full-length RSS measurement on vtest.avi is the slow ``test_memory_is_flat_over_a_long_video``.
"""

import gc
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from detectron2.modeling import build_model

from minvis.config import build_config
from minvis.predictor import VideoPredictor

TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"
NUM_FRAMES, EARLY = 200, 40
HEIGHT, WIDTH = 64, 80
SMALL_INPUT = ["INPUT.MIN_SIZE_TEST", HEIGHT, "INPUT.MAX_SIZE_TEST", 1000]
MAX_GROWTH_BYTES = 256 * 1024  # < 17 frames of mask logits; 160 frames would add 2.4 MB


def live_tensor_bytes() -> int:
    """Bytes of the storages of all tensors reachable by the garbage collector."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type != "meta":
            storage = obj.untyped_storage()
            try:
                storages[storage.data_ptr()] = storage.nbytes()
            except RuntimeError:  # no data: a fake tensor that torch.export (an earlier test) keeps
                continue
    return sum(storages.values())


def frames(count: int) -> Iterator[np.ndarray]:
    """Random RGB ``uint8 [HEIGHT, WIDTH, 3]`` frames, made on demand."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        yield rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cfg():
    return build_config(str(TINY_CONFIG), SMALL_INPUT)


def test_streaming_predictor_state_does_not_grow(cfg):
    torch.manual_seed(0)
    predictor = VideoPredictor.from_config(cfg, score_threshold=0.0)
    measured, reported = {}, 0
    for result in predictor(frames(NUM_FRAMES)):
        reported += len(result.track_ids)
        if result.frame_index in (EARLY, NUM_FRAMES - 1):
            measured[result.frame_index] = live_tensor_bytes()
        del result
    assert reported > 0  # masks were made and reported
    growth = measured[NUM_FRAMES - 1] - measured[EARLY]
    assert growth < MAX_GROWTH_BYTES, measured


def test_paper_exact_result_with_masks_on_disk_does_not_grow(cfg):
    """``track_video`` with window inference and SPILL_MASKS_TO_DISK: while the frames are
    consumed, and while the result's masks are streamed out frame by frame."""
    cfg = cfg.clone()
    cfg.merge_from_list(
        [
            "MODEL.MASK_FORMER.TEST.WINDOW_INFERENCE", True, "MODEL.MASK_FORMER.TEST.WINDOW_SIZE", 5,
            "MODEL.MASK_FORMER.TEST.SPILL_MASKS_TO_DISK", True,
        ]
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    measured = {}

    def model_inputs() -> Iterator[torch.Tensor]:
        for index, frame in enumerate(frames(NUM_FRAMES)):
            if index in (EARLY, NUM_FRAMES - 1):  # frames 0..index-1 went through the model
                measured[f"input {index}"] = live_tensor_bytes()
            yield torch.from_numpy(frame).permute(2, 0, 1)  # uint8 [3, H, W]

    result = model.track_video({"image": model_inputs()})
    for index, masks in enumerate(result.frame_masks()):
        assert masks.shape == (model.top_k, HEIGHT, WIDTH)
        if index in (EARLY, NUM_FRAMES - 1):
            measured[f"output {index}"] = live_tensor_bytes()
        del masks
    for stage in ("input", "output"):
        growth = measured[f"{stage} {NUM_FRAMES - 1}"] - measured[f"{stage} {EARLY}"]
        assert growth < MAX_GROWTH_BYTES, measured
