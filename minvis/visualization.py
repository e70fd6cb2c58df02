"""Draw tracked instances on a frame: one stable colour per track, with id, class and score."""

from collections.abc import Sequence

import cv2
import numpy as np
from detectron2.utils.colormap import colormap

from .inference import FrameInstances

__all__ = ["draw_instances", "track_color"]

_PALETTE = colormap(rgb=True, maximum=255).astype(np.uint8)  # [74, 3] RGB
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_color(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of a track, the same on every frame."""
    return tuple(int(c) for c in _PALETTE[track_id % len(_PALETTE)])


def draw_instances(
    frame: np.ndarray, instances: FrameInstances, class_names: Sequence[str], alpha: float = 0.5
) -> np.ndarray:
    """Overlay masks, outlines and ``#id class score`` labels on an RGB ``uint8 [H, W, 3]`` frame.

    Returns a new frame; ``instances.masks`` must have the frame's size.
    """
    canvas = frame.copy()
    height = frame.shape[0]
    scale = max(0.35, height / 1200)
    thickness = max(1, round(height / 400))
    labels = []
    for track, label, score, mask in zip(
        instances.track_ids.tolist(),
        instances.labels.tolist(),
        instances.scores.tolist(),
        instances.masks.numpy(),
    ):
        color = np.array(track_color(track), dtype=np.float32)
        canvas[mask] = (canvas[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, track_color(track), thickness)
        ys, xs = np.nonzero(mask)
        labels.append(
            (f"#{track} {class_names[label]} {score:.2f}", int(xs.min()), int(ys.min()), track)
        )
    for text, x, y, track in labels:  # labels on top of every mask
        (w, h), baseline = cv2.getTextSize(text, _FONT, scale, 1)
        y = max(y, h + baseline)
        cv2.rectangle(canvas, (x, y - h - baseline), (x + w, y), track_color(track), cv2.FILLED)
        cv2.putText(canvas, text, (x, y - baseline), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
