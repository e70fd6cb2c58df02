#!/usr/bin/env python
"""Compare the tracker's matching modes and options on tracking stress cases.

    python tools/benchmarks/benchmark_tracking.py [--output-dir output/benchmark_tracking] \\
        [--iters 800] [--batch 8] [--train-videos 24] [--val-videos 8] [--val-frames 16] \\
        [--memory-momentum 0.5] [--min-similarity 0.5] [--switch-iou 0.5] [--switch-score 0.5] \\
        [--supervised-matching] [--seed 0] [--retrain]

1. Writes the synthetic YouTube-VIS-format stress sets of :data:`CASES`
   (:data:`minvis.data.synthetic.STRESS_PRESETS`: heavy occlusion behind a static band,
   objects leaving and re-entering, look-alike instances of one class and colour) under
   ``OUTPUT_DIR/data/<case>/{train,val}``.
2. Trains the tiny model (``--config``) once on all the train splits together; the
   checkpoint is cached in ``OUTPUT_DIR/train`` and reused while the training parameters
   are unchanged (``--retrain`` forces training). ``--supervised-matching`` also trains
   one with ``MODEL.MINVIS.SUPERVISED_MATCHING`` (paper Table 5) in
   ``OUTPUT_DIR/train_supervised_matching``, reported with query matching.
3. Runs the image model once per validation video, then tracks the cached outputs with
   every variant of :func:`variants` (``MODEL.MINVIS.MATCHING``, ``TRACK_MEMORY_MOMENTUM``,
   ``MIN_MATCH_SIMILARITY``) and reports, per case, AP / AP50 / AP75 (the YouTube-VIS
   metric of :mod:`minvis.evaluation.ytvis_metric`) and identity switches
   (:mod:`minvis.evaluation.identity_switches`): the frames where a ground-truth
   instance's best-IoU predicted track (IoU >= ``--switch-iou``) differs from the one at
   its previous matched frame, the predicted tracks being the distinct tracks of the
   video's top-k (track, class) pairs that score >= ``--switch-score`` (the confident
   tracks, as the streaming predictor reports them). "matched" is the share of the
   instances' visible frames that have such a match at all: few switches with few
   matched frames mean few confident tracks, not good tracking.

Prints a markdown table and writes it to ``OUTPUT_DIR/results.md`` (and the numbers to
``results.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from pycocotools import mask as mask_utils

from minvis.config import build_config
from minvis.data.builtin import register_synthetic_ytvis
from minvis.data.mapper import YTVISDatasetMapper
from minvis.data.synthetic import SyntheticSpec, stress_spec, write_split
from minvis.engine import Trainer
from minvis.evaluation.evaluator import video_entries
from minvis.evaluation.identity_switches import IdentityStats, identity_stats
from minvis.evaluation.ytvis_metric import evaluate_ytvis
from minvis.inference import FrameOutputs, MaskGeometry, VideoResultAccumulator
from minvis.modeling import MinVISCheckpointer, tracking_options

REPO = Path(__file__).resolve().parents[2]
CASES = ("occlusion", "reentry", "lookalike")
TRAIN_FRAMES = 12  # frames per training video (training draws one or two of them per step)
LR_DROP = 0.8  # the learning rate drops by 10x after this fraction of the iterations
STAT_NAMES = ("AP", "AP50", "AP75", "matched %")


@dataclass(frozen=True)
class Variant:
    """One tracker setting, as the MODEL.MINVIS keys it sets."""

    name: str
    matching: str = "query"
    memory_momentum: float = 0.0
    min_similarity: float = -1.0

    def config(self, cfg: CfgNode) -> CfgNode:
        cfg = cfg.clone()
        cfg.MODEL.MINVIS.MATCHING = self.matching
        cfg.MODEL.MINVIS.TRACK_MEMORY_MOMENTUM = self.memory_momentum
        cfg.MODEL.MINVIS.MIN_MATCH_SIMILARITY = self.min_similarity
        return cfg


def variants(momentum: float, min_similarity: float) -> list[Variant]:
    return [
        Variant("query (paper)"),
        Variant("heuristic", matching="heuristic"),
        Variant("heuristic+query", matching="heuristic+query"),
        Variant(f"query + memory {momentum:g}", memory_momentum=momentum),
        Variant(f"query + min sim {min_similarity:g}", min_similarity=min_similarity),
        Variant(
            f"query + memory {momentum:g} + min sim {min_similarity:g}",
            memory_momentum=momentum,
            min_similarity=min_similarity,
        ),
    ]


@dataclass
class VideoOutputs:
    """The image model's per-frame outputs of one validation video, on the CPU."""

    video_id: int
    frames: list[FrameOutputs]
    geometry: MaskGeometry
    gt_masks: np.ndarray  # [G, T, H, W] bool


