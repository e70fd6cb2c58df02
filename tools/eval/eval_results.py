#!/usr/bin/env python
"""Score a YouTube-VIS / OVIS submission against ground truth, locally.

Prints the twelve official numbers (-1 = no ground truth in that bucket), the OVIS occlusion
AP/AR (light / medium / heavy) when the ground truth has ``occlusion``, and the per-category
AP. Bad input is reported in one line on stderr naming the file and the entry (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from minvis.evaluation.ytvis_metric import YTVISMetrics, evaluate_ytvis
from minvis.output_paths import OutputPathError, atomic_output, check_outputs
from minvis.ytvis_format import YTVISFormatError, read_annotations_json, read_results

BAD_INPUT = 2


def format_report(metrics: YTVISMetrics, category_names: dict[int, str]) -> str:
    rows = [("metric", "value"), *((k, f"{v:.4f}") for k, v in metrics.reported_stats.items())]
    rows += [("", ""), ("category", "AP")]
    rows += [
        (f"{cat} {category_names.get(cat, '')}".strip(), f"{ap:.4f}")
        for cat, ap in metrics.per_category_ap.items()
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>7}".rstrip() for name, value in rows)


def run(gt_path: Path, results_path: Path, json_out: Path | None, overwrite: bool) -> None:
    if json_out is not None:
        check_outputs([json_out], [gt_path, results_path], overwrite=overwrite)
    gt: Any = read_annotations_json(gt_path)
    results: Any = read_results(results_path)  # validated once, by evaluate_ytvis
    metrics = evaluate_ytvis(gt, results, gt_source=str(gt_path), results_source=str(results_path))
    names = {c["id"]: str(c.get("name", "")) for c in gt["categories"]}
    print(format_report(metrics, names))
    if json_out is not None:
        with atomic_output(json_out) as temporary:
            temporary.write_text(json.dumps(metrics.reported_stats, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, required=True, help="YouTube-VIS-format GT json")
    parser.add_argument("--results", type=Path, required=True, help="results.json or results.zip")
    parser.add_argument("--json-out", type=Path, help="write the printed numbers here (12; 18 for OVIS)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json-out file")
    args = parser.parse_args(argv)
    try:
        run(args.gt, args.results, args.json_out, args.overwrite)
    except (YTVISFormatError, OSError, OutputPathError) as error:
        print(f"eval_results: error: {error}", file=sys.stderr)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
