"""``YTVISEvaluator``: submission files and, when ground truth exists, the YouTube-VIS metric.

Per video, the model's instances become server entries with compressed RLE per frame
(``null`` for empty frames). The model's output is either its typed
:class:`~minvis.inference.VideoResult` (what :meth:`Trainer.test
<minvis.engine.Trainer.test>` asks for: masks are computed and encoded one frame at a
time, so memory stays bounded on long videos) or the official eval-mode dict (dense
masks, held for one video). Entries are gathered to the main process, which
writes ``OUTPUT_DIR/inference/results.json`` and ``results.zip`` (results.json at the
archive root, as the servers require) and scores them if the dataset is annotated.
"""

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from minvis.data.ytvis import ytvis_metadata
from minvis.inference import VideoResult
from minvis.ytvis_format import SubmissionWriter, encode_masks, zip_results

from .ytvis_metric import evaluate_ytvis

logger = logging.getLogger(__name__)


def video_entries(
    video_id: int, output: VideoResult | dict, contiguous_to_dataset_id: dict[int, int]
) -> list[dict]:
    """Server entries for one video's model output (a ``VideoResult`` or the official dict)."""
    if isinstance(output, VideoResult):
        scores, labels = output.scores, output.labels
        # Per frame [k, H, W] bool -> k RLE, regrouped per instance.
        per_frame = [encode_masks(frame.numpy()) for frame in output.frame_masks()]
        segmentations = [list(instance) for instance in zip(*per_frame)] if per_frame else []
    else:
        scores, labels = output["pred_scores"], output["pred_labels"]
        # [T, H, W] bool per instance -> per frame RLE.
        segmentations = [encode_masks(mask.cpu().numpy()) for mask in output["pred_masks"]]
    return [
        {
            "video_id": int(video_id),
            "category_id": contiguous_to_dataset_id[int(label)],
            "score": float(score),
            "segmentations": list(segms),
        }
        for score, label, segms in zip(scores, labels, segmentations)
    ]


class YTVISEvaluator(DatasetEvaluator):
    def __init__(self, dataset_name: str, output_dir: str | None = None, distributed: bool = True):
        """
        Args:
            dataset_name: a dataset registered with ``register_ytvis_instances``.
            output_dir: where ``inference/``-style files go (results.json, results.zip,
                metrics.json); nothing is written when None.
            distributed: gather entries from all processes to the main one.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        metadata = MetadataCatalog.get(dataset_name)
        self._json_file = metadata.json_file
        id_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            # Registered without categories and not loaded yet: loading would set this map.
            id_map = ytvis_metadata(self._read_gt()["categories"])["thing_dataset_id_to_contiguous_id"]
        self._contiguous_to_dataset_id = {contiguous: dataset_id for dataset_id, contiguous in id_map.items()}
        self._entries: list[dict] = []

    def reset(self) -> None:
        self._entries = []

    def process(self, inputs: list[dict], outputs: VideoResult | dict | list) -> None:
        # The model takes one video per call and returns one result for it.
        outputs = [outputs] if isinstance(outputs, VideoResult | dict) else outputs
        for video, output in zip(inputs, outputs):
            self._entries.extend(video_entries(video["video_id"], output, self._contiguous_to_dataset_id))

    def evaluate(self) -> OrderedDict:
        entries = self._entries
        if self._distributed:
            comm.synchronize()
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
            path = os.path.join(self._output_dir, "metrics.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump({**metrics.stats, "per_category_AP": metrics.per_category_ap}, f, indent=2)
        # detectron2 prints these as percentages, like its COCO evaluator.
        return OrderedDict(segm={k: 100 * v if v >= 0 else v for k, v in metrics.stats.items()})

    def _read_gt(self) -> dict[str, Any]:
        with open(self._json_file, encoding="utf-8") as f:
            return json.load(f)

    def _write_submission(self, entries: list[dict[str, Any]]) -> None:
        os.makedirs(self._output_dir, exist_ok=True)
        json_path = os.path.join(self._output_dir, "results.json")
        with SubmissionWriter(json_path) as writer:
            writer.write(entries)
        zip_path = zip_results(json_path)
        logger.info(f"Wrote {len(entries)} instances to {json_path} and {zip_path}")
