"""MinVIS inference (paper section 3.3): track an image model's queries through a video.

Every frame goes through the image model on its own, so query ``i`` of frame ``t`` and
query ``i`` of frame ``t + 1`` need not describe the same object. Per frame:

1. **cost**: ``1 - cos`` between the previous frame's aligned query embeddings (the
   tracks) and this frame's (:func:`query_cost`);
2. **Hungarian assignment** of this frame's queries to the tracks: ``perm``, the query
   continuing each track;
3. **alignment**: this frame's outputs in track order (``x[perm]``) are what the next
   frame is matched against, so slot ``i`` is track ``i`` on every frame; births and
   deaths need no heuristics, they are tracks whose masks become non-empty or empty;
4. **scores**: ``softmax`` of the mean over frames of each track's aligned class logits.

:func:`track_video` adds the paper's video-level output (5. the ``top_k`` best (track,
class) pairs of the whole video, their masks resized to the output size and thresholded
at 0); :func:`track_stream` reports every frame's tracks at once with running scores
(4. over the frames so far). Table 4's mask-overlap costs plug in as ``cost``
(:func:`matching_cost`). Pure torch and scipy.
"""

import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

Size = tuple[int, int]
MATCHING_MODES = ("query", "heuristic", "heuristic+query")


@dataclass(frozen=True)
class FrameOutputs:
    """The image model's outputs for one frame.

    Attributes:
        logits: ``[Q, K+1]`` class logits (last = no object).
        masks: ``[Q, h, w]`` mask logits, at 1/4 of the padded input size.
        embds: ``[Q, C]`` query embeddings.
        image_size: ``(h_img, w_img)`` of the model input without padding.
        padded_size: ``(H_pad, W_pad)`` of the padded model input.
    """

    logits: Tensor
    masks: Tensor
    embds: Tensor
    image_size: Size
    padded_size: Size

    def __post_init__(self) -> None:
        shapes = tuple(self.logits.shape), tuple(self.masks.shape), tuple(self.embds.shape)
        if (self.logits.dim(), self.masks.dim(), self.embds.dim()) != (2, 3, 2) or len(
            {shapes[0][0], shapes[1][0], shapes[2][0]}
        ) != 1:
            raise ValueError(f"expected logits [Q, K+1], masks [Q, h, w], embds [Q, C]; got shapes {shapes}")
        if shapes[0][1] < 2:
            raise ValueError(f"logits need >= 1 class plus no-object, got {shapes[0][1]}")

    def take(self, index: Tensor) -> "FrameOutputs":
        """The outputs of queries ``index [n]``, in that order."""
        index = index.to(self.logits.device)
        logits, masks, embds = (x[index] for x in _fields(self))
        return FrameOutputs(logits, masks, embds, self.image_size, self.padded_size)


def output_masks(mask_logits: Tensor, frame: FrameOutputs, output_size: Size) -> Tensor:
    """``[n, h, w]`` mask logits of ``frame`` -> ``[n, height, width]`` bool masks: resized
    to the padded input, cropped to the image, resized to ``output_size``, logit > 0."""
    if mask_logits.shape[0] == 0:  # interpolate rejects empty inputs
        return torch.zeros((0, *output_size), dtype=torch.bool, device=mask_logits.device)
    resize = functools.partial(F.interpolate, mode="bilinear", align_corners=False)
    x = resize(mask_logits[None], size=frame.padded_size)  # [1, n, H_pad, W_pad]
    x = x[:, :, : frame.image_size[0], : frame.image_size[1]]  # [1, n, h_img, w_img]
    return resize(x, size=output_size)[0] > 0  # [n, height, width]


def unit_rows(x: Tensor) -> Tensor:
    """``[N, C]`` rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def query_cost(tracks: FrameOutputs, current: FrameOutputs) -> Tensor:
    """MinVIS's cost ``1 - cos(e_track, e_query)``, ``[tracks, queries]``."""
    # Computed as [query, track] and transposed, as the official release does: another
    # orientation rounds differently and can break ties differently.
    similarity = unit_rows(current.embds) @ unit_rows(tracks.embds).T  # [Q, Q]
    return (1 - similarity).T


