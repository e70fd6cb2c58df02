"""Video instance segmentation AP/AR with the YouTube-VIS definitions (also used for OVIS).

Reproduces the official ``ytvoseval`` (YouTube-VIS cocoapi fork) without its numpy limits and
per-pair Python loops:

* spatio-temporal IoU = sum over frames of the intersections / sum over frames of the unions;
* IoU thresholds 0.50:0.05:0.95, 101 recall points, 1 / 10 / 100 predictions per (video, category);
* area buckets (bounds inclusive) by an instance's mean area over its non-empty frames (ground
  truth: its ``areas`` field, as officially); out-of-bucket ground truth is ignored, and so are
  unmatched predictions outside the bucket; crowd ground truth is ignored and may absorb several
  predictions;
* precision/recall per category, then averaged over the categories with ground truth (-1 if none).

Per-category AP: all IoU thresholds, area "all", 100 predictions; -1 without ground truth.

OVIS occlusion split (the OVIS authors' ``oviseval``), when the ground truth has ``occlusion``:
per frame a label (``no_occlusion`` 0, ``slight_occlusion`` 0.25, ``severe_occlusion`` 0.75;
this project also takes a number in [0, 1], or one value for the whole track) or null; a
track's occlusion score is the mean of the highest half (``ceil(n / 2)``) of its non-null
frame scores; buckets light [0, 0.25], medium [0.25, 0.5], heavy [0.5, 1] (bounds inclusive,
so 0.25 and 0.5 are in two buckets). A bucket ignores the ground truth outside it, and the
predictions matched to those; unmatched predictions are never ignored by occlusion (they have
none). AP/AR over all areas, 100 predictions. The twelve numbers do not change.

Sparse annotation (``annotated_frames`` on a video, written by ``tools/data/import_dataset.py``:
the frames that were annotated): ground truth and predictions are compared on those frames
only; a prediction lists every frame of the video or only the annotated ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from minvis.ytvis_format import (
    YTVISFormatError,
    check_annotated_frames,
    is_int,
    submission_masks,
    validate_polygons,
)

from .track_masks import TrackMasks, TrackShape, decode_track_masks

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 128.0**2),
    "medium": (128.0**2, 256.0**2),
    "large": (256.0**2, 1e10),
}
# (name, is AP, IoU threshold or None for all, area bucket, max predictions)
STATS = (
    ("AP", True, None, "all", 100),
    ("AP50", True, 0.5, "all", 100),
    ("AP75", True, 0.75, "all", 100),
    ("APs", True, None, "small", 100),
    ("APm", True, None, "medium", 100),
    ("APl", True, None, "large", 100),
    ("AR1", False, None, "all", 1),
    ("AR10", False, None, "all", 10),
    ("AR100", False, None, "all", 100),
    ("ARs", False, None, "small", 100),
    ("ARm", False, None, "medium", 100),
    ("ARl", False, None, "large", 100),
)
STAT_NAMES = tuple(stat[0] for stat in STATS)
OCCLUSION_LABEL_SCORES = {"no_occlusion": 0.0, "slight_occlusion": 0.25, "severe_occlusion": 0.75}
OCCLUSION_RANGES = {"light": (0.0, 0.25), "medium": (0.25, 0.5), "heavy": (0.5, 1.0)}
# (name, is AP, occlusion bucket): area "all", all IoU thresholds, 100 predictions
OCCLUSION_STATS = (
    *((f"AP_{bucket}", True, bucket) for bucket in OCCLUSION_RANGES),
    *((f"AR_{bucket}", False, bucket) for bucket in OCCLUSION_RANGES),
)
OCCLUSION_STAT_NAMES = tuple(stat[0] for stat in OCCLUSION_STATS)
# The OVIS evaluator's eighteen numbers, in its order.
OVIS_STAT_NAMES = (*STAT_NAMES[:6], *OCCLUSION_STAT_NAMES[:3], *STAT_NAMES[6:], *OCCLUSION_STAT_NAMES[3:])


@dataclass(frozen=True)
class YTVISMetrics:
    stats: dict[str, float]  # STAT_NAMES in order
    per_category_ap: dict[int, float]  # category id -> AP (-1: no ground truth)
    # OCCLUSION_STAT_NAMES in order when the ground truth has occlusion, else empty
    occlusion_stats: dict[str, float] = field(default_factory=dict)

    @property
    def reported_stats(self) -> dict[str, float]:
        """What the official evaluators report: the OVIS evaluator's eighteen numbers in its
        order when the ground truth has occlusion, else the YouTube-VIS twelve."""
        if not self.occlusion_stats:
            return dict(self.stats)
        merged = {**self.stats, **self.occlusion_stats}
        return {name: merged[name] for name in OVIS_STAT_NAMES}


@dataclass(frozen=True)
class _Video:
    height: int
    width: int
    length: int


@dataclass
class _Instance:
    """A ground-truth or predicted track."""

    masks: TrackMasks
    mean_area: float
    score: float = 1.0  # predictions only
    is_crowd: bool = False  # ground truth only
    occlusion: float = 0.0  # ground truth only: the track's occlusion score


@dataclass
class _GroupResult:
    """Matching of one (video, category) in one bucket (area or occlusion), predictions by score."""

    scores: np.ndarray  # [D]
    matched: np.ndarray  # [T, D] bool
    dt_ignored: np.ndarray  # [T, D] bool
    num_gt: int  # non-ignored ground truth


def _mean_nonzero(areas: list[float | None] | np.ndarray) -> float:
    """Mean of the non-empty (non-zero, non-null) frames' areas; 0 if there is none."""
    if isinstance(areas, np.ndarray):  # pixel counts: integer sums, exact in any order
        kept = areas[areas > 0]
        return float(kept.mean()) if kept.size else 0.0
    listed = [a for a in areas if a]
    return float(np.array(listed, dtype=np.float64).mean()) if listed else 0.0


