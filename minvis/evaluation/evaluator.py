"""``YTVISEvaluator``: submission files and, when ground truth exists, the YouTube-VIS metric.

Masks are encoded one frame at a time (bounded memory on long videos); the main process writes
``results.json`` and ``results.zip`` and scores them if the dataset is annotated. Signature and
``segm`` results (with ``AP-<class name>`` per class) are the official evaluator's. Outputs follow
:mod:`minvis.output_paths`: the output folder is held while they are written, ``results.json``
and ``results.zip`` are replaced together, each only once complete.
"""

import itertools
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch.distributed as dist
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table
from tabulate import tabulate

from minvis.data.ytvis import ytvis_metadata
from minvis.output_paths import StagedOutputs, atomic_output, lock_output_dir
from minvis.tracking import VideoResult
from minvis.ytvis_format import SubmissionWriter, encode_masks, read_annotations_json, zip_results

from .ytvis_metric import YTVISMetrics, evaluate_ytvis

logger = logging.getLogger(__name__)

# How long the processes that finished their videos wait for the others (minvis.engine.launch's
# --dist-timeout bounds the wait for a silent process in training collectives).
INFERENCE_WAIT = timedelta(hours=24)
PER_CLASS_TABLE_COLUMNS = 6  # (category, AP) pairs side by side, as detectron2's evaluators


def video_entries(video_id: int, output: VideoResult, contiguous_to_dataset_id: dict[int, int]) -> list[dict]:
    """Server entries for one video's model output."""
    per_frame = [encode_masks(frame.numpy()) for frame in output.frame_masks()]
    segmentations = [list(instance) for instance in zip(*per_frame)] if per_frame else []
    return [
        {
            "video_id": int(video_id),
            "category_id": contiguous_to_dataset_id[int(label)],
            "score": float(score),
            "segmentations": list(segms),
        }
        for score, label, segms in zip(output.scores, output.labels, segmentations)
    ]


def per_class_ap(
    metrics: YTVISMetrics, class_names: Sequence[str], contiguous_to_dataset_id: dict[int, int]
) -> dict[str, float]:
    """``{"AP-<class name>": AP in percent}`` in class order, NaN for a class without ground truth."""
    results = {}
    for contiguous, name in enumerate(class_names):
        ap = metrics.per_category_ap[contiguous_to_dataset_id[contiguous]]
        results[f"AP-{name}"] = 100 * ap if ap >= 0 else math.nan
    return results


def per_class_table(per_class: dict[str, float]) -> str:
    """The per-class AP as a pipe table of (category, AP) column pairs."""
    pairs = [(key.removeprefix("AP-"), ap) for key, ap in per_class.items()]
    columns = min(PER_CLASS_TABLE_COLUMNS, 2 * len(pairs))
    flat = list(itertools.chain(*pairs))
    rows = itertools.zip_longest(*[flat[i::columns] for i in range(columns)])
    headers = ["category", "AP"] * (columns // 2)
    return tabulate(rows, tablefmt="pipe", floatfmt=".3f", headers=headers, numalign="left")


class YTVISEvaluator(DatasetEvaluator):
    def __init__(
        self,
        dataset_name: str,
        tasks: tuple[str, ...] | CfgNode | None = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        use_fast_impl: bool = True,
    ):
        """The official signature: ``YTVISEvaluator(name, cfg, True, output_dir)`` works.
        ``tasks`` (only ``segm``) and ``use_fast_impl`` (one metric) are ignored; with an
        ``output_dir`` results.json, results.zip and metrics.json are written there."""
        del tasks, use_fast_impl
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        metadata = MetadataCatalog.get(dataset_name)
        self._json_file = metadata.json_file
        id_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
        class_names = metadata.get("thing_classes")
        if id_map is None:
            # Registered without categories and not loaded yet: loading would set these.
            derived = ytvis_metadata(self._read_gt()["categories"])
            id_map, class_names = derived["thing_dataset_id_to_contiguous_id"], derived["thing_classes"]
        self._contiguous_to_dataset_id = {contiguous: dataset_id for dataset_id, contiguous in id_map.items()}
        self._class_names: list[str] = list(class_names or [])
        self._entries: list[dict] = []

    def reset(self) -> None:
        self._entries = []

    def process(self, inputs: list[dict], outputs: VideoResult | list[VideoResult]) -> None:
        # The model takes one video per call and returns one result for it.
        outputs = [outputs] if isinstance(outputs, VideoResult) else outputs
        for video, output in zip(inputs, outputs):
            self._entries.extend(video_entries(video["video_id"], output, self._contiguous_to_dataset_id))

    def evaluate(self) -> OrderedDict:
        entries = self._entries
        if self._distributed:
            # Processes finish their share of the videos at different times: the first wait
            # here for the last, longer than the run's collective timeout allows a silent one.
            if comm.get_world_size() > 1:  # gloo: the one backend with a monitored barrier
                group = comm._get_global_gloo_group()
                dist.monitored_barrier(group, timeout=INFERENCE_WAIT, wait_all_ranks=True)
            gathered = comm.gather(entries, dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            entries = list(itertools.chain(*gathered))
        if self._output_dir:
            self._write_submission(entries)
        gt = self._read_gt()
        if not gt.get("annotations"):
            logger.info(f"{self._dataset_name} has no annotations: wrote the submission, no metric.")
            return OrderedDict()
        metrics = evaluate_ytvis(gt, entries)
        if self._output_dir:
            with lock_output_dir(self._output_dir) as folder, atomic_output(folder / "metrics.json") as path:
                stats = {**metrics.reported_stats, "per_category_AP": metrics.per_category_ap}
                path.write_text(json.dumps(stats, indent=2), encoding="utf-8")
        # detectron2 prints these as percentages, like its COCO evaluator.
        # With OVIS occlusion ground truth, also AP/AR for light, medium and heavy occlusion.
        results = {k: 100 * v if v >= 0 else v for k, v in metrics.reported_stats.items()}
        logger.info(f"Evaluation results for segm:\n{create_small_table(results)}")
        if len(self._class_names) > 1:  # as the official evaluator: per class for > 1 class
            per_class = per_class_ap(metrics, self._class_names, self._contiguous_to_dataset_id)
            logger.info(f"Per-category segm AP:\n{per_class_table(per_class)}")
            results.update(per_class)
        return OrderedDict(segm=results)

    def _read_gt(self) -> dict[str, Any]:
        return read_annotations_json(self._json_file)  # type: ignore[return-value]  # checked by the metric

    def _write_submission(self, entries: list[dict[str, Any]]) -> None:
        with lock_output_dir(self._output_dir) as folder:
            json_path, zip_path = folder / "results.json", folder / "results.zip"
            with StagedOutputs([json_path, zip_path]) as staged:
                with SubmissionWriter(staged.path(json_path)) as writer:
                    writer.write(entries)
                zip_results(staged.path(json_path), staged.path(zip_path))
        logger.info(f"Wrote {len(entries)} instances to {json_path} and {zip_path}")