def write_data(root: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """Write every case's splits and register them; returns case -> [train, val] names."""
    names = {}
    for case in CASES:
        train = stress_spec(case, SyntheticSpec(num_frames=TRAIN_FRAMES))
        val = stress_spec(case, SyntheticSpec(num_frames=args.val_frames))
        write_split(root / case, "train", args.train_videos, train, args.seed)
        write_split(root / case, "val", args.val_videos, val, args.seed)
        names[case] = register_synthetic_ytvis(str(root / case), prefix=f"tracking_{case}")
    return names


def train(cfg: CfgNode, out: Path, params: dict[str, Any], retrain: bool) -> Path:
    """Train once; reuse ``out/model_final.pth`` while ``params`` are unchanged."""
    weights, params_file = out / "model_final.pth", out / "train_params.json"
    if not retrain and weights.exists() and params_file.exists():
        if json.loads(params_file.read_text()) == params:
            print(f"reusing {weights}")
            return weights
    seed_all_rng(params["seed"])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    params_file.write_text(json.dumps(params, indent=2))
    return weights


def gt_masks(gt: dict[str, Any], video: dict[str, Any]) -> np.ndarray:
    """``[G, T, H, W]`` bool masks of a video's ground-truth instances."""
    height, width, length = video["height"], video["width"], video["length"]
    tracks = [a for a in gt["annotations"] if a["video_id"] == video["id"]]
    masks = np.zeros((len(tracks), length, height, width), dtype=bool)
    for g, track in enumerate(tracks):
        for t, segmentation in enumerate(track["segmentations"]):
            if segmentation is not None:
                masks[g, t] = mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width))
    return masks


@torch.no_grad()
def run_model(model: torch.nn.Module, cfg: CfgNode, dataset: str, gt: dict[str, Any]) -> list[VideoOutputs]:
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    videos = {v["id"]: v for v in gt["videos"]}
    outputs = []
    for video in DatasetCatalog.get(dataset):
        mapped = mapper(video)
        windows = list(model.frame_outputs(mapped["image"]))
        frames = [
            FrameOutputs(frame.logits.cpu(), frame.masks.cpu(), frame.embds.cpu())
            for window in windows
            for frame in window.frames()
        ]
        geometry = windows[0].geometry((mapped["height"], mapped["width"]))
        video_id = mapped["video_id"]
        outputs.append(VideoOutputs(video_id, frames, geometry, gt_masks(gt, videos[video_id])))
    return outputs


def confident_track_masks(accumulator: VideoResultAccumulator, min_score: float) -> np.ndarray:
    """``[P, T, H, W]`` masks of the distinct top-k tracks scoring at least ``min_score``."""
    selection = accumulator.selection()
    tracks = selection.tracks[selection.scores >= min_score].unique()  # [P]
    frames = [masks.numpy() for masks in accumulator.iter_frame_masks(tracks)]  # T x [P, H, W]
    return np.stack(frames, axis=1)


def score_variant(
    cfg: CfgNode,
    videos: list[VideoOutputs],
    gt: dict[str, Any],
    id_map: dict[int, int],
    args: argparse.Namespace,
) -> dict[str, float]:
    """AP, AP50, AP75, matched % and identity switches of one tracker setting."""
    tracking, top_k = tracking_options(cfg), cfg.MODEL.MASK_FORMER.TEST.TOP_K
    entries, identity = [], IdentityStats()
    for video in videos:
        accumulator = VideoResultAccumulator(video.geometry, top_k=top_k, tracking=tracking)
        for frame in video.frames:
            accumulator.add_frame(frame)
        entries += video_entries(video.video_id, accumulator.finalize(), id_map)
        track_masks = confident_track_masks(accumulator, args.switch_score)
        identity = identity + identity_stats(video.gt_masks, track_masks, args.switch_iou)
    stats = evaluate_ytvis(gt, entries).stats
    return {
        **{name: 100 * stats[name] for name in ("AP", "AP50", "AP75")},
        "matched %": 100 * identity.matched_frames / max(identity.visible_frames, 1),
        "ID switches": identity.switches,
    }


