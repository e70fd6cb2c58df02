"""What the benchmarks share: flags, the machine line, models, synthetic video, alternating
timing, fresh-process workers, peak memory, output comparison and markdown tables.

This VM's speed swings by 2x within minutes, so comparisons alternate (A, B, A, B, ...) in
one process or one run of workers, and tables give medians. torch is imported where it is
used, so that the evaluation benchmark's parent stays small: Linux reports a child's peak
RSS as at least its parent's RSS at the fork.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from argparse import ArgumentParser, Namespace, RawDescriptionHelpFormatter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # this checkout's packages, not an installed copy
SHARED = REPO.parent / "shared"
YTVIS19 = REPO / "configs" / "youtubevis_2019"
MODELS = {  # name -> (config, the official test size (H, W) of a 16:9 video)
    "tiny": (REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml", (128, 224)),
    "r50": (YTVIS19 / "video_maskformer2_R50_bs32_8ep_frame.yaml", (360, 640)),
    "swinl": (YTVIS19 / "swin" / "video_maskformer2_swin_large_IN21k_384_bs32_8ep_frame.yaml", (480, 854)),
}
MB = 2**20


def make_parser(doc: str) -> ArgumentParser:
    return ArgumentParser(description=doc, formatter_class=RawDescriptionHelpFormatter)


def add_common(parser: ArgumentParser, frames: int | list[int], repeats: int, models: bool = False) -> None:
    """``--config`` (a file or a :data:`MODELS` name; ``--models`` names with ``models``),
    ``--device --threads --frames --repeats`` and ``--height --width`` (default: the model's)."""
    if models:
        parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["r50"])
    else:
        parser.add_argument("--config", default="r50", help=f"a config file or one of {', '.join(MODELS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--frames", type=int, nargs="+" if isinstance(frames, list) else None, default=frames)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)


def config_and_size(name: str, args: Namespace) -> tuple[Path, tuple[int, int]]:
    """The config file of ``name`` (a :data:`MODELS` name or a path) and the frame size."""
    config, size = MODELS.get(name, (Path(name), MODELS["r50"][1]))
    if not config.is_file():
        sys.exit(f"error: config file {config} does not exist")
    return config, (args.height or size[0], args.width or size[1])


def machine_line(device: str = "cpu") -> str:
    """CPU, memory, accelerator, versions and the load average, in one line."""
    import psutil

    torch = sys.modules.get("torch")  # its version where the benchmark uses it
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "no GPU used"
    versions = f"torch {torch.__version__}, {torch.get_num_threads()} threads, " if torch else ""
    return (
        f"Machine: {names[0] if names else platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GB RAM, {gpu}; {versions}"
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}"
    )


def build(config: Path, device: str = "cpu", overrides: Sequence[Any] = ()) -> torch.nn.Module:
    """The model of ``config`` in eval mode with the speed-ups users get (``apply_speedups``);
    random weights, seed 0 (every build of one config has the same), unless ``overrides`` set
    ``MODEL.WEIGHTS``."""
    import torch
    from detectron2.modeling import build_model

    from minvis.config import build_config
    from minvis.modeling import MinVISCheckpointer
    from minvis.modeling.speedups import apply_speedups

    cfg = build_config(str(config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, *overrides])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        MinVISCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
    return apply_speedups(model)


def synthetic_frames(count: int, height: int, width: int) -> Iterator[torch.Tensor]:
    """Float ``[3, H, W]`` frames in [0, 255] of a smooth random pattern scrolling sideways:
    the video that ``../shared/official_baseline/infer_run.py`` gives the official release."""
    import torch
    import torch.nn.functional as F

    base = torch.from_numpy(np.random.default_rng(0).random((3, height // 16, width // 16)).astype("float32"))
    for t in range(count):
        yield (F.interpolate(torch.roll(base, t, 2)[None], (height, width), mode="bilinear")[0] * 255).round()


def alternate(calls: dict[str, Callable[[], object]], repeats: int, device: str) -> dict[str, list[float]]:
    """Seconds of each call in ``repeats`` alternating rounds, after one warm-up round."""
    import torch

    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if round_ > 0:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def peak_rss_mb() -> float:
    """Peak RSS of this process: ``VmHWM`` (``ru_maxrss`` would include the parent's at the fork)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def run_worker(script: str, payload: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``script --worker JSON`` in a fresh process (its own peak memory); the JSON it prints last."""
    command = [sys.executable, script, "--worker", json.dumps(payload)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        sys.exit(f"{Path(script).name}: worker {payload} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


OFFICIAL_ENV = ("OFFICIAL_PY", "OFFICIAL_SRC", "OFFICIAL_PATH")  # from /tmp/minvis_official/env.sh


def run_release(official: bool, script: Path, args: Sequence[object], result: re.Pattern,
                env: dict[str, str] | None = None) -> tuple[float, ...]:  # fmt: skip
    """``script ARGS`` run by the official release's Python from its source tree, or by ours
    from this checkout, in a fresh process; the numbers of the ``result`` line it prints."""
    env = {**os.environ, **(env or {})}
    if official:
        env["PYTHONPATH"] = os.environ["OFFICIAL_PATH"]
    python = os.environ["OFFICIAL_PY"] if official else sys.executable
    source = os.environ["OFFICIAL_SRC"] if official else REPO
    command = [python, *map(str, [script, *args])]
    done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    match = result.search(done.stdout)
    if done.returncode != 0 or match is None:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return tuple(float(value) for value in match.groups())

def pair_instances(ours: dict[str, Any], reference: dict[str, Any]) -> list[tuple[bool, float, float]]:
    """Each instance of two video results (``pred_scores, pred_labels, pred_masks``) paired with
    one of ``reference``: the same label if one is left, then the largest mask IoU, then the
    nearest score. Returns (same label, score difference, mask IoU) per pair."""

    def iou(mask: Any, other: Any) -> float:
        union = (mask | other).sum().item()
        return 1.0 if union == 0 else (mask & other).sum().item() / union

    unmatched, pairs = list(range(len(reference["pred_scores"]))), []
    for score, label, mask in zip(ours["pred_scores"], ours["pred_labels"], ours["pred_masks"], strict=True):
        same = [j for j in unmatched if reference["pred_labels"][j] == label] or unmatched
        ious = {j: iou(mask, reference["pred_masks"][j]) for j in same}
        j = max(same, key=lambda j: (ious[j], -abs(reference["pred_scores"][j] - score)))
        unmatched.remove(j)
        difference = abs(reference["pred_scores"][j] - score)
        pairs.append((reference["pred_labels"][j] == label, difference, ious[j]))
    return pairs


def compare_outputs(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Two video results: labels equal, max score difference, min mask IoU (see :func:`pair_instances`)."""
    pairs = pair_instances(ours, reference)
    return {
        "labels equal": sorted(ours["pred_labels"]) == sorted(reference["pred_labels"]),
        "max score difference": max((p[1] for p in pairs), default=0.0),
        "min mask IoU": min((p[2] for p in pairs), default=1.0),
    }


def cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summary(values: dict[str, object]) -> str:
    return ", ".join(f"{name} {cell(value)}" for name, value in values.items())


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])
