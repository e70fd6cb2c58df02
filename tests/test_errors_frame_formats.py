"""Every image format the demo accepts decodes to the same RGB pixels in training, evaluation
and the demo (issue 22), checked against pixels computed by hand: one reader
(``minvis.data.video_io.read_image``) serves the dataset mapper and the demo's frame folders.
Training used to read 16-bit PNGs as white images."""

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from minvis.config import build_config
from minvis.data import YTVISDatasetMapper
from minvis.data.video_io import open_frame_source

GREY16 = np.array([[0, 0x00FF, 0x0100], [0x1234, 0x80FF, 0xFFFF]], np.uint16)  # 2x3
RGB8 = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [200, 100, 50], [1, 2, 3]]], np.uint8
)
ALPHA = np.array([[0, 128, 255], [255, 1, 0]], np.uint8)
PALETTE = [(10, 20, 30), (200, 100, 50), (0, 255, 128)]
INDICES = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
# Two flat 8x8 blocks: a flat block is the one thing JPEG stores exactly (at quality 100).
BLOCKS = np.repeat(np.repeat(np.array([[60, 180]], np.uint8), 8, axis=0), 8, axis=1)  # 8x16


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[:, :, None], 3, axis=2)


def palette_png(path: Path, **options: object) -> None:
    image = Image.fromarray(INDICES, "P")
    image.putpalette([c for colour in PALETTE for c in colour])
    image.save(path, **options)


# name -> (write the file, the RGB pixels expected: 16-bit samples keep their high byte)
FORMATS: dict[str, tuple[Callable[[Path], object], np.ndarray]] = {
    "rgb8.png": (lambda p: Image.fromarray(RGB8).save(p), RGB8),
    "grey8.png": (lambda p: Image.fromarray(ALPHA, "L").save(p), grey(ALPHA)),
    "grey16.png": (lambda p: cv2.imwrite(str(p), GREY16), grey(np.array([[0, 0, 1], [0x12, 0x80, 0xFF]]))),
    "rgb16.png": (
        lambda p: cv2.imwrite(str(p), np.stack([GREY16, GREY16[::-1], GREY16[:, ::-1]], axis=2)[:, :, ::-1]),
        np.stack(
            [
                [[0, 0, 1], [0x12, 0x80, 0xFF]],
                [[0x12, 0x80, 0xFF], [0, 0, 1]],
                [[1, 0, 0], [0xFF, 0x80, 0x12]],
            ],
            2,
        ),
    ),
    "grey-alpha.png": (
        lambda p: Image.fromarray(np.stack([INDICES * 100, ALPHA], axis=2), "LA").save(p),
        grey(INDICES * 100),
    ),
    "rgba.png": (lambda p: Image.fromarray(np.dstack([RGB8, ALPHA]), "RGBA").save(p), RGB8),
    "palette.png": (palette_png, np.array(PALETTE, np.uint8)[INDICES]),
    "palette-transparent.png": (
        lambda p: palette_png(p, transparency=1),
        np.array(PALETTE, np.uint8)[INDICES],
    ),
    "grey.jpg": (lambda p: Image.fromarray(BLOCKS, "L").save(p, quality=100), grey(BLOCKS)),
    "rgb.jpg": (lambda p: Image.fromarray(grey(BLOCKS)).save(p, quality=100), grey(BLOCKS)),
}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """One folder per format holding its one frame."""
    root = tmp_path_factory.mktemp("formats")
    for name, (write, _) in FORMATS.items():
        (root / name).mkdir()
        write(root / name / name)
    return root


def mapped(path: Path, size: tuple[int, int], is_train: bool) -> np.ndarray:
    """The frame as the dataset mapper gives it to the model (RGB, no resize, no flip)."""
    opts = ["INPUT.FORMAT", "RGB", "INPUT.MIN_SIZE_TRAIN", "(0,)", "INPUT.MIN_SIZE_TEST", "0"]
    cfg = build_config(None, [*opts, "INPUT.RANDOM_FLIP", "none"])
    video = {"file_names": [str(path)], "height": size[0], "width": size[1], "length": 1, "video_id": 1}
    out = YTVISDatasetMapper(cfg, is_train=is_train)({**video, "annotations": [[]]})
    image: torch.Tensor = out["image"][0]
    return image.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", FORMATS)
def test_training_evaluation_and_demo_decode_the_hand_computed_pixels(frames, name):
    expected = FORMATS[name][1].astype(np.uint8)
    path = frames / name / name
    (demo,) = list(open_frame_source(frames / name))
    size = expected.shape[:2]
    for decoded in (mapped(path, size, is_train=True), mapped(path, size, is_train=False), demo):
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected), (decoded, expected)
