"""A small synthetic video instance segmentation dataset in YouTube-VIS format (trains on a CPU).

Textured shapes of four classes drift and spin over a noisy background, occlude each other
and swing out of the frame and back (null segmentations while invisible). Every video is
determined by ``(seed, split, index)``. :data:`STRESS_PRESETS` make tracking harder:
``occlusion`` (a band in front of the objects), ``reentry``, ``lookalike``.
"""

import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .video_io import VideoWriter

SYNTHETIC_CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "circle", "color": [220, 60, 60], "supercategory": "shape"},
    {"id": 2, "name": "square", "color": [60, 170, 75], "supercategory": "shape"},
    {"id": 3, "name": "triangle", "color": [65, 105, 225], "supercategory": "shape"},
    {"id": 4, "name": "star", "color": [230, 190, 40], "supercategory": "shape"},
]


OCCLUDER_COLOR = (128.0, 128.0, 128.0)  # grey band in front of every object
OCCLUDER_STRIPE_PERIOD = 6  # pixels between the band's vertical stripes
OCCLUDER_STRIPE_SHADE = 0.7  # brightness of the darker stripes


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and format of the generated videos, and how hard they are to track (the fields after
    ``rle``). Sizes and speeds are fractions of the frame's shorter side / size."""

    num_frames: int = 12
    height: int = 128
    width: int = 160
    max_objects: int = 4
    rle: Literal["uncompressed", "compressed"] = "uncompressed"
    min_objects: int = 2
    size_range: tuple[float, float] = (0.11, 0.2)
    swing_probability: float = 0.6  # chance that an object swings out of the frame and back
    max_speed: float = 0.035  # drift per frame, per axis
    look_alike: bool = False  # every object copies the first one's class, colour, texture, size
    occluder_width: float = 0.0  # width of a vertical band at the centre, drawn over all objects


STRESS_PRESETS: dict[str, dict[str, Any]] = {
    "occlusion": {"min_objects": 3, "max_objects": 5, "size_range": (0.15, 0.24), "occluder_width": 0.22},
    "reentry": {"min_objects": 2, "max_objects": 3, "swing_probability": 1.0},
    "lookalike": {"min_objects": 3, "max_objects": 4, "look_alike": True, "max_speed": 0.06},
}


def stress_spec(preset: str, base: SyntheticSpec | None = None) -> SyntheticSpec:
    """``base`` (default: :class:`SyntheticSpec`) with a stress preset's fields ("none": unchanged)."""
    base = base or SyntheticSpec()
    if preset == "none":
        return base
    if preset not in STRESS_PRESETS:
        raise ValueError(f"unknown stress preset {preset!r}; known: none, {', '.join(STRESS_PRESETS)}")
    return replace(base, **STRESS_PRESETS[preset])


@dataclass
class SyntheticVideo:
    """One rendered video: RGB frames and per-object masks, ``(objects, frames, H, W)``."""

    frames: list[np.ndarray]
    category_ids: list[int]
    visible_masks: np.ndarray
    amodal_masks: np.ndarray


@dataclass
class _Object:
    kind: int
    size: float
    color: np.ndarray
    stripe_period: float
    stripe_angle: float
    angle: float
    spin: float
    center: np.ndarray
    velocity: np.ndarray
    swing: np.ndarray | None  # (axis, amplitude, phase) of an object that leaves the frame


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of video ``index`` of ``split``."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _random_object(rng: np.random.Generator, spec: SyntheticSpec, swings: bool) -> _Object:
    short = min(spec.height, spec.width)
    frame_size = np.array([spec.width, spec.height], dtype=float)
    kind = int(rng.integers(len(SYNTHETIC_CATEGORIES)))
    size = float(rng.uniform(*spec.size_range) * short)
    base = np.array(SYNTHETIC_CATEGORIES[kind]["color"], dtype=float)
    swing = None
    if swings:
        axis = int(rng.integers(2))
        amplitude = 1.4 * (frame_size[axis] / 2 + size)
        swing = np.array([axis, amplitude, rng.uniform(0, 2 * math.pi)])
    return _Object(
        kind=kind,
        size=size,
        color=np.clip(base + rng.uniform(-30, 30, size=3), 0, 255),
        stripe_period=float(rng.uniform(4, 9)),
        stripe_angle=float(rng.uniform(0, math.pi)),
        angle=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-0.2, 0.2)),
        center=rng.uniform(0.3, 0.7, size=2) * frame_size,
        velocity=rng.uniform(-spec.max_speed, spec.max_speed, size=2) * frame_size,
        swing=swing,
    )


def _position(obj: _Object, t: int, spec: SyntheticSpec) -> np.ndarray:
    """Centre at frame ``t``: a drift that bounces off the borders, plus the swing."""
    frame_size = np.array([spec.width, spec.height], dtype=float)
    low, span = obj.size, np.maximum(frame_size - 2 * obj.size, 1.0)
    travelled = (obj.center - low + obj.velocity * t) % (2 * span)
    center = low + np.where(travelled > span, 2 * span - travelled, travelled)
    if obj.swing is not None:
        axis, amplitude, phase = int(obj.swing[0]), obj.swing[1], obj.swing[2]
        angle = 2 * math.pi * t / spec.num_frames + phase
        center[axis] = frame_size[axis] / 2 + amplitude * math.sin(angle)
    return center


def _polygon(kind: int, center: np.ndarray, size: float, angle: float) -> np.ndarray:
    """Vertices (N, 2) of a circle (as a 32-gon), square, triangle or star."""
    if kind == 0:
        radii, count = [size], 32
    elif kind == 1:
        radii, count = [size * 1.2], 4
    elif kind == 2:
        radii, count = [size * 1.35], 3
    else:
        radii, count = [size * 1.4, size * 0.6], 10
    thetas = angle + 2 * math.pi * np.arange(count) / count
    r = np.resize(np.array(radii), count)
    return center + np.stack([r * np.cos(thetas), r * np.sin(thetas)], axis=1)


