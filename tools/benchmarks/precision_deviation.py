#!/usr/bin/env python
"""How far a reduced inference precision strays from the official outputs on the parity fixture.

    python tools/benchmarks/precision_deviation.py [--precision bf16] [--fixture PATH]

Runs the fixture's video with ``MODEL.MASK_FORMER.TEST.PRECISION`` set and compares with the
official release's recorded output: whether the top-k labels are the same, the largest score
error, the smallest mask IoU (instances paired by label, then nearest score), and the largest
raw per-frame output error. Prints one markdown table row per precision (fp32 for reference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from detectron2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from minvis.config import build_config  # noqa: E402

DEFAULT_FIXTURE = REPO.parent / "shared" / "fixtures" / "parity_ytvis19_r50tiny_s0.pth"


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def deviation(fixture: dict, precision: str) -> dict[str, object]:
    cfg = build_config(
        str(REPO / "configs" / fixture["base_config"]),
        [*fixture["config_overrides"], "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
         "MODEL.MASK_FORMER.TEST.PRECISION", precision],
    )
    model = build_model(cfg).eval()
    model.load_state_dict(fixture["state_dict"], strict=True)
    frames = [f.float() for f in fixture["input"]["frames"]]
    with torch.no_grad():
        windows = list(model.frame_outputs(frames))
        ours = model([{"image": frames, "height": fixture["input"]["height"],
                       "width": fixture["input"]["width"]}])
    fields = {"pred_logits": "logits", "pred_masks": "masks", "pred_embds": "embds"}
    raw_error = {
        key: (torch.cat([getattr(w, fields[key]) for w in windows]).float() - reference).abs().max().item()
        for key, reference in fixture["raw"].items()
    }
    reference = fixture["output"]
    labels_equal = sorted(ours["pred_labels"]) == sorted(reference["pred_labels"])
    unmatched = list(range(len(reference["pred_scores"])))
    score_error, min_iou = 0.0, 1.0
    for score, label, mask in zip(ours["pred_scores"], ours["pred_labels"], ours["pred_masks"]):
        same_label = [j for j in unmatched if reference["pred_labels"][j] == label] or unmatched
        j = min(same_label, key=lambda j: abs(reference["pred_scores"][j] - score))
        unmatched.remove(j)
        score_error = max(score_error, abs(reference["pred_scores"][j] - score))
        min_iou = min(min_iou, mask_iou(mask, reference["pred_masks"][j]))
    return {"labels equal": labels_equal, "max score error": score_error, "min mask IoU": min_iou,
            **{f"max |{key}| error": value for key, value in raw_error.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    args = parser.parse_args()
    if not args.fixture.is_file():
        parser.exit(2, f"error: fixture {args.fixture} does not exist\n")
    fixture = torch.load(args.fixture, weights_only=True)
    rows = {precision: deviation(fixture, precision) for precision in args.precision}
    columns = list(next(iter(rows.values())))
    print("| precision | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for precision, row in rows.items():
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        print(f"| {precision} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
