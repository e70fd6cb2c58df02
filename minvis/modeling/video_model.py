"""``VideoMaskFormer_frame``: the MinVIS meta-architecture.

Training: every sampled frame of every video is an independent image for the
Mask2Former losses (the paper trains the image model only). Optionally
(``MODEL.MINVIS.SUPERVISED_MATCHING``) a hinge loss ties each instance's queries across
the two sampled frames of a video (:mod:`minvis.modeling.supervised_matching`).

Inference: :meth:`VideoMaskFormer_frame.frame_outputs` runs the image model on the
frames, ``frames_per_forward`` at a time, and the tracker (:mod:`minvis.tracking`)
consumes them as they come: :meth:`~VideoMaskFormer_frame.track_video` gives the paper's
video-level result, :meth:`~VideoMaskFormer_frame.track_stream` each frame's tracks at
once. ``forward`` returns the video result, which reads as the official eval-mode dict.
"""

import contextlib
import itertools
from collections.abc import Iterable, Iterator

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from mask2former.criterion import SetCriterion
from mask2former.matcher import HungarianMatcher
from mask2former.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn
from minvis import tracking
from minvis.tracking import CostFn, FrameInstances, FrameOutputs, Size, VideoResult

from .precision import (
    AUTOCAST_DTYPES,
    float32,
    float32_islands,
    resolve_precision,
    resolve_training_precision,
    to_float32,
)
from .supervised_matching import supervised_matching_loss


class VideoInputError(ValueError):
    """An eval-mode input video the model cannot run on."""


