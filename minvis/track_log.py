"""A JSON-lines log of each frame's tracks that another program can read while it grows.

One line per frame, written to the file in one unbuffered write as soon as it is complete:
``{"frame": 0, "time": 1767000000.5, "tracks": [{"id": 3, "category_id": 1, "class": "person",
"score": 0.91, "bbox": [x, y, w, h], "segmentation": {"size": [h, w], "counts": "..."}}]}``;
``bbox`` is the mask's box in pixels (COCO), ``segmentation`` its compressed RLE.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from pycocotools import mask as mask_utils

from .closing import ClosedOnExit
from .tracking import FrameInstances
from .ytvis_format import encode_masks


class TrackLog(ClosedOnExit):
    """Appends one line per frame to ``path``; ``class_names`` and ``category_ids`` per contiguous class."""

    def __init__(self, path: str | Path, class_names: Sequence[str], category_ids: Sequence[int]) -> None:
        self.class_names = class_names
        self.category_ids = category_ids
        self._file = open(path, "wb", buffering=0)  # each write goes to the file at once

    def write(self, time: float, instances: FrameInstances) -> None:
        """Log one frame's instances; ``time``: when the frame was read, in seconds."""
        rles = encode_masks(instances.masks.numpy())  # masks: bool [N, H, W]
        boxes = mask_utils.toBbox(rles).tolist() if rles else []  # [N, 4] x, y, w, h
        fields = zip(instances.track_ids.tolist(), instances.labels.tolist(), instances.scores.tolist())
        tracks = [
            {
                "id": track,
                "category_id": self.category_ids[label],
                "class": self.class_names[label],
                "score": score,
                "bbox": [int(v) for v in box],
                "segmentation": rle,
            }
            for (track, label, score), box, rle in zip(fields, boxes, rles, strict=True)
        ]
        line = json.dumps({"frame": instances.frame_index, "time": time, "tracks": tracks}) + "\n"
        data = memoryview(line.encode())
        while data:  # one write unless the system takes less
            data = data[self._file.write(data) :]

    def close(self) -> None:
        self._file.close()
