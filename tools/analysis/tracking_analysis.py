#!/usr/bin/env python
"""The paper's tracking analyses (Tables 4 and 5) on synthetic tracking stress cases.

    python tools/analysis/tracking_analysis.py [--output-dir output/tracking_analysis] [--iters 800]
        [--batch 8] [--train-videos 24] [--val-videos 8] [--val-frames 16] [--switch-iou 0.5]
        [--switch-score 0.5] [--supervised-matching] [--seed 0] [--retrain]

Writes the stress sets of :data:`CASES` (:data:`minvis.data.synthetic.STRESS_PRESETS`:
occlusion behind a static band, objects leaving and re-entering, look-alike instances) under
``OUTPUT_DIR/data``; trains the tiny model once on all their train splits (cached in
``OUTPUT_DIR/train`` while the training parameters are unchanged; ``--supervised-matching``
also trains one with ``MODEL.MINVIS.SUPERVISED_MATCHING``, Table 5, reported with query
matching); runs the image model once per validation video and tracks its outputs with each
matching mode of Table 4 (query, heuristic, heuristic+query). Per case: AP / AP50 / AP75
and identity switches (:mod:`identity_switches`) of the confident tracks (top-k instances
scoring >= ``--switch-score``); "matched %" is the share of the instances' visible frames
that such a track matches at IoU >= ``--switch-iou`` at all (few switches with few matched
frames mean few confident tracks, not good tracking). Writes ``OUTPUT_DIR/results.{md,json}``.
"""

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
from identity_switches import IdentityStats, identity_stats
from pycocotools import mask as mask_utils

from minvis.config import build_config
from minvis.data.builtin import register_synthetic_ytvis
from minvis.data.mapper import YTVISDatasetMapper
from minvis.data.synthetic import SyntheticSpec, stress_spec, write_split
from minvis.engine import Trainer
from minvis.evaluation.evaluator import video_entries
from minvis.evaluation.ytvis_metric import evaluate_ytvis
from minvis.modeling import MinVISCheckpointer
from minvis.tracking import MATCHING_MODES, FrameOutputs, VideoResult, matching_cost, track_video

REPO = Path(__file__).resolve().parents[2]
CASES = ("occlusion", "reentry", "lookalike")
TRAIN_FRAMES = 12  # frames per training video (training draws one or two of them per step)
LR_DROP = 0.8  # the learning rate drops by 10x after this fraction of the iterations
STAT_NAMES = ("AP", "AP50", "AP75", "matched %")


@dataclass(frozen=True)
class VideoOutputs:
    """The image model's per-frame outputs of one validation video, its size and ground truth."""

    video_id: int
    frames: list[FrameOutputs]
    size: tuple[int, int]
    gt_masks: np.ndarray  # [G, T, H, W] bool


def write_data(root: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """Write every case's splits and register them; returns case -> [train, val] names."""
    names = {}
    for case in CASES:
        splits = ("train", args.train_videos, TRAIN_FRAMES), ("val", args.val_videos, args.val_frames)
        for split, videos, frames in splits:
            spec = stress_spec(case, SyntheticSpec(num_frames=frames))
            write_split(root / case, split, videos, spec, args.seed)
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
    height, width = video["height"], video["width"]
    tracks = [a for a in gt["annotations"] if a["video_id"] == video["id"]]
    masks = np.zeros((len(tracks), video["length"], height, width), dtype=bool)
    for g, track in enumerate(tracks):
        for t, segmentation in enumerate(track["segmentations"]):
            if segmentation is not None:
                masks[g, t] = mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width))
    return masks


@torch.no_grad()
def run_model(model: torch.nn.Module, cfg: CfgNode, dataset: str, gt: dict[str, Any]) -> list[VideoOutputs]:
    mapper, videos = YTVISDatasetMapper(cfg, is_train=False), {v["id"]: v for v in gt["videos"]}
    outputs = []
    for video in DatasetCatalog.get(dataset):
        mapped = mapper(video)
        frames, size = list(model.frame_outputs(mapped["image"])), (mapped["height"], mapped["width"])
        video_id = mapped["video_id"]
        outputs.append(VideoOutputs(video_id, frames, size, gt_masks(gt, videos[video_id])))
    return outputs


def confident_track_masks(result: VideoResult, min_score: float) -> np.ndarray:
    """``[P, T, H, W]`` masks of the video's top-k instances scoring at least ``min_score``.
    Instances of one track (other classes) repeat its masks, which changes no identity match."""
    keep = [i for i, score in enumerate(result.scores) if score >= min_score]
    return np.stack([masks[keep].numpy() for masks in result.frame_masks()], axis=1)


