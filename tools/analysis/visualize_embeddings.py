#!/usr/bin/env python
"""t-SNE of one video's query embeddings, coloured by ground-truth instance (paper Figure 3).

    python tools/analysis/visualize_embeddings.py --config-file CONFIG --output embeddings.png \\
        [--dataset NAME --video-index 0 | --synthetic none|occlusion|reentry|lookalike] \\
        [--frames 12] [--height 128 --width 160] [--perplexity 10] [--tsne-method barnes_hut|exact] \\
        [--seed 0] [KEY VALUE ...]

The model (``MODEL.WEIGHTS`` of the config or of the trailing overrides; random weights
when empty) runs on every frame of the video: one of a registered dataset
(``--dataset``, e.g. ``ytvis_2019_train``) or a synthetic video rendered in memory
(``--synthetic``, default; ``--frames``/``--height``/``--width`` set its size). On each
frame the queries are assigned to the ground-truth instances present there by the
training matcher (Mask2Former's Hungarian matching with class, mask and dice costs,
seeded). The ``T x Q`` embeddings are L2-normalised (the tracker compares cosines) and
embedded in 2-D with scikit-learn's t-SNE; each instance's queries are drawn in its
colour and joined in frame order, unassigned queries in grey.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from minvis.config import build_config
from minvis.data.mapper import segmentation_to_mask
from minvis.data.preprocess import FramePreprocessor
from minvis.data.synthetic import (
    STRESS_PRESETS,
    SYNTHETIC_CATEGORIES,
    SyntheticSpec,
    render_video,
    stress_spec,
    video_rng,
)
from minvis.modeling import MinVISCheckpointer
from minvis.tracking import FrameOutputs, unit_rows

UNASSIGNED = -1
UNASSIGNED_COLOR = "#b0b0b0"
FIGURE_SIZE = (7, 6)  # inches
DPI = 150
POINT_SIZE, INSTANCE_POINT_SIZE = 12, 36  # marker areas, points^2


@dataclass
class AnnotatedVideo:
    """RGB ``uint8 [H, W, 3]`` frames and the ground truth: ``masks [G, T, H, W]`` bool,
    ``labels [G]`` contiguous class ids."""

    frames: list[np.ndarray]
    masks: np.ndarray
    labels: list[int]


def synthetic_video(preset: str, spec: SyntheticSpec, seed: int) -> AnnotatedVideo:
    video = render_video(video_rng(seed, "visualize", 0), stress_spec(preset, spec))
    ids = [c["id"] for c in SYNTHETIC_CATEGORIES]
    return AnnotatedVideo(video.frames, video.visible_masks, [ids.index(c) for c in video.category_ids])


def dataset_video(name: str, index: int) -> AnnotatedVideo:
    video = DatasetCatalog.get(name)[index]
    size = (video["height"], video["width"])
    frames = [utils.read_image(f, format="RGB") for f in video["file_names"]]
    tracks = sorted({(a["id"], a["category_id"]) for frame in video["annotations"] for a in frame})
    rows = {track_id: row for row, (track_id, _) in enumerate(tracks)}
    masks = np.zeros((len(tracks), len(frames), *size), dtype=bool)
    no_transform = T.TransformList([])
    for t, frame_annotations in enumerate(video["annotations"]):
        for a in frame_annotations:
            masks[rows[a["id"]], t] = segmentation_to_mask(a["segmentation"], no_transform, size, size)
    return AnnotatedVideo(frames, masks, [label for _, label in tracks])


def frame_assignment(
    matcher: torch.nn.Module,
    frame: FrameOutputs,
    gt_masks: np.ndarray,
    gt_labels: list[int],
) -> np.ndarray:
    """``[Q]`` ground-truth instance (or UNASSIGNED) of each query of one frame.

    ``frame`` holds the frame's outputs; ``gt_masks [G, H, W]`` its ground truth at the
    original size, resized to the model input and padded like it before matching.
    """
    image_size, padded_size = frame.image_size, frame.padded_size
    assignment = np.full(len(frame.logits), UNASSIGNED)
    present = np.flatnonzero(gt_masks.reshape(len(gt_masks), -1).any(axis=1))  # [N]
    if len(present) == 0:
        return assignment
    target = torch.from_numpy(gt_masks[present]).float()  # [N, H, W]
    target = F.interpolate(target[None], size=image_size, mode="nearest")[0]  # [N, h_img, w_img]
    target = F.pad(target, (0, padded_size[1] - image_size[1], 0, padded_size[0] - image_size[0]))
    labels = torch.tensor([gt_labels[g] for g in present], dtype=torch.long)
    outputs = {"pred_logits": frame.logits[None], "pred_masks": frame.masks[None]}  # the matcher's input
    ((queries, targets),) = matcher(outputs, [{"labels": labels, "masks": target}])
    assignment[queries.numpy()] = present[targets.numpy()]
    return assignment


@torch.no_grad()
def query_assignments(
    model: torch.nn.Module, cfg: CfgNode, video: AnnotatedVideo, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``([T, Q, C] unit embeddings, [T, Q] ground-truth instance of each query or UNASSIGNED)``."""
    preprocess = FramePreprocessor(cfg)
    images = [preprocess(frame) for frame in video.frames]  # [3, h, w] each
    embeddings, assignments = [], []
    torch.manual_seed(seed)  # the matcher samples random points
    for frame in model.frame_outputs(images):
        gt_masks = video.masks[:, len(assignments)]  # [G, H, W]
        assignments.append(frame_assignment(model.criterion.matcher, frame, gt_masks, video.labels))
        embeddings.append(unit_rows(frame.embds).cpu().numpy())
    return np.stack(embeddings), np.stack(assignments)


