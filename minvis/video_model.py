"""``VideoMaskFormer_frame``: the MinVIS meta-architecture.

Training: every sampled frame of every video is an independent image for the
Mask2Former losses (the paper trains the image model only).

Inference: the image model runs on the frames of one video, a window of frames at a
time; each frame's raw outputs leave the accelerator at once and are tracked by query
matching (:mod:`minvis.inference`), so accelerator memory does not grow with the video.
"""

from collections.abc import Iterator

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from mask2former.criterion import SetCriterion
from mask2former.matcher import HungarianMatcher

from .evaluation.submission import encode_masks
from .inference import VideoResultAccumulator


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
        output_rle: bool = False,
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
            output_rle: return ``pred_segmentations`` (per instance, a compressed RLE dict
                or None per frame) instead of dense ``pred_masks``; memory then stays
                bounded however long the video (used by the evaluator).
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
        self.output_rle = output_rle

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
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
            "output_rle": cfg.MODEL.MASK_FORMER.TEST.OUTPUT_RLE,
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
        ``{"image_size", "pred_scores", "pred_labels", "pred_masks"}`` (official format),
        with ``pred_segmentations`` instead of ``pred_masks`` when ``output_rle``.
        """
        if self.training:
            return self.losses(batched_inputs)
        if len(batched_inputs) != 1:
            raise VideoInputError(f"inference takes one video per call, got {len(batched_inputs)}")
        tracked = self.track_video(batched_inputs[0])
        if self.output_rle:
            return tracked.finalize_encoded(lambda frame_masks: encode_masks(frame_masks.numpy()))
        return tracked.finalize()

    # ----------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, Tensor]:
        frames = [frame.to(self.device) for video in batched_inputs for frame in video["image"]]
        images = self._to_image_list(frames)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
        outputs.pop("pred_embds")
        targets = self._frame_targets(batched_inputs, images.tensor.shape[-2:])
        losses = self.criterion(outputs, targets)
        weights = self.criterion.weight_dict
        return {name: value * weights[name] for name, value in losses.items() if name in weights}

    def _frame_targets(self, batched_inputs: list[dict], padded_size: torch.Size) -> list[dict]:
        """One target dict per frame: the instances present in it (``gt_ids != -1``)."""
        targets = []
        for video in batched_inputs:
            for instances in video["instances"]:
                instances = instances.to(self.device)
                present = instances.gt_ids != -1
                masks = instances.gt_masks.tensor[present]  # [N, h, w]
                padded = masks.new_zeros((masks.shape[0], *padded_size))
                padded[:, : masks.shape[1], : masks.shape[2]] = masks
                targets.append({"labels": instances.gt_classes[present], "masks": padded})
        return targets

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def track_video(self, video: dict) -> VideoResultAccumulator:
        """Run the image model on all frames of ``video`` and track its queries."""
        frames = self._checked_frames(video)
        image_size = tuple(frames[0].shape[-2:])
        accumulator = None
        for outputs, padded_size in self.frame_outputs(frames):
            if accumulator is None:
                accumulator = VideoResultAccumulator(
                    image_size=image_size,
                    padded_size=padded_size,
                    output_size=(video.get("height", image_size[0]), video.get("width", image_size[1])),
                    top_k=self.top_k,
                )
            frames_raw = zip(outputs["pred_logits"], outputs["pred_masks"], outputs["pred_embds"])
            for logits, masks, embds in frames_raw:
                accumulator.add_frame(logits, masks, embds)
        return accumulator

    def frame_outputs(self, frames: list[Tensor]) -> Iterator[tuple[dict[str, Tensor], tuple[int, int]]]:
        """Yield raw per-frame outputs window by window, and the padded input size.

        Each yielded dict holds ``pred_logits [n, Q, K+1]``, ``pred_masks [n, Q, H/4, W/4]``
        and ``pred_embds [n, Q, C]`` for the next ``n`` frames.
        """
        step = self.window_size if self.window_inference else len(frames)
        for start in range(0, len(frames), step):
            images = self._to_image_list([f.to(self.device) for f in frames[start : start + step]])
            outputs = self.sem_seg_head(self.backbone(images.tensor))
            raw = {key: outputs[key] for key in ("pred_logits", "pred_masks", "pred_embds")}
            yield raw, tuple(images.tensor.shape[-2:])

    def _to_image_list(self, frames: list[Tensor]) -> ImageList:
        normalized = [(f - self.pixel_mean) / self.pixel_std for f in frames]
        return ImageList.from_tensors(normalized, self.size_divisibility)

    @staticmethod
    def _checked_frames(video: dict) -> list[Tensor]:
        frames = video.get("image")
        if not frames:
            raise VideoInputError("the video has no frames (input 'image' is empty)")
        first = frames[0]
        for index, frame in enumerate(frames):
            if not isinstance(frame, Tensor) or frame.dim() != 3 or frame.shape[0] != 3:
                shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
                raise VideoInputError(f"frame {index}: expected a [3, H, W] tensor, got {shape}")
            if not (frame.dtype == torch.uint8 or frame.is_floating_point()):
                raise VideoInputError(f"frame {index}: dtype {frame.dtype} is neither uint8 nor float")
            if frame.shape != first.shape:
                raise VideoInputError(
                    f"frame {index} has size {tuple(frame.shape[-2:])} but frame 0 has "
                    f"{tuple(first.shape[-2:])}: all frames of a video must have one size"
                )
        return list(frames)


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
