"""The exported image model (``tools/export/export_model.py``) as the network of the video model.

``MODEL.WEIGHTS path/model.onnx`` selects it: :func:`build_exported_model` gives a
:class:`~minvis.modeling.VideoMaskFormer_frame` whose backbone and head are one ONNX Runtime
session on the CPU (:class:`OnnxImageModel`), so preprocessing, ``frame_outputs``, tracking and
every writer are the PyTorch path's. The session computes in float32 whatever the precision key.
"""

import json
import logging
import os

import numpy as np
import torch
from detectron2.config import CfgNode
from torch import Tensor, nn

from .checkpoint import CheckpointLoadError
from .precision import resolve_precision
from .video_model import VideoMaskFormer_frame, video_settings

logger = logging.getLogger(__name__)

EXPORTED_SUFFIX = ".onnx"
INPUT_NAME = "images"  # [1, 3, H, W] float32, normalised and zero-padded to the size divisibility
OUTPUT_NAMES = ("pred_logits", "pred_masks", "pred_embds")  # [1, Q, K+1], [1, Q, H/4, W/4], [1, Q, C]
PREPROCESSING_KEY = "minvis.preprocessing"  # ONNX metadata: JSON of what the input needs
EXPORT_HINT = "export the model with tools/export/export_model.py"


def is_exported(weights: str) -> bool:
    """Whether ``MODEL.WEIGHTS`` names an exported model rather than a checkpoint."""
    return weights.lower().endswith(EXPORTED_SUFFIX)


def load_session(path: str, cfg: CfgNode):
    """An ONNX Runtime CPU session of ``path`` (as many threads as torch uses), checked against
    ``cfg``: input, outputs and their class, query and embedding sizes. Raises FileNotFoundError
    or :class:`CheckpointLoadError` naming the file."""
    import onnxruntime

    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported model {path} (MODEL.WEIGHTS) does not exist")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's errors derive from Exception only
        reason = str(error).splitlines()[0]
        raise CheckpointLoadError(f"{path}: not a readable ONNX model ({reason})") from None
    _check_signature(session, path, cfg)
    return session


def _check_signature(session, path: str, cfg: CfgNode) -> None:
    inputs, outputs = [i.name for i in session.get_inputs()], {o.name: o.shape for o in session.get_outputs()}
    if inputs != [INPUT_NAME] or set(outputs) != set(OUTPUT_NAMES):
        raise CheckpointLoadError(
            f"{path}: not a MinVIS image model (inputs {inputs}, outputs {sorted(outputs)}); {EXPORT_HINT}"
        )
    mf = cfg.MODEL.MASK_FORMER
    expected = {  # what the config says -> (output, dimension)
        ("MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1", cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1): ("pred_logits", 2),
        ("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", mf.NUM_OBJECT_QUERIES): ("pred_logits", 1),
        ("MODEL.MASK_FORMER.HIDDEN_DIM", mf.HIDDEN_DIM): ("pred_embds", 2),
    }
    for (key, value), (name, dim) in expected.items():
        if outputs[name][dim] != value:
            raise CheckpointLoadError(
                f"{path}: the exported model's {name} has {outputs[name][dim]} where the config's {key} "
                f"is {value}; use the config.yaml written beside the model"
            )


def recorded_preprocessing(session, path: str) -> dict:
    """The preprocessing the exporter recorded in the model (``size_divisibility``, ...)."""
    try:
        recorded = json.loads(session.get_modelmeta().custom_metadata_map[PREPROCESSING_KEY])
        int(recorded["size_divisibility"])
    except (KeyError, ValueError, TypeError):
        raise CheckpointLoadError(f"{path}: no valid {PREPROCESSING_KEY} metadata; {EXPORT_HINT}") from None
    return recorded


class OnnxImageModel(nn.Module):
    """Stands in for backbone + head: images ``[N, 3, H, W]`` -> the float32 outputs of
    :data:`OUTPUT_NAMES`, from one session run per image (the file takes one image)."""

    def __init__(self, session, num_classes: int) -> None:
        super().__init__()
        self.session = session
        self.num_classes = num_classes

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        inputs = [{INPUT_NAME: image[None].float().contiguous().numpy()} for image in images]  # [1, 3, H, W]
        per_output = zip(*(self.session.run(OUTPUT_NAMES, feed) for feed in inputs))
        return {name: torch.from_numpy(np.concatenate(runs)) for name, runs in zip(OUTPUT_NAMES, per_output)}


def build_exported_model(cfg: CfgNode) -> VideoMaskFormer_frame:
    """The video model of ``cfg`` (eval mode, CPU) with the exported image model ``MODEL.WEIGHTS``."""
    path = cfg.MODEL.WEIGHTS
    session = load_session(path, cfg)
    if resolve_precision(cfg) != "fp32":
        logger.warning(f"{path}: an exported model runs in float32, not {resolve_precision(cfg)}")
    image_model = OnnxImageModel(session, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    settings = video_settings(cfg) | {
        "size_divisibility": recorded_preprocessing(session, path)["size_divisibility"],
        "precision": "fp32",
    }
    # No backbone: the session takes the images (VideoMaskFormer_frame._network runs head(backbone(images))).
    model = VideoMaskFormer_frame(
        backbone=nn.Identity(), sem_seg_head=image_model, criterion=None, **settings
    )
    return model.eval()