def mask_overlap_cost(
    tracks: FrameOutputs, current: FrameOutputs, class_weight: float, mask_weight: float, dice_weight: float
) -> Tensor:
    """Table 4's heuristic: Mask2Former's matching cost with each track's last outputs as
    ground truth (class: argmax of its logits, no-object included; mask: logits > 0), on
    dense masks. ``[tracks, queries]``."""
    targets = (tracks.masks > 0).flatten(1).float()  # [N, P]
    logits = current.masks.flatten(1).float()  # [Q, P]
    class_cost = -current.logits.float().softmax(dim=1)[:, tracks.logits.argmax(dim=1)]  # [Q, N]
    # Per-pixel BCE is softplus(-x) against 1 and softplus(x) against 0: two products give all pairs.
    bce = (F.softplus(-logits) @ targets.T + F.softplus(logits) @ (1 - targets).T) / logits.shape[1]
    probs = logits.sigmoid()  # [Q, P]
    dice = 1 - (2 * probs @ targets.T + 1) / (probs.sum(1)[:, None] + targets.sum(1)[None] + 1)
    return (class_weight * class_cost + mask_weight * bce + dice_weight * dice).T


CostFn = Callable[[FrameOutputs, FrameOutputs], Tensor]


def matching_cost(mode: str, *, class_weight: float, mask_weight: float, dice_weight: float) -> CostFn:
    """The tracking cost of a Table 4 mode: ``query`` (MinVIS), ``heuristic`` or their sum."""
    if mode not in MATCHING_MODES:
        raise ValueError(f"unknown matching mode {mode!r}; known: {', '.join(MATCHING_MODES)}")
    if mode == "query":
        return query_cost
    overlap = functools.partial(
        mask_overlap_cost, class_weight=class_weight, mask_weight=mask_weight, dice_weight=dice_weight
    )
    if mode == "heuristic":
        return overlap
    return lambda tracks, current: overlap(tracks, current) + query_cost(tracks, current)


class Tracker:
    """Steps 1-4 of the module docstring, one frame at a time; memory independent of ``T``."""

    def __init__(self, cost: CostFn = query_cost) -> None:
        self.cost = cost
        self.tracks: FrameOutputs | None = None  # the last frame, in track order
        self.logit_sum: Tensor | None = None  # [Q, K+1] aligned logits summed over frames
        self.num_frames = 0

    def step(self, frame: FrameOutputs) -> Tensor:
        """Align one frame; returns ``perm [Q]`` (CPU): ``x[perm]`` is any per-query output
        of the frame in track order."""
        if self.tracks is None:
            perm = torch.arange(frame.logits.shape[0])  # the first frame fixes the track order
        else:
            shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in zip(_fields(self.tracks), _fields(frame))]
            if any(a != b for a, b in shapes) or frame.padded_size != self.tracks.padded_size:
                raise ValueError(
                    f"frame {self.num_frames}: shapes (logits, masks, embds) {[b for _, b in shapes]} "
                    f"differ from the earlier frames' {[a for a, _ in shapes]}; Q, K, C and the size "
                    "must stay constant"
                )
            # Steps 1 and 2 ([target, current], the orientation the official release solves).
            _, columns = linear_sum_assignment(self.cost(self.tracks, frame).detach().cpu().numpy())
            perm = torch.as_tensor(columns, dtype=torch.long)
        self.tracks = frame.take(perm)  # step 3
        self.logit_sum = self.tracks.logits if self.logit_sum is None else self.logit_sum + self.tracks.logits
        self.num_frames += 1
        return perm

    def probabilities(self) -> Tensor:
        """Step 4: ``[Q, K]`` real-class probabilities of each track's mean logits so far."""
        if self.logit_sum is None:
            raise ValueError("no frames were added to this video")
        return F.softmax(self.logit_sum / self.num_frames, dim=-1)[:, :-1]


def _fields(frame: FrameOutputs) -> tuple[Tensor, Tensor, Tensor]:
    return frame.logits, frame.masks, frame.embds


