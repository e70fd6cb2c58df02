"""Draw tracked instances on a frame: one stable colour per track, with id, class and score."""

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np
from detectron2.utils.colormap import colormap

from .tracking import FrameInstances

_PALETTE = colormap(rgb=True, maximum=255).astype(np.uint8)  # [74, 3] RGB
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_color(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of a track, the same on every frame."""
    return tuple(int(c) for c in _PALETTE[track_id % len(_PALETTE)])


def shown_instances(instances: FrameInstances, score_threshold: float) -> FrameInstances:
    """The instances worth drawing: score at least ``score_threshold`` and a non-empty mask."""
    keep = (instances.scores >= score_threshold) & instances.masks.flatten(1).any(1)  # [N]
    return dataclasses.replace(
        instances,
        track_ids=instances.track_ids[keep],
        labels=instances.labels[keep],
        scores=instances.scores[keep],
        masks=instances.masks[keep],
    )


def draw_instances(
    frame: np.ndarray, instances: FrameInstances, class_names: Sequence[str], alpha: float = 0.5
) -> np.ndarray:
    """A copy of an RGB ``uint8 [H, W, 3]`` frame with masks, outlines and ``#id class score``
    labels (masks of the frame's size; where they overlap, the later instance's colour)."""
    tracks = instances.track_ids.tolist()
    masks = instances.masks.numpy()  # bool [N, H, W]
    shown = np.full(frame.shape[:2], len(tracks), dtype=np.int16)  # [H, W]: instance shown, N = none
    for index, mask in enumerate(masks):
        shown[mask] = index
    palette = np.zeros((len(tracks) + 1, 3), dtype=np.uint8)  # [N + 1, 3], the last row unused
    palette[: len(tracks)] = np.array([track_color(t) for t in tracks], dtype=np.uint8).reshape(-1, 3)
    blended = cv2.addWeighted(frame, 1 - alpha, palette[shown], alpha, 0)  # [H, W, 3]
    canvas = frame.copy()
    np.copyto(canvas, blended, where=(shown < len(tracks))[..., None])

    scale = max(0.35, frame.shape[0] / 1200)
    thickness = max(1, round(frame.shape[0] / 400))
    corners = []
    for track, mask in zip(tracks, masks):
        binary = mask.view(np.uint8)  # [H, W], no copy
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, track_color(track), thickness)
        corners.append(cv2.boundingRect(binary)[:2])  # top-left (x, y) of the mask
    labels = zip(tracks, instances.labels.tolist(), instances.scores.tolist(), corners)
    for track, label, score, (x, y) in labels:  # labels on top of every mask
        text = f"#{track} {class_names[label]} {score:.2f}"
        (w, h), baseline = cv2.getTextSize(text, _FONT, scale, 1)
        y = max(y, h + baseline)
        cv2.rectangle(canvas, (x, y - h - baseline), (x + w, y), track_color(track), cv2.FILLED)
        cv2.putText(canvas, text, (x, y - baseline), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