def _fill(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _background(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    coarse = rng.uniform(40, 200, size=(5, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (spec.width, spec.height), interpolation=cv2.INTER_CUBIC)
    return smooth + rng.normal(0, 12, size=smooth.shape).astype(np.float32)


def _texture(obj: _Object, center: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object's colour at its pixels, (N, 3), with stripes that move and turn with it."""
    ys, xs = np.nonzero(mask)
    angle = obj.stripe_angle + obj.angle
    phase = (xs - center[0]) * math.cos(angle) + (ys - center[1]) * math.sin(angle)
    shade = np.where((phase // obj.stripe_period) % 2 == 0, 1.0, 0.65)
    return shade[:, None] * obj.color


def _look_alike(objects: list[_Object]) -> list[_Object]:
    """Every object with the first one's class, colour, texture and size (motion kept)."""
    first = objects[0]
    same = {
        "kind": first.kind,
        "size": first.size,
        "color": first.color,
        "stripe_period": first.stripe_period,
        "stripe_angle": first.stripe_angle,
    }
    return [replace(obj, **same) for obj in objects]


def _occluder(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(H, W)`` and striped grey pixels ``(N, 3)`` of the central band (may be empty)."""
    half = spec.occluder_width * spec.width / 2
    xs = np.arange(spec.width)
    columns = np.abs(xs + 0.5 - spec.width / 2) < half
    mask = np.broadcast_to(columns, (spec.height, spec.width))
    shade = np.where((xs // OCCLUDER_STRIPE_PERIOD) % 2 == 0, 1.0, OCCLUDER_STRIPE_SHADE)
    pixels = np.broadcast_to(shade, (spec.height, spec.width))[mask][:, None] * np.array(OCCLUDER_COLOR)
    return mask, pixels


def render_video(rng: np.random.Generator, spec: SyntheticSpec) -> SyntheticVideo:
    """Render one video; objects listed back to front (the occluder band, if any, in front)."""
    num_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    objects = [
        _random_object(rng, spec, swings=rng.random() < spec.swing_probability) for _ in range(num_objects)
    ]
    if spec.look_alike:
        objects = _look_alike(objects)
    background = _background(rng, spec)
    occluder, occluder_pixels = _occluder(spec)
    shape = (num_objects, spec.num_frames, spec.height, spec.width)
    amodal, visible = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    frames = []
    for t in range(spec.num_frames):
        image = background.copy()
        for k, obj in enumerate(objects):
            center = _position(obj, t, spec)
            polygon = _polygon(obj.kind, center, obj.size, obj.angle + obj.spin * t)
            amodal[k, t] = _fill(polygon, spec.height, spec.width)
            image[amodal[k, t]] = _texture(obj, center, amodal[k, t])
        image[occluder] = occluder_pixels
        covered = occluder.copy()
        for k in reversed(range(num_objects)):
            visible[k, t] = amodal[k, t] & ~covered
            covered |= amodal[k, t]
        noisy = image + rng.normal(0, 6, size=image.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return SyntheticVideo(
        frames=frames,
        category_ids=[SYNTHETIC_CATEGORIES[o.kind]["id"] for o in objects],
        visible_masks=visible,
        amodal_masks=amodal,
    )


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _track_annotation(masks: np.ndarray, spec: SyntheticSpec) -> dict[str, Any]:
    """The per-frame fields of one object's YouTube-VIS annotation (null when invisible)."""
    encode = _uncompressed_rle if spec.rle == "uncompressed" else _compressed_rle
    segmentations, bboxes, areas = [], [], []
    for mask in masks:
        if not mask.any():
            segmentations.append(None)
            bboxes.append(None)
            areas.append(None)
            continue
        segmentations.append(encode(mask))
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        bboxes.append([x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1])
        areas.append(int(mask.sum()))
    return {"segmentations": segmentations, "bboxes": bboxes, "areas": areas}


def write_split(root: Path, split: str, num_videos: int, spec: SyntheticSpec, seed: int) -> Path:
    """Write ``root/split/JPEGImages/<video>/<frame>.jpg`` and ``root/split.json``."""
    videos, annotations = [], []
    for index in range(num_videos):
        video = render_video(video_rng(seed, split, index), spec)
        name = f"{split}_{index:04d}"
        (root / split / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        file_names = [f"{name}/{t:05d}.jpg" for t in range(spec.num_frames)]
        for file_name, frame in zip(file_names, video.frames, strict=True):
            path = root / split / "JPEGImages" / file_name
            cv2.imwrite(str(path), frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        video_id = index + 1
        videos.append(
            {
                "id": video_id,
                "file_names": file_names,
                "length": spec.num_frames,
                "height": spec.height,
                "width": spec.width,
            }
        )
        for category_id, masks in zip(video.category_ids, video.visible_masks, strict=True):
            if not masks.any():
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": category_id,
                    "iscrowd": 0,
                    "height": spec.height,
                    "width": spec.width,
                    **_track_annotation(masks, spec),
                }
            )
    content = {
        "info": {"description": f"synthetic YouTube-VIS-format data, seed {seed}"},
        "licenses": [],
        "categories": SYNTHETIC_CATEGORIES,
        "videos": videos,
        "annotations": annotations,
    }
    json_path = root / f"{split}.json"
    json_path.write_text(json.dumps(content))
    return json_path


def write_video_file(path: Path, frames: list[np.ndarray], fps: float = 6.0) -> None:
    """Write RGB frames as a video file; the extension picks the codec (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps, frames[0].shape[:2]) as writer:
        for frame in frames:
            writer.write(frame)
