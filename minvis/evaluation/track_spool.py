"""Submission entries for a video processed frame by frame, with bounded memory.

Each reported mask is encoded at once and appended to its track's temporary file; at the end
one entry per track is read back, one track at a time (an all-zero RLE on unreported frames,
as the official release writes absent frames).
"""

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from minvis.tracking import FrameInstances
from minvis.ytvis_format import RLE, encode_masks

from ..closing import ClosedOnExit


class TrackSpool(ClosedOnExit):
    """Collects the per-frame RLE of every track on disk; an entry gets its track's last class and score."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="minvis_tracks_")
        self._files: dict[int, IO[str]] = {}
        self._last: dict[int, tuple[int, float]] = {}  # track -> (label, score)
        self._empty: RLE | None = None  # all-zero RLE of the frame size
        self.num_frames = 0

    def add(self, instances: FrameInstances) -> None:
        """Record one frame's instances (frames in order, starting at 0)."""
        if instances.frame_index != self.num_frames:
            raise ValueError(f"expected frame {self.num_frames}, got frame {instances.frame_index}")
        masks = instances.masks.numpy()  # [N, H, W]
        if self._empty is None:
            self._empty = encode_masks(np.zeros((1, *masks.shape[1:]), dtype=bool))[0]
        rles = encode_masks(masks)  # N RLE dicts
        fields = zip(instances.track_ids.tolist(), instances.labels.tolist(), instances.scores.tolist(), rles)
        for track, label, score, rle in fields:
            if track not in self._files:
                self._files[track] = (Path(self._dir.name) / f"{track}.jsonl").open("w+", encoding="utf-8")
            self._files[track].write(f"{instances.frame_index} {json.dumps(rle)}\n")
            self._last[track] = (label, score)
        self.num_frames += 1

    @property
    def num_tracks(self) -> int:
        return len(self._files)

    def entries(self, video_id: int, category_ids: Sequence[int]) -> Iterator[dict[str, Any]]:
        """One server-format entry per track, in track order (``category_ids``: per contiguous class)."""
        for track in sorted(self._files):
            file = self._files[track]
            file.flush()
            file.seek(0)
            segmentations: list[RLE | None] = [self._empty] * self.num_frames
            for line in file:
                frame, _, rle = line.partition(" ")
                segmentations[int(frame)] = json.loads(rle)
            label, score = self._last[track]
            yield {
                "video_id": video_id,
                "category_id": category_ids[label],
                "score": score,
                "segmentations": segmentations,
            }

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._dir.cleanup()

