"""Which frames of a video are used for training, as in the official MinVIS dataset mapper."""

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

_T = TypeVar("_T")


class RandomSource(Protocol):
    """The part of :class:`random.Random` (or the :mod:`random` module) used here."""

    def randrange(self, stop: int, /) -> int: ...

    def choices(self, population: Sequence[_T], *, k: int) -> list[_T]: ...

    def shuffle(self, x: list[int], /) -> None: ...


def _check_length(length: int) -> None:
    if length < 1:
        raise ValueError(f"A video needs at least one frame, got length {length}.")


def subsampled_frame_indices(length: int, ratio: float) -> list[int]:
    """Indices of the frames whose annotations are kept under ``SAMPLING_FRAME_RATIO`` (the
    paper's 1% / 5% / 10% settings). The float ``linspace`` is the official computation: in rare
    cases (length 30, ratio 0.75) it lands one frame below the exact ``floor(i * length / n)``."""
    _check_length(length)
    if ratio <= 0:
        raise ValueError(f"SAMPLING_FRAME_RATIO must be positive, got {ratio}.")
    if ratio >= 1.0:
        return list(range(length))
    num = max(int(np.round(length * ratio)), 1)
    if num == 1:
        return [length // 2]
    return np.linspace(0, length, num=num, endpoint=False, dtype=int).tolist()


def sample_clip_frames(
    length: int,
    num_frames: int,
    frame_range: int,
    ratio: float,
    shuffle: bool,
    rng: RandomSource,
) -> list[int]:
    """Draw the frames of one training clip of a video (official semantics): a reference frame,
    and ``num_frames - 1`` others with replacement at most ``frame_range`` away, sorted unless
    ``shuffle``. ``rng`` is usually the :mod:`random` module, which detectron2 seeds per worker."""
    _check_length(length)
    if num_frames < 1:
        raise ValueError(f"SAMPLING_FRAME_NUM must be >= 1, got {num_frames}.")
    if ratio < 1.0:
        if num_frames != 1:
            raise ValueError(
                f"SAMPLING_FRAME_RATIO < 1 supports only SAMPLING_FRAME_NUM == 1, got {num_frames}."
            )
        kept = subsampled_frame_indices(length, ratio)
        return [kept[rng.randrange(len(kept))]]

    ref = rng.randrange(length)
    start, end = max(0, ref - frame_range), min(length, ref + frame_range + 1)
    neighbours = [i for i in range(start, end) if i != ref] or [ref]
    clip = sorted(rng.choices(neighbours, k=num_frames - 1) + [ref])
    if shuffle:
        rng.shuffle(clip)
    return clip
