"""A track's frames side by side in one pycocotools RLE, for spatio-temporal IoU in one call.

RLE runs go column by column, so a ``T``-frame ``h x w`` track laid side by side is one
``h x (T * w)`` mask whose runs are the frames' runs in turn, and the IoU of two such masks is
the YouTube-VIS spatio-temporal IoU. pycocotools counts pixels in 32 bits, so a track of more
than ``MAX_RLE_PIXELS`` pixels is cut into chunks of whole frames, each its own RLE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from minvis.ytvis_format import RLE, DecodedRuns, decode_rles, split_by_lengths

MAX_RLE_PIXELS = 2**32 - 1  # pycocotools' uint pixel counts
_BATCH_FRAMES = 1024  # frames decoded and laid out per numpy pass (bounded temporaries)


@dataclass(frozen=True)
class TrackShape:
    height: int
    width: int
    present: np.ndarray  # [T] bool: frames with a mask (an RLE of the decoded runs)
    needs_chunks: bool = True  # False: only the frame areas are wanted (nothing to compare it with)


@dataclass(frozen=True)
class TrackMasks:
    chunks: list[RLE]  # [C] compressed RLEs, each of consecutive frames side by side (none if not needed)
    chunk_areas: np.ndarray  # [C] int64 foreground pixels
    frame_areas: np.ndarray  # [T] int64 foreground pixels per frame


def decode_track_masks(
    shapes: Sequence[TrackShape],
    rles: Sequence[object],
    where: Callable[[int], str],
    *,
    compressed_only: bool,
) -> list[TrackMasks]:
    """Validate and decode the RLEs of the tracks' present frames (track by track, frame by
    frame) into whole-track masks, about ``_BATCH_FRAMES`` frames at a time."""
    present = [int(shape.present.sum()) for shape in shapes]
    masks: list[TrackMasks] = []
    first_track = first_rle = 0
    while first_track < len(shapes):
        last_track, frames = first_track, 0
        while last_track < len(shapes) and (
            last_track == first_track or frames + present[last_track] <= _BATCH_FRAMES
        ):
            frames += present[last_track]
            last_track += 1
        decoded = decode_rles(
            rles[first_rle : first_rle + frames],
            lambda i, first=first_rle: where(first + i),
            compressed_only=compressed_only,
        )
        masks += build_track_masks(shapes[first_track:last_track], decoded)
        first_track, first_rle = last_track, first_rle + frames
    return masks


def build_track_masks(shapes: Sequence[TrackShape], decoded: DecodedRuns) -> list[TrackMasks]:
    """Whole-track RLEs of tracks whose present frames' runs are ``decoded``, vectorised: the
    frames' foreground intervals are placed in their chunk, those touching across a frame border
    merged, and each chunk's runs are the gaps and lengths between them."""
    if not shapes:
        return []
    num_frames = np.array([s.present.size for s in shapes], dtype=np.int64)  # [K] tracks
    frame_pixels = np.array([s.height * s.width for s in shapes], dtype=np.int64)  # [K]
    per_chunk = np.array([max(1, MAX_RLE_PIXELS // (s.height * s.width)) for s in shapes], dtype=np.int64)
    needs_chunks = np.array([s.needs_chunks for s in shapes], dtype=bool)  # [K]
    num_chunks = np.where(needs_chunks, -(-num_frames // per_chunk), 0)  # [K]
    first_chunk = np.cumsum(num_chunks) - num_chunks  # [K]

    # Each present frame (S in all): its track, frame index, chunk and offset in the chunk.
    rle_track = np.repeat(np.arange(len(shapes)), [int(s.present.sum()) for s in shapes])  # [S]
    rle_frame = np.concatenate([np.flatnonzero(s.present) for s in shapes])  # [S]
    rle_chunk = first_chunk[rle_track] + rle_frame // per_chunk[rle_track]  # [S]
    rle_offset = (rle_frame % per_chunk[rle_track]) * frame_pixels[rle_track]  # [S]

    # Foreground intervals [start, end) of every frame in its chunk's coordinates. A zero
    # run closes each RLE with an odd number of runs, so runs pair up (background, foreground).
    counts = decoded.run_counts  # [S]
    odd_count = np.flatnonzero(counts & 1)
    runs = np.insert(decoded.runs, np.cumsum(counts)[odd_count], 0)  # [2P]
    pairs_per_rle = (counts + 1) // 2  # [S]
    pair_rle = np.repeat(np.arange(counts.size), pairs_per_rle)  # [P]
    first_pair = np.cumsum(pairs_per_rle) - pairs_per_rle  # [S]
    pair_end = np.cumsum(runs)[1::2]  # [P] end of each foreground run, over all RLEs
    fg_length = runs[1::2]  # [P]
    frame_area = np.add.reduceat(fg_length, first_pair) if first_pair.size else first_pair  # [S]
    foreground = np.flatnonzero(fg_length)  # [F] non-empty foreground runs
    fg_rle = pair_rle[foreground]  # [F]
    if not needs_chunks.all():
        foreground = foreground[needs_chunks[rle_track[fg_rle]]]  # [I] of the tracks with chunks
        fg_rle = pair_rle[foreground]
    rle_base = (
        pair_end[first_pair] - runs[2 * first_pair + 1] - runs[2 * first_pair] - rle_offset
    )  # [S] chunk origin
    interval_end = pair_end[foreground] - rle_base[fg_rle]  # [I]
    interval_start = interval_end - fg_length[foreground]
    interval_chunk = rle_chunk[fg_rle]  # [I]

    # Merge intervals that continue one another (a foreground run across a frame border).
    new = np.ones(interval_end.size, dtype=bool)
    new[1:] = (interval_start[1:] != interval_end[:-1]) | (interval_chunk[1:] != interval_chunk[:-1])
    starts_at = np.flatnonzero(new)
    chunk_of = interval_chunk[starts_at]  # [M] merged intervals
    start = interval_start[starts_at]
    end = interval_end[np.append(starts_at[1:] - 1, interval_end.size - 1)] if starts_at.size else start

    # Runs of each chunk: gap, length, gap, length, ..., last gap  (2 * M + C values).
    total_chunks = int(num_chunks.sum())
    chunk_track = np.repeat(np.arange(len(shapes)), num_chunks)  # [C]
    chunk_index = np.arange(total_chunks) - first_chunk[chunk_track]  # [C] within its track
    chunk_frames = np.minimum(
        per_chunk[chunk_track], num_frames[chunk_track] - chunk_index * per_chunk[chunk_track]
    )  # [C]
    chunk_pixels = chunk_frames * frame_pixels[chunk_track]  # [C]
    previous_end = np.zeros_like(start)
    previous_end[1:] = np.where(chunk_of[1:] == chunk_of[:-1], end[:-1], 0)
    intervals_per_chunk = np.bincount(chunk_of, minlength=total_chunks)  # [C]
    last_end = np.zeros(total_chunks, dtype=np.int64)
    last_end[chunk_of] = end  # the last interval of each chunk wins
    pairs = np.empty((start.size, 2), dtype=np.uint32)  # (gap, length) of each interval
    pairs[:, 0] = start - previous_end
    pairs[:, 1] = end - start
    chunk_pairs_end = np.cumsum(2 * intervals_per_chunk)  # [C] where each chunk's last gap goes
    flat = np.insert(pairs.ravel(), chunk_pairs_end, (chunk_pixels - last_end).astype(np.uint32))
    chunk_runs = split_by_lengths(flat, 2 * intervals_per_chunk + 1)

    chunks = _compress(
        [
            {"size": [shapes[t].height, int(frames) * shapes[t].width], "counts": counts}
            for t, frames, counts in zip(chunk_track.tolist(), chunk_frames.tolist(), chunk_runs, strict=True)
        ]
    )
    first_frame = np.cumsum(num_frames) - num_frames  # [K] in the tracks' frames laid end to end
    areas = np.zeros(int(num_frames.sum()), dtype=np.int64)
    areas[first_frame[rle_track] + rle_frame] = frame_area
    chunk_first_frame = first_frame[chunk_track] + chunk_index * per_chunk[chunk_track]  # [C]
    area_before = np.concatenate(([0], np.cumsum(areas)))  # [sum T + 1]
    chunk_areas = area_before[chunk_first_frame + chunk_frames] - area_before[chunk_first_frame]  # [C]
    chunk_ranges = np.stack([first_chunk, first_chunk + num_chunks], axis=1).tolist()  # [K, 2]
    return [
        TrackMasks(chunks=chunks[a:b], chunk_areas=chunk_areas[a:b], frame_areas=frame_areas)
        for (a, b), frame_areas in zip(chunk_ranges, split_by_lengths(areas, num_frames), strict=True)
    ]


def _compress(uncompressed: list[RLE]) -> list[RLE]:
    """pycocotools' compressed RLEs of uncompressed ones, one call per mask size."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, rle in enumerate(uncompressed):
        by_size.setdefault(tuple(rle["size"]), []).append(i)
    compressed: list[RLE] = [{}] * len(uncompressed)
    for (height, width), indices in by_size.items():
        converted = mask_utils.frPyObjects([uncompressed[i] for i in indices], height, width)
        for i, rle in zip(indices, converted, strict=True):
            compressed[i] = rle
    return compressed