@META_ARCH_REGISTRY.register()
class VideoMaskFormer_frame(nn.Module):  # official name
    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        size_divisibility: int,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        frames_per_forward: int = 1,
        top_k: int = 10,
        spill_masks_to_disk: bool = True,
        tracking_cost: CostFn = tracking.query_cost,
        supervised_matching_weight: float = 0.0,
        supervised_matching_margin: float = 0.0,
        precision: str = "fp32",
        training_precision: str = "fp32",
    ):
        """
        Args:
            backbone, sem_seg_head: the image model (e.g. ResNet + ``MaskFormerHead``).
            criterion: Mask2Former set criterion; its ``weight_dict`` weights the losses.
            size_divisibility: pad inputs to a multiple of this (< 0: the backbone's).
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            frames_per_forward: frames the image model runs on at once in inference
                (same results for any value; one is the fastest and keeps memory flat).
            top_k: video-level instances returned per video.
            spill_masks_to_disk: keep the per-frame mask logits that the video-level
                result needs in a temporary file (see :func:`minvis.tracking.track_video`).
            tracking_cost: ``[tracks, queries]`` matching cost (default: the paper's).
            supervised_matching_weight: weight of the supervised matching loss
                ``loss_match`` (0: not computed, the paper's training).
            supervised_matching_margin: its margin.
            precision: inference precision, ``fp32``, ``fp16`` or ``bf16``
                (:mod:`minvis.modeling.precision`).
            training_precision: the same for training steps (``bf16``: CPU AMP training).
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.size_divisibility = backbone.size_divisibility if size_divisibility < 0 else size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        if frames_per_forward < 1:
            raise ValueError(f"MODEL.MASK_FORMER.TEST.WINDOW_SIZE must be >= 1, got {frames_per_forward}")
        self.frames_per_forward = frames_per_forward
        self.top_k = top_k
        self.spill_masks_to_disk = spill_masks_to_disk
        self.tracking_cost = tracking_cost
        self.supervised_matching_weight = supervised_matching_weight
        self.supervised_matching_margin = supervised_matching_margin
        self.inference_dtype = AUTOCAST_DTYPES[precision]
        self.training_dtype = AUTOCAST_DTYPES[training_precision]

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        head = build_sem_seg_head(cfg, backbone.output_shape())
        criterion = build_criterion(cfg, head.num_classes)
        return {"backbone": backbone, "sem_seg_head": head, "criterion": criterion} | video_settings(cfg)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: list[dict]) -> dict | VideoResult:
        """
        Training: ``batched_inputs`` are video dicts with ``image`` (list of ``[3, H, W]``
        frames) and ``instances`` (one detectron2 ``Instances`` per frame with
        ``gt_classes``, ``gt_ids``, ``gt_masks``); returns the weighted losses.

        Eval: one video ``[{"image": [frames], "height": h, "width": w}]``; returns its
        :meth:`track_video` result, which reads as the official dict ``{"image_size",
        "pred_scores", "pred_labels", "pred_masks"}``.
        """
        if self.training:
            return self.losses(batched_inputs)
        if len(batched_inputs) != 1:
            raise VideoInputError(f"inference takes one video per call, got {len(batched_inputs)}")
        return self.track_video(batched_inputs[0])

    def float32_islands(self, dtype: torch.dtype) -> list[nn.Module]:
        """The parts that run in float32 when the network runs under autocast to ``dtype``.

        * float16 (the official AMP, training and evaluation): the pixel decoder, as the
          official code runs it (float16's range is narrow).
        * bfloat16 (CPU training, or the precision setting): the projections that give
          deformable attention its sampling offsets and weights (a bfloat16 location would
          be off by up to a quarter pixel on an 80-pixel-wide level). The losses take
          float32 outputs, and so does tracking (:meth:`frame_outputs`).
        """
        head = self.sem_seg_head
        if dtype == torch.float16:
            return [head.pixel_decoder]
        attention = [m for m in head.pixel_decoder.modules() if isinstance(m, MSDeformAttn)]
        return [p for m in attention for p in (m.sampling_offsets, m.attention_weights)]

    def _network(self, images: Tensor) -> dict:
        """Backbone + head on ``[N, 3, H, W]`` images, in the precision of the one setting:
        autocast to ``training_dtype`` or ``inference_dtype`` if set, else the caller's
        (the CUDA AMP trainer's float16); either way the :meth:`float32_islands` stay float32."""
        device = images.device.type
        dtype = self.training_dtype if self.training else self.inference_dtype
        with torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            autocast = torch.is_autocast_enabled(device)
            islands = self.float32_islands(torch.get_autocast_dtype(device)) if autocast else []
            with float32_islands(islands):
                return self.sem_seg_head(self.backbone(images))

    # ----------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, Tensor]:
        frames = [frame.to(self.device) for video in batched_inputs for frame in video["image"]]
        images = self._to_image_list(frames)
        outputs = to_float32(self._network(images.tensor))  # the losses are computed in float32
        embds = outputs.pop("pred_embds")  # [F, Q, C]
        targets = self._frame_targets(batched_inputs, images.tensor.shape[-2:])
        losses, indices = self.criterion.forward_with_indices(outputs, targets)
        weights = self.criterion.weight_dict
        weighted = {name: value * weights[name] for name, value in losses.items() if name in weights}
        if self.supervised_matching_weight > 0:
            loss = supervised_matching_loss(
                embds,
                [t["ids"] for t in targets],
                indices,
                [len(video["image"]) for video in batched_inputs],
                self.supervised_matching_margin,
            )
            weighted["loss_match"] = self.supervised_matching_weight * loss
        return weighted

    def _frame_targets(self, batched_inputs: list[dict], padded_size: torch.Size) -> list[dict]:
        """One target dict per frame: the instances present in it (``gt_ids != -1``):
        ``labels [N]``, ``masks [N, H_pad, W_pad]`` and their track ``ids [N]``."""
        targets = []
        for video in batched_inputs:
            for instances in video["instances"]:
                instances = instances.to(self.device)
                present = instances.gt_ids != -1
                masks = instances.gt_masks.tensor[present]  # [N, h, w]
                padded = masks.new_zeros((masks.shape[0], *padded_size))
                padded[:, : masks.shape[1], : masks.shape[2]] = masks
                labels, ids = instances.gt_classes[present], instances.gt_ids[present]
                targets.append({"labels": labels, "masks": padded, "ids": ids})
        return targets

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def track_video(self, video: dict) -> VideoResult:
        """The paper's result for ``video``: its ``top_k`` instances, masks computed frame
        by frame when the result's user asks for them.

        ``video["image"]`` is a list of ``[3, H, W]`` frames (the official input) or any
        iterable of them, consumed once, in order, so a generator that decodes frames on
        demand keeps only a window of them in memory. Masks are reported at
        ``(video["height"], video["width"])`` (default: the input size).
        """
        frames = _checked_frames(video.get("image"))
        first = next(frames)
        output_size = (video.get("height", first.shape[-2]), video.get("width", first.shape[-1]))
        # Autocast keeps its low-precision copies of the weights while any autocast
        # context is open: this one spans the video, so they are made once per video.
        with float32(self.device.type):
            return tracking.track_video(
                self.frame_outputs(itertools.chain([first], frames)),
                output_size,
                top_k=self.top_k,
                cost=self.tracking_cost,
                spill_to_disk=self.spill_masks_to_disk,
            )

    @torch.no_grad()
    def track_stream(
        self, frames: Iterable[Tensor], output_size: Size | None = None, score_threshold: float = 0.5
    ) -> Iterator[FrameInstances]:
        """Each frame's tracks with running scores as soon as the frame is processed
        (:func:`minvis.tracking.track_stream`), at ``output_size`` (default: input size)."""
        frames = _checked_frames(frames)
        first = next(frames)
        yield from tracking.track_stream(
            self.frame_outputs(itertools.chain([first], frames)),
            output_size or tuple(first.shape[-2:]),
            score_threshold=score_threshold,
            cost=self.tracking_cost,
        )

    def frame_outputs(self, frames: Iterable[Tensor]) -> Iterator[FrameOutputs]:
        """The image model's float32 outputs of each ``[3, H, W]`` frame (one size), run
        ``frames_per_forward`` at a time; frames are read lazily, a forward's worth at a time."""
        frames = iter(frames)
        while window := list(itertools.islice(frames, self.frames_per_forward)):
            images = self._to_image_list([f.to(self.device) for f in window])
            outputs = self._network(images.tensor)
            sizes = tuple(images.image_sizes[0]), tuple(images.tensor.shape[-2:])
            fields = (outputs[key].float() for key in ("pred_logits", "pred_masks", "pred_embds"))
            for logits, masks, embds in zip(*fields, strict=True):  # [Q, K+1], [Q, h, w], [Q, C]
                yield FrameOutputs(logits, masks, embds, *sizes)

    def _to_image_list(self, frames: list[Tensor]) -> ImageList:
        normalized = [(f - self.pixel_mean) / self.pixel_std for f in frames]
        images = ImageList.from_tensors(normalized, self.size_divisibility)
        # [N, 3, H, W], channels-last like the convolution weights (minvis.modeling.speedups).
        return ImageList(images.tensor.contiguous(memory_format=torch.channels_last), images.image_sizes)


def video_settings(cfg: CfgNode) -> dict:
    """The arguments of :class:`VideoMaskFormer_frame` besides its image model and criterion
    (the exported model's runtime, :mod:`minvis.modeling.exported`, reuses them)."""
    mf, supervised = cfg.MODEL.MASK_FORMER, cfg.MODEL.MINVIS.SUPERVISED_MATCHING
    return {
        "size_divisibility": mf.SIZE_DIVISIBILITY,
        "pixel_mean": cfg.MODEL.PIXEL_MEAN,
        "pixel_std": cfg.MODEL.PIXEL_STD,
        # WINDOW_INFERENCE False: one frame per forward (official: the whole video at
        # once, which gives the same results with a memory peak that grows with T).
        "frames_per_forward": mf.TEST.WINDOW_SIZE if mf.TEST.WINDOW_INFERENCE else 1,
        "top_k": mf.TEST.TOP_K,
        "spill_masks_to_disk": mf.TEST.SPILL_MASKS_TO_DISK,
        "tracking_cost": tracking.matching_cost(
            cfg.MODEL.MINVIS.MATCHING,
            class_weight=mf.CLASS_WEIGHT,
            mask_weight=mf.MASK_WEIGHT,
            dice_weight=mf.DICE_WEIGHT,
        ),
        "supervised_matching_weight": supervised.WEIGHT if supervised.ENABLED else 0.0,
        "supervised_matching_margin": supervised.MARGIN,
        "precision": resolve_precision(cfg),
        "training_precision": resolve_training_precision(cfg),
    }


def _checked_frames(frames: Iterable[Tensor] | None) -> Iterator[Tensor]:
    """Yield the frames, checking each as it comes: ``[3, H, W]``, uint8 or float, one size."""
    first = None
    for index, frame in enumerate(frames or ()):
        if not isinstance(frame, Tensor) or frame.dim() != 3 or frame.shape[0] != 3:
            shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise VideoInputError(f"frame {index}: expected a [3, H, W] tensor, got {shape}")
        if not (frame.dtype == torch.uint8 or frame.is_floating_point()):
            raise VideoInputError(f"frame {index}: dtype {frame.dtype} is neither uint8 nor float")
        if first is None:
            first = frame
        elif frame.shape != first.shape:
            raise VideoInputError(
                f"frame {index} has size {tuple(frame.shape[-2:])} but frame 0 has "
                f"{tuple(first.shape[-2:])}: all frames of a video must have one size"
            )
        yield frame
    if first is None:
        raise VideoInputError("the video has no frames (input 'image' is empty)")


def build_criterion(cfg: CfgNode, num_classes: int) -> SetCriterion:
    """The Mask2Former set criterion with the configured loss weights."""
    mf = cfg.MODEL.MASK_FORMER
    weight_dict = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
    if mf.DEEP_SUPERVISION:
        # One auxiliary set per decoder layer but the last, plus the learnable queries.
        weight_dict.update(
            {f"{name}_{i}": w for i in range(mf.DEC_LAYERS - 1) for name, w in list(weight_dict.items())}
        )
    matcher = HungarianMatcher(
        cost_class=mf.CLASS_WEIGHT,
        cost_mask=mf.MASK_WEIGHT,
        cost_dice=mf.DICE_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
    )
    return SetCriterion(
        num_classes,
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=mf.NO_OBJECT_WEIGHT,
        losses=["labels", "masks"],
        num_points=mf.TRAIN_NUM_POINTS,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
    )