def select_top_k(probabilities: Tensor, top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Step 5: the ``top_k`` best (track, class) pairs of ``[Q, K]`` probabilities, in
    ``topk(sorted=False)`` order as the official release: ``scores, labels, tracks [k]``."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    num_classes = probabilities.shape[1]
    scores, flat_index = probabilities.flatten().topk(min(top_k, probabilities.numel()), sorted=False)
    return scores, flat_index % num_classes, flat_index // num_classes


@dataclass(frozen=True)
class FrameInstances:
    """One frame's instances (CPU tensors): ``track_ids``, ``labels``, ``scores`` ``[n]``
    and bool ``masks [n, height, width]``."""

    frame_index: int
    track_ids: Tensor
    labels: Tensor
    scores: Tensor
    masks: Tensor


@dataclass(frozen=True)
class VideoResult(Mapping):
    """One video's ``k`` instances ((track, class) pairs) with their masks on every frame.

    It reads as the official eval-mode dict (``result["pred_masks"]``: ``k`` bool
    ``[T, height, width]`` tensors, built when read); :meth:`frame_masks` gives the
    masks one frame at a time instead, so that long videos need no dense masks.
    """

    image_size: Size
    scores: list[float]
    labels: list[int]
    num_frames: int
    mask_frames: Callable[[], Iterator[Tensor]]  # a fresh iterator of [k, height, width] per frame

    def frame_masks(self) -> Iterator[Tensor]:
        return self.mask_frames()

    def frame_instances(self) -> Iterator[FrameInstances]:
        """Each frame's instances in the stream's form: instance ``i`` is track ``i``, with
        its video-level label and score, on every frame (its mask may be empty)."""
        ids, labels = torch.arange(len(self.scores)), torch.tensor(self.labels, dtype=torch.long)
        scores = torch.tensor(self.scores, dtype=torch.float32)
        for t, masks in enumerate(self.frame_masks()):
            yield FrameInstances(t, ids, labels, scores, masks)

    @functools.cached_property
    def _dense_masks(self) -> list[Tensor]:
        masks = torch.empty((len(self.scores), self.num_frames, *self.image_size), dtype=torch.bool)
        for t, frame in enumerate(self.frame_masks()):
            masks[:, t] = frame
        return list(masks.unbind(0))

    def __getitem__(self, key: str) -> Any:
        if key == "pred_masks":
            return self._dense_masks
        return {"image_size": self.image_size, "pred_scores": self.scores, "pred_labels": self.labels}[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("image_size", "pred_scores", "pred_labels", "pred_masks"))

    def __len__(self) -> int:
        return 4


def track_video(
    frames: Iterable[FrameOutputs],
    output_size: Size,
    *,
    top_k: int = 10,
    cost: CostFn = query_cost,
    spill_to_disk: bool = False,
) -> VideoResult:
    """The paper's output: steps 1-5 over a whole video.

    The top-k tracks are known only after the last frame, so each frame's ``[Q, h, w]``
    mask logits are kept until then: on the CPU, or in a temporary file with
    ``spill_to_disk`` (memory then flat however long the video). The result resizes the
    selected masks one frame at a time, on the device the frames came from.
    """
    if top_k < 0:  # fail before the video is processed, not after
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    tracker = Tracker(cost)
    stored: list[Tensor] | _DiskTensors = _DiskTensors() if spill_to_disk else []
    perms = []
    for frame in frames:
        perms.append(tracker.step(frame))
        stored.append(frame.masks.cpu())
    last = tracker.tracks
    scores, labels, tracks = select_top_k(tracker.probabilities(), top_k)

    def mask_frames() -> Iterator[Tensor]:
        for masks, perm in zip(stored, perms, strict=True):
            yield output_masks(masks[perm[tracks.cpu()]].to(last.masks.device), last, output_size).cpu()

    return VideoResult(output_size, scores.tolist(), labels.tolist(), tracker.num_frames, mask_frames)


def track_stream(
    frames: Iterable[FrameOutputs],
    output_size: Size,
    *,
    score_threshold: float = 0.5,
    cost: CostFn = query_cost,
) -> Iterator[FrameInstances]:
    """Steps 1-4 online: each frame's tracks as soon as the frame is aligned.

    A track is reported on a frame when its running score (step 4 over the frames so far:
    label = argmax over the real classes, score = that probability) is at least
    ``score_threshold`` and its mask there is non-empty. Tracks are those of
    :func:`track_video`; on the last frame the running scores are the whole video's.
    """
    tracker = Tracker(cost)
    for index, frame in enumerate(frames):
        perm = tracker.step(frame)
        scores, labels = tracker.probabilities().max(dim=1)  # [Q], [Q]
        tracks = torch.nonzero(scores >= score_threshold).flatten().cpu()  # [n]
        masks = output_masks(frame.masks[perm[tracks].to(frame.masks.device)], frame, output_size)
        visible = masks.flatten(1).any(dim=1).cpu()  # [n]
        tracks = tracks[visible]
        yield FrameInstances(index, tracks, labels[tracks].cpu(), scores[tracks].cpu(), masks[visible].cpu())


class _DiskTensors:
    """Append-only list of same-shape CPU tensors kept in an anonymous temporary file."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="minvis_")
        self._shape: torch.Size | None = None
        self._dtype: np.dtype | None = None
        self._length = 0

    def append(self, tensor: Tensor) -> None:
        data = tensor.contiguous().numpy()
        self._shape, self._dtype = tensor.shape, data.dtype
        self._file.seek(0, 2)  # reads may have moved the position
        self._file.write(data.tobytes())
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Tensor]:
        if self._dtype is None:
            return
        nbytes = int(np.prod(self._shape)) * self._dtype.itemsize
        for index in range(self._length):
            self._file.seek(index * nbytes)  # iterators may interleave
            buffer = bytearray(nbytes)
            self._file.readinto(buffer)
            yield torch.from_numpy(np.frombuffer(buffer, dtype=self._dtype).reshape(self._shape))