def evaluate_case(
    model: torch.nn.Module, cfg: CfgNode, dataset: str, run_variants: list[Variant], args: argparse.Namespace
) -> tuple[str, dict[str, dict[str, float]]]:
    """Run the model on a validation set once and score every variant; returns the
    ground-truth track count and a row per variant."""
    metadata = MetadataCatalog.get(dataset)
    gt = json.loads(Path(metadata.json_file).read_text())
    id_map = {contiguous: id_ for id_, contiguous in metadata.thing_dataset_id_to_contiguous_id.items()}
    videos = run_model(model, cfg, dataset, gt)
    rows = {v.name: score_variant(v.config(cfg), videos, gt, id_map, args) for v in run_variants}
    return f"{len(gt['annotations'])} tracks", rows


def markdown(results: dict[str, dict[str, dict[str, float]]], gt_counts: dict[str, str]) -> str:
    header = " | ".join(("case", "tracking", *STAT_NAMES, "ID switches"))
    lines = [f"| {header} |", "|---|---|" + "---:|" * (len(STAT_NAMES) + 1)]
    for case, by_variant in results.items():
        for name, row in by_variant.items():
            numbers = " | ".join(f"{row[s]:.1f}" for s in STAT_NAMES)
            lines.append(f"| {case} ({gt_counts[case]}) | {name} | {numbers} | {row['ID switches']} |")
    return "\n".join(lines)


def training_config(args: argparse.Namespace, train_names: list[str], out: Path, opts: list) -> CfgNode:
    return build_config(
        args.config,
        [
            "DATASETS.TRAIN", str(tuple(train_names)),
            "DATASETS.TEST", "()",
            "SOLVER.MAX_ITER", args.iters,
            "SOLVER.STEPS", f"({int(LR_DROP * args.iters)},)",
            "SOLVER.IMS_PER_BATCH", args.batch,
            "SOLVER.CHECKPOINT_PERIOD", args.iters + 1,  # only model_final.pth
            "DATALOADER.NUM_WORKERS", 1,
            "SEED", args.seed,
            "OUTPUT_DIR", str(out),
            *opts,
        ],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "output" / "benchmark_tracking")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"))
    parser.add_argument("--iters", type=int, default=800, help="training iterations")
    parser.add_argument("--batch", type=int, default=8, help="videos (one frame each) per iteration")
    parser.add_argument("--train-videos", type=int, default=24, help="training videos per case")
    parser.add_argument("--val-videos", type=int, default=8, help="validation videos per case")
    parser.add_argument("--val-frames", type=int, default=16, help="frames per validation video")
    parser.add_argument("--memory-momentum", type=float, default=0.5)
    parser.add_argument("--min-similarity", type=float, default=0.5)
    parser.add_argument("--switch-iou", type=float, default=0.5, help="IoU of an identity match")
    parser.add_argument(
        "--switch-score", type=float, default=0.5, help="score of the tracks identity switches look at"
    )
    parser.add_argument(
        "--supervised-matching",
        action="store_true",
        help="also train a model with MODEL.MINVIS.SUPERVISED_MATCHING (two frames per video: "
        "about twice the training time) and report it with query matching",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="train even if a checkpoint is cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    names = write_data(args.output_dir / "data", args)
    all_variants = variants(args.memory_momentum, args.min_similarity)
    runs = [("train", [], all_variants, "")]
    if args.supervised_matching:
        opts = ["MODEL.MINVIS.SUPERVISED_MATCHING.ENABLED", True]
        runs.append(("train_supervised_matching", opts, all_variants[:1], ", supervised matching"))
    params = {k: vars(args)[k] for k in ("config", "iters", "batch", "train_videos", "seed")}
    results: dict[str, dict[str, dict[str, float]]] = {case: {} for case in CASES}
    gt_counts, seconds = {}, {"data": time.perf_counter() - start, "training": 0.0, "evaluation": 0.0}
    for folder, opts, run_variants, suffix in runs:
        start = time.perf_counter()
        cfg = training_config(args, [train for train, _ in names.values()], args.output_dir / folder, opts)
        cfg.MODEL.WEIGHTS = str(train(cfg, args.output_dir / folder, {**params, "opts": opts}, args.retrain))
        trained = time.perf_counter()
        model = build_model(cfg).eval()
        MinVISCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
        for case, (_, val) in names.items():
            gt_counts[case], rows = evaluate_case(model, cfg, val, run_variants, args)
            results[case].update({name + suffix: row for name, row in rows.items()})
        seconds["training"] += trained - start
        seconds["evaluation"] += time.perf_counter() - trained
    table = markdown(results, gt_counts)
    timing = ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items())
    print(table)
    print(timing)
    (args.output_dir / "results.md").write_text(f"{table}\n\n{timing}\n")
    (args.output_dir / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