def plot(points: np.ndarray, assignments: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Scatter ``[T, Q, 2]`` points; instance ``g``'s queries in colour ``g``, joined over time."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    flat_points, flat_assign = points.reshape(-1, 2), assignments.reshape(-1)
    free = flat_assign == UNASSIGNED
    axes.scatter(*flat_points[free].T, s=POINT_SIZE, c=UNASSIGNED_COLOR, label="unassigned queries")
    colors = matplotlib.colormaps["tab10"]
    for g, name in enumerate(names):
        mask = assignments == g  # [T, Q]: at most one query per frame
        if not mask.any():
            continue
        trajectory = points[mask]  # [frames with g, 2], in frame order
        color = colors(g % colors.N)
        axes.plot(*trajectory.T, color=color, linewidth=0.8, alpha=0.6)
        axes.scatter(*trajectory.T, s=INSTANCE_POINT_SIZE, color=color, label=name, edgecolors="black")
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.print_png(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output", type=Path, required=True, help="PNG file to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="a registered YouTube-VIS-format dataset")
    source.add_argument("--synthetic", choices=["none", *STRESS_PRESETS], default="none")
    parser.add_argument("--video-index", type=int, default=0, help="video of --dataset")
    parser.add_argument("--frames", type=int, default=12, help="synthetic video length")
    parser.add_argument("--height", type=int, default=128, help="synthetic video height")
    parser.add_argument("--width", type=int, default=160, help="synthetic video width")
    parser.add_argument("--perplexity", type=float, default=10.0, help="t-SNE perplexity (capped at T*Q - 1)")
    parser.add_argument(
        "--tsne-method", choices=["barnes_hut", "exact"], default="barnes_hut", help="exact: O(N^2), small N"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)

    cfg = build_config(args.config_file, args.opts)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        MinVISCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
    if args.dataset:
        video = dataset_video(args.dataset, args.video_index)
        classes = MetadataCatalog.get(args.dataset).thing_classes
        title = f"{args.dataset} video {args.video_index}"
    else:
        spec = SyntheticSpec(num_frames=args.frames, height=args.height, width=args.width)
        video = synthetic_video(args.synthetic, spec, args.seed)
        classes = [c["name"] for c in SYNTHETIC_CATEGORIES]
        title = f"synthetic ({args.synthetic}) video"
    embeddings, assignments = query_assignments(model, cfg, video, args.seed)
    flat = embeddings.reshape(-1, embeddings.shape[-1])  # [T * Q, C]
    perplexity = min(args.perplexity, len(flat) - 1)
    tsne = TSNE(perplexity=perplexity, init="pca", method=args.tsne_method, random_state=args.seed)
    points = tsne.fit_transform(flat)  # [T * Q, 2]
    names = [f"instance {g} ({classes[label]})" for g, label in enumerate(video.labels)]
    points = points.reshape(*embeddings.shape[:2], 2)  # [T, Q, 2]
    plot(points, assignments, names, args.output, f"Query embeddings: {title}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