def _parse_videos(gt: dict[str, Any]) -> dict[int, _Video]:
    videos: dict[int, _Video] = {}
    keys = ("id", "height", "width", "length")
    for index, video in enumerate(gt["videos"]):
        if not isinstance(video, dict) or not all(is_int(video.get(k)) for k in keys):
            raise YTVISFormatError(f"ground-truth video {index}: needs integer {', '.join(keys)}")
        if video["id"] in videos:
            raise YTVISFormatError(f"ground-truth video {index}: duplicate id {video['id']}")
        videos[video["id"]] = _Video(video["height"], video["width"], video["length"])
    return videos


def _check_frames(segmentations: object, video: _Video, where: str) -> list[Any]:
    if not isinstance(segmentations, list) or len(segmentations) != video.length:
        found = len(segmentations) if isinstance(segmentations, list) else "no list of"
        raise YTVISFormatError(f"{where}: {found} segmentations for a video of {video.length} frames")
    return segmentations


def _check_size(rle: object, video: _Video, where: str) -> None:
    """An RLE's size list must be the video's (a malformed RLE is left to the RLE validation)."""
    if (
        isinstance(rle, dict)
        and isinstance(rle.get("size"), list)
        and rle["size"] != [video.height, video.width]
    ):
        raise YTVISFormatError(
            f"{where}: mask size {rle['size']} differs from the video's [{video.height}, {video.width}]"
        )


def _gt_frame_rle(segm: object, video: _Video, where: str) -> dict[str, Any]:
    """A pycocotools RLE of polygons, or the RLE dict itself (validated by the caller)."""
    if isinstance(segm, list):  # polygons
        validate_polygons(segm, video.height, video.width, where)
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, video.height, video.width))
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    if not isinstance(segm, dict) or "size" not in segm or "counts" not in segm:
        raise YTVISFormatError(f"{where}: expected an RLE dict, a polygon list or null")
    _check_size(segm, video, where)
    return segm


@dataclass(frozen=True)
class _Tracks:
    """The tracks of one file, checked but not decoded yet."""

    keys: list[tuple[int, int]]  # (video id, category id) per track
    shapes: list[TrackShape]
    rles: list[object]  # the present frames' RLEs, track by track
    where: Callable[[int], str]  # names the file's entry and frame of an RLE
    compressed_only: bool

    def decode(self, compared_with: set[tuple[int, int]]) -> list[TrackMasks]:
        """Validate and decode the masks; whole-track RLEs only for the tracks of a
        (video, category) in ``compared_with`` (the other tracks need only their areas)."""
        shapes = [
            replace(s, needs_chunks=k in compared_with) for s, k in zip(self.shapes, self.keys, strict=True)
        ]
        return decode_track_masks(shapes, self.rles, self.where, compressed_only=self.compressed_only)


