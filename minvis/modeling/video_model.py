"""``VideoMaskFormer_frame``: the MinVIS meta-architecture.

Training: every sampled frame of every video is an independent image for the
Mask2Former losses (the paper trains the image model only). Optionally
(``MODEL.MINVIS.SUPERVISED_MATCHING``) a hinge loss ties each instance's queries across
the two sampled frames of a video (:mod:`minvis.modeling.supervised_matching`).

Inference: the image model runs on the frames of one video, a window of frames at a
time (:class:`~minvis.inference.WindowOutputs`); each frame's outputs are tracked by
query matching (:mod:`minvis.tracking`) as they come, so accelerator memory does not
grow with the video. :meth:`VideoMaskFormer_frame.track_video` returns the typed
:class:`~minvis.inference.VideoResult`; ``forward`` returns it in the official dict.
"""

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from mask2former.criterion import SetCriterion
from mask2former.matcher import HungarianMatcher
from minvis.inference import VideoResult, VideoResultAccumulator, WindowOutputs
from minvis.tracking import PAPER_TRACKING, TrackingOptions, matching_cost_terms

from .folded_batchnorm import fold_frozen_batchnorm
from .supervised_matching import supervised_matching_loss

# MODEL.MASK_FORMER.TEST.PRECISION -> autocast dtype of the image model (None: float32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


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
        window_inference: bool,
        window_size: int,
        top_k: int,
        spill_masks_to_disk: bool = True,
        tracking: TrackingOptions = PAPER_TRACKING,
        supervised_matching_weight: float = 0.0,
        supervised_matching_margin: float = 0.0,
        precision: str = "fp32",
    ):
        """
        Args:
            backbone, sem_seg_head: the image model (e.g. ResNet + ``MaskFormerHead``).
            criterion: Mask2Former set criterion; its ``weight_dict`` weights the losses.
            size_divisibility: pad inputs to a multiple of this (< 0: the backbone's).
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            window_inference: at test time run the image model on ``window_size`` frames
                at a time instead of on the whole video at once.
            window_size: frames per window.
            top_k: video-level instances returned per video.
            spill_masks_to_disk: keep the per-frame mask logits that the video-level
                result needs in a temporary file instead of in memory (same results;
                memory then does not grow with the video, see ``VideoResultAccumulator``).
            tracking: how queries are matched across frames (default: the paper's).
            supervised_matching_weight: weight of the supervised matching loss
                ``loss_match`` (0: not computed, the paper's training).
            supervised_matching_margin: its margin.
            precision: inference precision, ``fp32`` or ``bf16`` (autocast).
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.size_divisibility = backbone.size_divisibility if size_divisibility < 0 else size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        if window_size < 1:
            raise ValueError(f"MODEL.MASK_FORMER.TEST.WINDOW_SIZE must be >= 1, got {window_size}")
        self.window_inference = window_inference
        self.window_size = window_size
        self.top_k = top_k
        self.spill_masks_to_disk = spill_masks_to_disk
        self.tracking = tracking
        self.supervised_matching_weight = supervised_matching_weight
        self.supervised_matching_margin = supervised_matching_margin
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"MODEL.MASK_FORMER.TEST.PRECISION must be one of {list(AUTOCAST_DTYPES)}, got {precision!r}"
            )
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        # Convolutions are faster on channels-last tensors (oneDNN on CPU, cuDNN on GPU).
        self.to(memory_format=torch.channels_last)
        fold_frozen_batchnorm(self.backbone)  # in inference; the parameters are unchanged

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        supervised = cfg.MODEL.MINVIS.SUPERVISED_MATCHING
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": build_criterion(cfg, sem_seg_head.num_classes),
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "window_inference": cfg.MODEL.MASK_FORMER.TEST.WINDOW_INFERENCE,
            "window_size": cfg.MODEL.MASK_FORMER.TEST.WINDOW_SIZE,
            "top_k": cfg.MODEL.MASK_FORMER.TEST.TOP_K,
            "spill_masks_to_disk": cfg.MODEL.MASK_FORMER.TEST.SPILL_MASKS_TO_DISK,
            "tracking": tracking_options(cfg),
            "supervised_matching_weight": supervised.WEIGHT if supervised.ENABLED else 0.0,
            "supervised_matching_margin": supervised.MARGIN,
            "precision": cfg.MODEL.MASK_FORMER.TEST.PRECISION,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: list[dict]) -> dict:
        """
        Training: ``batched_inputs`` are video dicts with ``image`` (list of ``[3, H, W]``
        frames) and ``instances`` (one detectron2 ``Instances`` per frame with
        ``gt_classes``, ``gt_ids``, ``gt_masks``); returns the weighted losses.

        Eval: one video ``[{"image": [frames], "height": h, "width": w}]``; returns
        ``{"image_size", "pred_scores", "pred_labels", "pred_masks"}`` (official format:
        dense masks; :meth:`track_video` gives the result with masks computed per frame).
        """
        if self.training:
            return self.losses(batched_inputs)
        if len(batched_inputs) != 1:
            raise VideoInputError(f"inference takes one video per call, got {len(batched_inputs)}")
        return self.track_video(batched_inputs[0]).to_dict()

    # ----------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, Tensor]:
        frames = [frame.to(self.device) for video in batched_inputs for frame in video["image"]]
        images = self._to_image_list(frames)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
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
        """Run the image model on all frames of ``video``, track its queries, and return
        the video-level result (the ``top_k`` instances; masks computed frame by frame
        when the result's user asks for them).

        ``video["image"]`` is a list of ``[3, H, W]`` frames (the official input) or any
        iterable of them; it is consumed once, in order, window by window, so a generator
        that decodes frames on demand keeps only a window of them in memory. Masks are
        reported at ``(video["height"], video["width"])`` (default: the input size).
        """
        frames = _checked_frames(video.get("image"))
        first = next(frames)
        output_size = (video.get("height", first.shape[-2]), video.get("width", first.shape[-1]))
        accumulator = None
        # One autocast context per video (none in fp32): the weights are cast to low
        # precision once, not once per window.
        with self._autocast():
            for window in self.frame_outputs(itertools.chain([first], frames)):
                if accumulator is None:
                    accumulator = VideoResultAccumulator(
                        window.geometry(output_size),
                        top_k=self.top_k,
                        spill_to_disk=self.spill_masks_to_disk,
                        tracking=self.tracking,
                    )
                # The image model may have run under autocast (bf16 here, float16 in CUDA
                # evaluation): tracking and video-level scores run on float32 outputs.
                with torch.autocast(self.device.type, enabled=False):
                    for frame in window.frames():
                        accumulator.add_frame(frame.float())
        return accumulator.finalize()

    def frame_outputs(self, frames: Iterable[Tensor]) -> Iterator[WindowOutputs]:
        """Yield the image model's outputs window by window.

        ``frames`` (``[3, H, W]`` each, one size) are consumed lazily, one window at a time
        (one frame at a time without window inference: frames are independent images, and
        one-frame forwards are the fastest and keep memory flat). Each window holds
        ``logits [n, Q, K+1]``, ``masks [n, Q, H_pad/4, W_pad/4]`` and ``embds [n, Q, C]``
        of the next ``n`` frames.
        """
        frames = iter(frames)
        size = self.window_size if self.window_inference else 1
        while window := list(itertools.islice(frames, size)):
            yield self._window_outputs(window)

    def _window_outputs(self, frames: list[Tensor]) -> WindowOutputs:
        """Outputs of a batch of frames of one size.

        The full head outputs and the normalised inputs are dropped on return, so they do
        not stay alive while the caller computes the next window.
        """
        images = self._to_image_list([f.to(self.device) for f in frames])
        with self._autocast():
            outputs = self.sem_seg_head(self.backbone(images.tensor))
        return WindowOutputs(
            logits=outputs["pred_logits"],
            masks=outputs["pred_masks"],
            embds=outputs["pred_embds"],
            image_size=tuple(images.image_sizes[0]),
            padded_size=tuple(images.tensor.shape[-2:]),
        )

    def _autocast(self) -> AbstractContextManager:
        """Autocast to MODEL.MASK_FORMER.TEST.PRECISION; for fp32 no context at all, so that
        an outer autocast (the evaluator's float16 on CUDA) stays in effect."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _to_image_list(self, frames: list[Tensor]) -> ImageList:
        normalized = [(f - self.pixel_mean) / self.pixel_std for f in frames]
        images = ImageList.from_tensors(normalized, self.size_divisibility)
        # [N, 3, H, W], channels-last like the convolution weights.
        return ImageList(images.tensor.contiguous(memory_format=torch.channels_last), images.image_sizes)


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


def tracking_options(cfg: CfgNode) -> TrackingOptions:
    """The tracker settings of ``MODEL.MINVIS`` (the paper's by default)."""
    minvis, mask_former = cfg.MODEL.MINVIS, cfg.MODEL.MASK_FORMER
    terms = matching_cost_terms(
        minvis.MATCHING,
        class_weight=mask_former.CLASS_WEIGHT,
        mask_weight=mask_former.MASK_WEIGHT,
        dice_weight=mask_former.DICE_WEIGHT,
    )
    return TrackingOptions(terms, minvis.TRACK_MEMORY_MOMENTUM, minvis.MIN_MATCH_SIMILARITY)