def score_mode(
    cfg: CfgNode, mode: str, dataset: str, videos: list[VideoOutputs], gt: dict, args: argparse.Namespace
) -> dict[str, float]:
    """AP, AP50, AP75, matched % and identity switches of one matching mode."""
    mf = cfg.MODEL.MASK_FORMER
    weights = {"class_weight": mf.CLASS_WEIGHT, "mask_weight": mf.MASK_WEIGHT, "dice_weight": mf.DICE_WEIGHT}
    cost = matching_cost(mode, **weights)
    id_map = {v: k for k, v in MetadataCatalog.get(dataset).thing_dataset_id_to_contiguous_id.items()}
    entries, identity = [], IdentityStats()
    for video in videos:
        result = track_video(video.frames, video.size, top_k=mf.TEST.TOP_K, cost=cost)
        entries += video_entries(video.video_id, result, id_map)
        masks = confident_track_masks(result, args.switch_score)
        identity = identity + identity_stats(video.gt_masks, masks, args.switch_iou)
    stats = evaluate_ytvis(gt, entries).stats
    matched = 100 * identity.matched_frames / max(identity.visible_frames, 1)
    return {**{name: 100 * stats[name] for name in ("AP", "AP50", "AP75")}, "matched %": matched,
            "ID switches": identity.switches}  # fmt: skip


def markdown(results: dict[str, dict[str, dict[str, float]]], gt_counts: dict[str, int]) -> str:
    lines = [f"| {' | '.join(('case', 'tracking', *STAT_NAMES, 'ID switches'))} |", "|---|---|" + "---:|" * 5]
    for case, by_mode in results.items():
        for name, row in by_mode.items():
            numbers = " | ".join(f"{row[s]:.1f}" for s in STAT_NAMES)
            lines.append(f"| {case} ({gt_counts[case]} tracks) | {name} | {numbers} | {row['ID switches']} |")
    return "\n".join(lines)


def training_config(args: argparse.Namespace, train_names: list[str], out: Path, opts: list) -> CfgNode:
    solver = ["SOLVER.MAX_ITER", args.iters, "SOLVER.STEPS", f"({int(LR_DROP * args.iters)},)",
              "SOLVER.IMS_PER_BATCH", args.batch, "SOLVER.CHECKPOINT_PERIOD", args.iters + 1]  # fmt: skip
    data = ["DATASETS.TRAIN", str(tuple(train_names)), "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", 1]
    return build_config(args.config, [*solver, *data, "SEED", args.seed, "OUTPUT_DIR", str(out), *opts])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO / "output" / "tracking_analysis")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"))
    counts = {"iters": 800, "batch": 8, "train-videos": 24, "val-videos": 8, "val-frames": 16, "seed": 0}
    for name, default in counts.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--switch-iou", type=float, default=0.5, help="IoU of an identity match")
    parser.add_argument("--switch-score", type=float, default=0.5, help="score of a confident track")
    parser.add_argument("--supervised-matching", action="store_true", help="also train with it (Table 5)")
    parser.add_argument("--retrain", action="store_true", help="train even if a checkpoint is cached")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    names = write_data(args.output_dir / "data", args)
    runs = [("train", [], MATCHING_MODES, "")]
    if args.supervised_matching:
        opts = ["MODEL.MINVIS.SUPERVISED_MATCHING.ENABLED", True]
        runs.append(("train_supervised_matching", opts, ("query",), ", supervised matching"))
    params = {k: vars(args)[k] for k in ("config", "iters", "batch", "train_videos", "seed")}
    results: dict[str, dict[str, dict[str, float]]] = {case: {} for case in CASES}
    gt_counts, seconds = {}, {"data": time.perf_counter() - start, "training": 0.0, "evaluation": 0.0}
    for folder, opts, modes, suffix in runs:
        start = time.perf_counter()
        cfg = training_config(args, [train for train, _ in names.values()], args.output_dir / folder, opts)
        cfg.MODEL.WEIGHTS = str(train(cfg, args.output_dir / folder, {**params, "opts": opts}, args.retrain))
        trained = time.perf_counter()
        model = build_model(cfg).eval()
        MinVISCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
        for case, (_, val) in names.items():
            gt = json.loads(Path(MetadataCatalog.get(val).json_file).read_text())
            videos, gt_counts[case] = run_model(model, cfg, val, gt), len(gt["annotations"])
            for mode in modes:
                name = ("query (paper)" if mode == "query" else mode) + suffix
                results[case][name] = score_mode(cfg, mode, val, videos, gt, args)
        seconds["training"] += trained - start
        seconds["evaluation"] += time.perf_counter() - trained
    table, timing = markdown(results, gt_counts), ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    print(f"{table}\n{timing}")
    (args.output_dir / "results.md").write_text(f"{table}\n\n{timing}\n")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    (args.output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