@dataclass(frozen=True)
class _GroundTruth:
    tracks: _Tracks
    listed_areas: list[list[float | None] | None]  # the annotations' ``areas`` fields
    is_crowd: list[bool]
    occlusion: list[float] | None  # track occlusion scores; None: no occlusion in the file


def _frame_occlusion(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value in OCCLUSION_LABEL_SCORES:
        return OCCLUSION_LABEL_SCORES[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    raise YTVISFormatError(
        f"{where}: occlusion {value!r} is neither one of {', '.join(OCCLUSION_LABEL_SCORES)} "
        "nor a number in [0, 1]"
    )


def _occlusion_score(value: object, length: int, where: str) -> float:
    """The track's score: the mean of the highest ceil(n / 2) of its n non-null frame scores
    (the OVIS evaluator's definition, same float operations); one value: the whole track's."""
    if not isinstance(value, list):
        score = _frame_occlusion(value, f"{where} occlusion")
        if score is None:
            raise YTVISFormatError(f"{where}: occlusion is null")
        return score
    if len(value) != length:
        raise YTVISFormatError(f"{where}: {len(value)} occlusion values for a video of {length} frames")
    scores = [_frame_occlusion(v, f"{where} frame {frame}") for frame, v in enumerate(value)]
    known = sorted(s for s in scores if s is not None)
    if not known:
        raise YTVISFormatError(f"{where}: occlusion has no value (every frame is null)")
    top = known[-math.ceil(len(known) / 2) :]
    return sum(top) / len(top)


def _parse_occlusion(
    gt: dict[str, Any], videos: dict[int, _Video], is_crowd: list[bool]
) -> list[float] | None:
    """Track occlusion scores when any annotation has ``occlusion`` (then every non-crowd one
    must: a track without one would fall in no bucket); None otherwise."""
    annotations = gt["annotations"]
    if not any("occlusion" in ann for ann in annotations):
        return None
    scores = []
    for index, (ann, crowd) in enumerate(zip(annotations, is_crowd, strict=True)):
        where = f"ground-truth annotation {index} (id {ann.get('id')}, video_id {ann.get('video_id')})"
        if "occlusion" not in ann:
            if not crowd:
                raise YTVISFormatError(
                    f"{where}: no 'occlusion' while other annotations have one (the occlusion "
                    "split needs it on every non-crowd track)"
                )
            scores.append(0.0)  # a crowd is ignored in every bucket
            continue
        scores.append(_occlusion_score(ann["occlusion"], videos[ann["video_id"]].length, where))
    return scores


def _parse_gt(gt: dict[str, Any], videos: dict[int, _Video], categories: set[int]) -> _GroundTruth:
    keys, shapes, frame_rles, frame_wheres, listed_areas, is_crowd = [], [], [], [], [], []
    for index, ann in enumerate(gt["annotations"]):
        if not isinstance(ann, dict):
            raise YTVISFormatError(f"ground-truth annotation {index}: expected an object")
        where = f"ground-truth annotation {index} (id {ann.get('id')}, video_id {ann.get('video_id')})"
        video = videos.get(ann.get("video_id"))
        if video is None:
            raise YTVISFormatError(f"{where}: unknown video")
        if ann.get("category_id") not in categories:
            raise YTVISFormatError(f"{where}: unknown category {ann.get('category_id')}")
        segmentations = _check_frames(ann.get("segmentations"), video, where)
        size = [video.height, video.width]
        for frame, segm in enumerate(segmentations):
            if segm is None:
                continue
            if not (type(segm) is dict and segm.get("size") == size and "counts" in segm):  # else a fast path
                segm = _gt_frame_rle(segm, video, f"{where} frame {frame}")
            frame_rles.append(segm)
            frame_wheres.append((where, frame))
        listed = ann.get("areas")
        if listed is not None and not (
            isinstance(listed, list)
            and len(listed) == video.length
            and all(a is None or isinstance(a, int | float) for a in listed)
        ):
            raise YTVISFormatError(f"{where}: areas must list one number or null per frame")
        keys.append((ann["video_id"], ann["category_id"]))
        shapes.append(TrackShape(video.height, video.width, np.array([s is not None for s in segmentations])))
        listed_areas.append(listed)
        is_crowd.append(bool(ann.get("iscrowd", 0)))
    tracks = _Tracks(
        keys,
        shapes,
        frame_rles,
        lambda i: f"{frame_wheres[i][0]} frame {frame_wheres[i][1]}",
        compressed_only=False,
    )
    return _GroundTruth(tracks, listed_areas, is_crowd, _parse_occlusion(gt, videos, is_crowd))


def _parse_results(results: list[dict[str, Any]], videos: dict[int, _Video], categories: set[int]) -> _Tracks:
    masks = submission_masks(results)  # (entry label, frame, RLE) of every non-null frame
    keys, shapes = [], []
    for index, entry in enumerate(results):
        where = f"results entry {index} (video_id {entry['video_id']})"
        video = videos.get(entry["video_id"])
        if video is None:
            raise YTVISFormatError(f"{where}: unknown video")
        if entry["category_id"] not in categories:
            raise YTVISFormatError(f"{where}: unknown category {entry['category_id']}")
        rles = _check_frames(entry["segmentations"], video, where)
        size = [video.height, video.width]
        for frame, rle in enumerate(rles):
            if rle is not None and not (type(rle) is dict and rle.get("size") == size):  # else a fast path
                _check_size(rle, video, f"{where} frame {frame}")
        keys.append((entry["video_id"], entry["category_id"]))
        shapes.append(TrackShape(video.height, video.width, np.array([rle is not None for rle in rles])))
    rles = [rle for _, _, rle in masks]
    return _Tracks(keys, shapes, rles, lambda i: f"{masks[i][0]} frame {masks[i][1]}", compressed_only=True)


def _spatio_temporal_iou(dts: list[_Instance], gts: list[_Instance]) -> np.ndarray:
    """[D, G] sum-over-frames intersection / union, exact; one pycocotools call per chunk of frames."""
    inter = np.zeros((len(dts), len(gts)), dtype=np.int64)
    if not dts or not gts:
        return inter.astype(np.float64)
    dt_areas = np.stack([dt.masks.chunk_areas for dt in dts])  # [D, C] pixels
    gt_areas = np.stack([gt.masks.chunk_areas for gt in gts])  # [G, C]
    for chunk in range(dt_areas.shape[1]):
        iou = np.asarray(
            mask_utils.iou(
                [dt.masks.chunks[chunk] for dt in dts], [gt.masks.chunks[chunk] for gt in gts], [0] * len(gts)
            )
        )  # [D, G]
        a, b = dt_areas[:, chunk].astype(np.float64), gt_areas[:, chunk].astype(np.float64)
        # iou = i / (a + b - i)  =>  i = iou * (a + b) / (1 + iou); exact after rounding.
        inter += np.rint(iou * (a[:, None] + b[None, :]) / (1.0 + iou)).astype(np.int64)
    union = dt_areas.sum(axis=1)[:, None] + gt_areas.sum(axis=1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def _outside(values: np.ndarray, ranges: dict[str, tuple[float, float]] = AREA_RANGES) -> np.ndarray:
    """[A, n] bool: ``values`` [n] outside each range (bounds inclusive)."""
    bounds = np.array(list(ranges.values()), dtype=np.float64)  # [A, 2]
    return (values[None, :] < bounds[:, :1]) | (values[None, :] > bounds[:, 1:])


def _outside_buckets(area: np.ndarray, occlusion: np.ndarray | None, with_occlusion: bool) -> np.ndarray:
    """[B, n] bool: outside each bucket, the area buckets then (``with_occlusion``) the occlusion
    buckets at area "all"; ``occlusion`` None (predictions): those rows are area "all"'s."""
    by_area = _outside(area)  # [A, n]
    if not with_occlusion:
        return by_area
    if occlusion is None:
        by_occlusion = np.zeros((len(OCCLUSION_RANGES), area.size), dtype=bool)
    else:
        by_occlusion = _outside(occlusion, OCCLUSION_RANGES)  # [O, n]
    return np.concatenate([by_area, by_area[:1] | by_occlusion])


def _match(
    ious: np.ndarray, dts: list[_Instance], gts: list[_Instance], with_occlusion: bool = False
) -> list[_GroupResult]:
    """Greedy matching by descending score, per bucket, at every IoU threshold at once.

    Each prediction takes the best available non-ignored ground truth (the last one on ties, as
    officially), else an ignored one; matched crowd ground truth stays available.
    """
    gt_area = np.array([g.mean_area for g in gts], dtype=np.float64)  # [G]
    gt_occlusion = np.array([g.occlusion for g in gts], dtype=np.float64)  # [G]
    gt_crowd = np.array([g.is_crowd for g in gts], dtype=bool)  # [G]
    gt_ignored = gt_crowd | _outside_buckets(gt_area, gt_occlusion, with_occlusion)  # [A, G]
    order = np.argsort(gt_ignored, axis=1, kind="mergesort")  # [A, G] ignored last, as the official
    ious = np.take(ious, order, axis=1).transpose(1, 0, 2)  # [A, D, G]
    gt_crowd, gt_ignored = gt_crowd[order], np.take_along_axis(gt_ignored, order, axis=1)  # [A, G]
    num_a, num_t, num_d, num_g = gt_ignored.shape[0], len(IOU_THRESHOLDS), len(dts), len(gts)
    matched = np.zeros((num_a, num_t, num_d), dtype=bool)
    dt_ignored = np.zeros((num_a, num_t, num_d), dtype=bool)
    gt_taken = np.zeros((num_a, num_t, num_g), dtype=bool)
    thresholds = IOU_THRESHOLDS[None, :, None]  # [1, T, 1]
    for d in range(num_d if num_g else 0):
        iou = ious[:, None, d, :]  # [A, 1, G]
        candidate = (~gt_taken | gt_crowd[:, None, :]) & (iou >= thresholds)  # [A, T, G]
        regular = candidate & ~gt_ignored[:, None, :]
        allowed = np.where(regular.any(axis=2, keepdims=True), regular, candidate)
        values = np.where(allowed, iou, -1.0)[..., ::-1]
        best = num_g - 1 - values.argmax(axis=2)  # [A, T]
        hit = allowed.any(axis=2)  # [A, T]
        matched[..., d] = hit
        dt_ignored[..., d] = hit & np.take_along_axis(gt_ignored, best, axis=1)
        bucket, threshold = np.nonzero(hit)
        gt_taken[bucket, threshold, best[bucket, threshold]] = True
    dt_area = np.array([dt.mean_area for dt in dts], dtype=np.float64)  # [D]
    dt_ignored |= ~matched & _outside_buckets(dt_area, None, with_occlusion)[:, None, :]
    scores = np.array([dt.score for dt in dts], dtype=np.float64)
    num_gt = (~gt_ignored).sum(axis=1)  # [A]
    return [
        _GroupResult(scores=scores, matched=matched[a], dt_ignored=dt_ignored[a], num_gt=int(num_gt[a]))
        for a in range(num_a)
    ]


def _precision_recall(groups: list[_GroupResult], max_det: int) -> tuple[np.ndarray, np.ndarray] | None:
    """[T, R] interpolated precision and [T] recall over groups, None without ground truth."""
    num_gt = sum(g.num_gt for g in groups)
    if num_gt == 0:
        return None
    scores = np.concatenate([g.scores[:max_det] for g in groups])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([g.matched[:, :max_det] for g in groups], axis=1)[:, order]
    ignored = np.concatenate([g.dt_ignored[:, :max_det] for g in groups], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    num_t, num_d = tp.shape
    precision = np.zeros((num_t, len(RECALL_THRESHOLDS)))
    if num_d == 0:
        return precision, np.zeros(num_t)
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    for t in range(num_t):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        reached = idx < num_d
        precision[t, reached] = pr[t, idx[reached]]
    return precision, rc[:, -1]


def _match_all(
    gts: dict[tuple[int, int], list[_Instance]],
    dts: dict[tuple[int, int], list[_Instance]],
    category_ids: list[int],
    with_occlusion: bool = False,
) -> dict[int, list[list[_GroupResult]]]:
    """Per category and bucket (area, then occlusion), the (video, category) groups in ascending video id."""
    num_buckets = len(AREA_RANGES) + (len(OCCLUSION_RANGES) if with_occlusion else 0)
    grouped: dict[int, list[list[_GroupResult]]] = {
        cat: [[] for _ in range(num_buckets)] for cat in category_ids
    }
    for key in sorted(gts.keys() | dts.keys()):
        g, d = gts.get(key, []), dts.get(key, [])
        order = np.argsort([-x.score for x in d], kind="mergesort")[: MAX_DETS[-1]]
        d = [d[i] for i in order]
        results = _match(_spatio_temporal_iou(d, g), d, g, with_occlusion)
        for a, result in enumerate(results):
            grouped[key[1]][a].append(result)
    return grouped


def _accumulate(
    grouped: dict[int, list[list[_GroupResult]]], category_ids: list[int], num_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision [T, R, K, B, M] and recall [T, K, B, M] per bucket B (area, then occlusion);
    -1 where there is no ground truth."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(category_ids)
    num_a, num_m = num_buckets, len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    for k, cat in enumerate(category_ids):
        for a, groups in enumerate(grouped[cat]):
            for m, max_det in enumerate(MAX_DETS):
                pr = _precision_recall(groups, max_det)
                if pr is not None:
                    precision[:, :, k, a, m], recall[:, k, a, m] = pr
    return precision, recall


def _summary(values: np.ndarray) -> float:
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else -1.0


def _parse_header(gt: dict[str, Any]) -> tuple[dict[int, _Video], list[int]]:
    for key in ("videos", "categories", "annotations"):
        if not isinstance(gt, dict) or not isinstance(gt.get(key), list):
            raise YTVISFormatError(f"ground truth needs a '{key}' list")
    videos = _parse_videos(gt)
    if not all(isinstance(c, dict) and is_int(c.get("id")) for c in gt["categories"]):
        raise YTVISFormatError("ground truth: every category needs an integer id")
    return videos, sorted({c["id"] for c in gt["categories"]})


@contextmanager
def _errors_named(source: str | None) -> Iterator[None]:
    """Prefix the messages of format errors raised inside with ``source``."""
    try:
        yield
    except YTVISFormatError as error:
        raise YTVISFormatError(f"{source}: {error}" if source else str(error)) from None


def _sparse_videos(gt: object) -> dict[int, tuple[int, list[int]]]:
    """Video id -> (length, annotated frames) of the videos annotated on some frames only."""
    videos = gt.get("videos") if isinstance(gt, dict) else None
    sparse: dict[int, tuple[int, list[int]]] = {}
    for index, video in enumerate(videos if isinstance(videos, list) else []):
        if not isinstance(video, dict) or video.get("annotated_frames") is None:
            continue
        if not is_int(video.get("length")):
            continue  # reported by _parse_videos
        length = video["length"]
        frames = check_annotated_frames(video["annotated_frames"], length, f"ground-truth video {index}")
        if len(frames) < length:
            sparse[video.get("id")] = (length, frames)  # type: ignore[index]
    return sparse


def _frames_of(values: list[Any], frames: list[int]) -> list[Any]:
    return [values[f] for f in frames]


def _annotated_gt(gt: dict[str, Any], sparse: dict[int, tuple[int, list[int]]]) -> dict[str, Any]:
    """``gt`` on the annotated frames only; videos without any annotated frame left out."""
    videos = []
    for video in gt["videos"]:
        if not isinstance(video, dict) or video.get("id") not in sparse:
            videos.append(video)
        elif frames := sparse[video["id"]][1]:
            videos.append({**video, "length": len(frames), "annotated_frames": list(range(len(frames)))})
    annotations = []
    for index, ann in enumerate(gt["annotations"]):
        if not isinstance(ann, dict) or ann.get("video_id") not in sparse:
            annotations.append(ann)
            continue
        length, frames = sparse[ann["video_id"]]
        if not frames:
            continue
        where = f"ground-truth annotation {index} (id {ann.get('id')}, video_id {ann.get('video_id')})"
        ann = dict(ann)
        for key in ("segmentations", "areas", "occlusion", "bboxes"):
            if isinstance(ann.get(key), list) and len(ann[key]) == length:
                ann[key] = _frames_of(ann[key], frames)
            elif key != "bboxes" and isinstance(ann.get(key), list):
                raise YTVISFormatError(f"{where}: {len(ann[key])} {key} for a video of {length} frames")
        annotations.append(ann)
    return {**gt, "videos": videos, "annotations": annotations}


def _annotated_results(
    results: list[dict[str, Any]], sparse: dict[int, tuple[int, list[int]]]
) -> list[dict[str, Any]]:
    """Predictions on the annotated frames only: every frame's list cut, or already only those."""
    kept = []
    for index, entry in enumerate(results):
        segmentations = entry.get("segmentations") if isinstance(entry, dict) else None
        if not isinstance(segmentations, list) or entry.get("video_id") not in sparse:
            kept.append(entry)
            continue
        length, frames = sparse[entry["video_id"]]
        if not frames:
            continue
        if len(segmentations) == length:
            entry = {**entry, "segmentations": _frames_of(segmentations, frames)}
        elif len(segmentations) != len(frames):
            raise YTVISFormatError(
                f"results entry {index} (video_id {entry['video_id']}): {len(segmentations)} segmentations "
                f"for a video of {length} frames ({len(frames)} annotated)"
            )
        kept.append(entry)
    return kept


def _instances(
    gt: dict[str, Any], results: list[dict[str, Any]], gt_source: str | None, results_source: str | None
) -> tuple[list[int], dict[tuple[int, int], list[_Instance]], dict[tuple[int, int], list[_Instance]], bool]:
    """Category ids, the ground-truth and predicted tracks by (video id, category id), and
    whether the ground truth has occlusion."""
    with _errors_named(gt_source):
        sparse = _sparse_videos(gt)
        if sparse:
            gt = _annotated_gt(gt, sparse)
    if sparse:
        with _errors_named(results_source):
            results = _annotated_results(results, sparse)
    with _errors_named(gt_source):
        videos, category_ids = _parse_header(gt)
        ground_truth = _parse_gt(gt, videos, set(category_ids))
    with _errors_named(results_source):
        predictions = _parse_results(results, videos, set(category_ids))
    with _errors_named(gt_source):
        gt_masks = ground_truth.tracks.decode(set(predictions.keys))
    with _errors_named(results_source):
        dt_masks = predictions.decode(set(ground_truth.tracks.keys))
    gts: dict[tuple[int, int], list[_Instance]] = defaultdict(list)
    occlusion = ground_truth.occlusion or [0.0] * len(gt_masks)
    for key, masks, listed, crowd, occluded in zip(
        ground_truth.tracks.keys,
        gt_masks,
        ground_truth.listed_areas,
        ground_truth.is_crowd,
        occlusion,
        strict=True,
    ):
        areas = masks.frame_areas if listed is None else listed
        gts[key].append(
            _Instance(masks=masks, mean_area=_mean_nonzero(areas), is_crowd=crowd, occlusion=occluded)
        )
    dts: dict[tuple[int, int], list[_Instance]] = defaultdict(list)
    for key, masks, entry in zip(predictions.keys, dt_masks, results, strict=True):
        score = float(entry["score"])
        dts[key].append(
            _Instance(masks=masks, mean_area=_mean_nonzero(masks.frame_areas), score=score)
        )
    return category_ids, gts, dts, ground_truth.occlusion is not None


def evaluate_ytvis(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    gt_source: str | None = None,
    results_source: str | None = None,
) -> YTVISMetrics:
    """Score a submission against YouTube-VIS/OVIS-format ground truth, every mask validated
    before pycocotools sees it. ``gt_source`` / ``results_source`` prefix the messages of the
    :class:`YTVISFormatError` raised for malformed or mismatched ground truth / results.
    With ``occlusion`` in the ground truth, ``occlusion_stats`` holds the OVIS split."""
    category_ids, gts, dts, with_occlusion = _instances(gt, results, gt_source, results_source)
    grouped = _match_all(gts, dts, category_ids, with_occlusion)
    num_buckets = len(AREA_RANGES) + (len(OCCLUSION_RANGES) if with_occlusion else 0)
    precision, recall = _accumulate(grouped, category_ids, num_buckets)
    stats: dict[str, float] = {}
    for name, is_ap, iou_thr, area, max_det in STATS:
        a, m = list(AREA_RANGES).index(area), MAX_DETS.index(max_det)
        values = precision[:, :, :, a, m] if is_ap else recall[:, :, a, m]
        if iou_thr is not None:
            values = values[np.isclose(IOU_THRESHOLDS, iou_thr)]
        stats[name] = _summary(values)
    per_category = {cat: _summary(precision[:, :, k, 0, -1]) for k, cat in enumerate(category_ids)}
    occlusion_stats: dict[str, float] = {}
    if with_occlusion:
        for name, is_ap, bucket in OCCLUSION_STATS:
            b, m = len(AREA_RANGES) + list(OCCLUSION_RANGES).index(bucket), MAX_DETS.index(100)
            occlusion_stats[name] = _summary(precision[:, :, :, b, m] if is_ap else recall[:, :, b, m])
    return YTVISMetrics(stats=stats, per_category_ap=per_category, occlusion_stats=occlusion_stats)
