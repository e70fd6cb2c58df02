"""Fuzz the eval CLI: corrupted ground truth and results end quickly and cleanly.

Every one of >= 1,000 seeded random corruptions of a valid ground-truth file and a
valid results file (wrong sizes, counts, types, ids, missing keys, NaN, binary bytes,
truncated JSON, ...) must end within a couple of seconds in either a valid score (exit
0) or a one-line error naming one of the two files (exit 2): never a hang (pycocotools
spins for ever on an RLE whose runs do not add up to its size) and never a traceback.
Most cases call ``main(argv)`` in-process; a few run the CLI as a subprocess.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import random
import runpy
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "tools" / "eval" / "eval_results.py"
FIXTURES = ROOT.parent / "shared" / "fixtures"
NUM_CASES = 1200
SECONDS_PER_CASE = 2.0
HANG_GUARD_SECONDS = 120  # the whole in-process loop (about 30 s)

JSON = Any
ALPHABET = "".join(chr(48 + i) for i in range(64))
ODD_VALUES: list[JSON] = [
    None, True, 0, -1, 1, 7, 2**31, 10**30, -(10**30), 0.5, math.nan, math.inf, -math.inf,
    "", "x", "0i0", "\u00e9\u6f22", [], [1, 2], [[]], {}, {"size": [4, 4], "counts": "0i0"},
]  # fmt: skip


@functools.cache
def _base_text() -> str:
    gt = json.loads((FIXTURES / "evalcase_s0.gt.json").read_text())
    results = json.loads((FIXTURES / "evalcase_s0.results.json").read_text())
    keep = {v["id"] for v in gt["videos"][:2]}
    gt["videos"] = [v for v in gt["videos"] if v["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["video_id"] in keep]
    results = [r for r in results if r["video_id"] in keep]
    segmentations = gt["annotations"][0]["segmentations"]
    frame = next(f for f, s in enumerate(segmentations) if s is not None)
    assert isinstance(segmentations[frame]["counts"], list)  # the fixture's GT is uncompressed
    height, width = segmentations[frame]["size"]
    compressed = mask_utils.frPyObjects(segmentations[frame], height, width)
    segmentations[frame] = {"size": [height, width], "counts": compressed["counts"].decode()}
    gt["annotations"][-1]["segmentations"][-1] = [[10.0, 10.0, 60.0, 12.0, 40.0, 50.0]]
    return json.dumps([gt, results])


def base_files() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A small valid pair from the recorded fixture (2 videos; the ground truth in
    uncompressed RLE), with a compressed-RLE frame and a polygon frame added to the
    ground truth so that every reader runs."""
    gt, results = json.loads(_base_text())
    return gt, results


def paths_in(tree: JSON, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a JSON tree, the root included."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths_in(value, (*prefix, index))
    return found


def get(tree: JSON, path: tuple) -> JSON:
    for key in path:
        tree = tree[key]
    return tree


def replace_at(tree: JSON, path: tuple, value: JSON) -> JSON:
    if not path:
        return value
    get(tree, path[:-1])[path[-1]] = value
    return tree


def mutate_counts(rng: random.Random, counts: str) -> str:
    chars = list(counts)
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["flip", "insert", "delete", "truncate", "foreign"])
        position = rng.randrange(len(chars) + 1)
        if op == "flip" and chars:
            chars[min(position, len(chars) - 1)] = rng.choice(ALPHABET)
        elif op == "insert":
            chars.insert(position, rng.choice(ALPHABET))
        elif op == "delete" and chars:
            del chars[min(position, len(chars) - 1)]
        elif op == "truncate":
            chars = chars[:position]
        else:
            chars.insert(position, rng.choice("~ \x7f\u00e9}"))
    return "".join(chars)


def mutate_tree(rng: random.Random, tree: JSON) -> JSON:
    """One structural corruption of a JSON tree."""
    paths = paths_in(tree)
    rle_paths = [p for p in paths if p and p[-1] == "counts" and isinstance(get(tree, p), str)]
    op = rng.choice(["value", "value", "delete", "rle", "rle", "rle", "size", "runs", "duplicate", "shrink"])
    if op == "rle" and rle_paths:
        path = rng.choice(rle_paths)
        return replace_at(tree, path, mutate_counts(rng, get(tree, path)))
    if op == "size" and rle_paths:
        path = rng.choice(rle_paths)[:-1] + ("size",)
        size = list(get(tree, path))
        size[rng.randrange(2)] += rng.choice([-1, 1, 7, -1000])
        return replace_at(tree, path, rng.choice([size, size[:1], [*size, 1], [float(size[0]), size[1]]]))
    if op == "runs" and rle_paths:
        path = rng.choice(rle_paths)
        runs = [rng.randint(-3, 40) for _ in range(rng.randint(1, 8))]
        return replace_at(tree, path, rng.choice([runs, [sum(map(abs, runs))], [1.5, 2]]))
    containers = [p for p in paths if isinstance(get(tree, p), dict | list) and get(tree, p)]
    if op == "delete" and containers:
        path = rng.choice(containers)
        container = get(tree, path)
        key = rng.choice(list(container)) if isinstance(container, dict) else rng.randrange(len(container))
        del container[key]
        return tree
    if op == "duplicate" and containers:
        lists = [p for p in containers if isinstance(get(tree, p), list)]
        if lists:
            container = get(tree, rng.choice(lists))
            container.append(copy.deepcopy(rng.choice(container)))
            return tree
    if op == "shrink" and containers:
        lists = [p for p in containers if isinstance(get(tree, p), list)]
        if lists:
            container = get(tree, rng.choice(lists))
            del container[rng.randrange(len(container)) :]
            return tree
    return replace_at(tree, rng.choice(paths), copy.deepcopy(rng.choice(ODD_VALUES)))


def corrupt_bytes(rng: random.Random, text: str) -> bytes:
    """A file-level corruption of a JSON text."""
    data = text.encode()
    op = rng.choice(["truncate", "binary", "flip", "utf16", "empty", "deep", "bom"])
    if op == "truncate":
        return data[: rng.randrange(len(data))]
    if op == "binary":
        return rng.randbytes(rng.randint(1, 4096))
    if op == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 5)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if op == "utf16":
        return text.encode("utf-16")
    if op == "empty":
        return b""
    if op == "deep":
        depth = rng.choice([10, 100_000])
        return b"[" * depth + b"]" * depth
    return b"\xef\xbb\xbf" + data


def write_results(rng: random.Random, path: Path, data: bytes) -> Path:
    """Results as .json, or zipped (sometimes without results.json, sometimes broken)."""
    choice = rng.random()
    if choice < 0.8:
        path.write_bytes(data)
        return path
    archive = path.with_suffix(".zip")
    if choice < 0.9:
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("results.json" if choice < 0.87 else "other.json", data)
    else:
        archive.write_bytes(b"PK\x03\x04" + rng.randbytes(200))
    return archive


def make_case(seed: int, folder: Path) -> tuple[Path, Path, str]:
    """Write one corrupted (gt, results) pair; returns the paths and a description."""
    rng = random.Random(seed)
    gt, results = base_files()
    target = rng.choice(["gt", "results", "both"])
    how = []
    texts = {}
    for name, tree in (("gt", gt), ("results", results)):
        if target in (name, "both") and rng.random() < 0.85:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                tree = mutate_tree(rng, tree)
            how.append(f"{name}: tree")
            texts[name] = json.dumps(tree).encode()
        elif target in (name, "both"):
            texts[name] = corrupt_bytes(rng, json.dumps(tree))
            how.append(f"{name}: bytes")
        else:
            texts[name] = json.dumps(tree).encode()
    gt_path = folder / f"gt_{seed}.json"
    gt_path.write_bytes(texts["gt"])
    results_path = write_results(rng, folder / f"results_{seed}.json", texts["results"])
    return gt_path, results_path, f"seed {seed} ({', '.join(how)})"


def load_main() -> Callable[[list[str]], int]:
    return runpy.run_path(str(CLI))["main"]


def check_outcome(code: int, out: str, err: str, gt: Path, results: Path, what: str) -> None:
    assert code in (0, 2), f"{what}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{what}:\n{err}"
    if code == 0:
        assert "AP50" in out, what
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected one line, got\n{err}"
    assert str(gt) in lines[0] or str(results) in lines[0], f"{what}: names no file: {lines[0]}"


def run_fuzz(folder: Path) -> None:
    """The in-process loop (run in a child process, so that a hang inside pycocotools'
    C code can be stopped): prints the outcome counts and the slowest case as JSON."""
    main = load_main()
    timings: list[tuple[float, str]] = []
    outcomes = {0: 0, 2: 0}
    progress = folder / "current_case.txt"
    for seed in range(NUM_CASES):
        gt, results, what = make_case(seed, folder)
        progress.write_text(what)
        out, err = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["--gt", str(gt), "--results", str(results)])
            except SystemExit as exit_:  # argparse
                code = exit_.code
        timings.append((time.perf_counter() - start, what))
        check_outcome(code, out.getvalue(), err.getvalue(), gt, results, what)
        outcomes[code] += 1
        gt.unlink()
        results.unlink()
    print(json.dumps({"outcomes": outcomes, "slowest": max(timings)}))


def test_fuzzed_files_end_in_a_score_or_a_one_line_error(tmp_path: Path) -> None:
    command = [sys.executable, __file__, str(tmp_path)]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the fuzz loop hung on {(tmp_path / 'current_case.txt').read_text()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    seconds, slowest = summary["slowest"]
    scored, errors = summary["outcomes"]["0"], summary["outcomes"]["2"]
    print(f"\n{NUM_CASES} cases: {scored} scored, {errors} errors; slowest {seconds:.3f} s: {slowest}")
    assert seconds < SECONDS_PER_CASE, slowest
    assert scored >= 10 and errors >= 1000  # both outcomes are exercised


def test_the_fuzzer_reaches_the_corruptions_it_claims(tmp_path: Path) -> None:
    # The corruption that hung the CLI, in each file, is among the cases; and the cases
    # are not all one kind of error.
    messages = set()
    main = load_main()
    for seed in range(200):
        gt, results, _ = make_case(seed, tmp_path)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main(["--gt", str(gt), "--results", str(results)])
        messages.add(err.getvalue().split(":")[-1].strip()[:25])
    assert len(messages) > 30
    assert any("add up to" in m for m in messages)


HANG = {"size": [180, 320], "counts": "0i0"}


@pytest.mark.parametrize("where", ["results", "gt", "binary_gt", "binary_results"])
def test_whole_process_cases(where: str, tmp_path: Path) -> None:
    gt, results = base_files()
    if where == "results":
        results[0]["segmentations"][0] = HANG
    elif where == "gt":
        gt["annotations"][0]["segmentations"][1] = HANG
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    if where.startswith("binary"):
        (gt_path if where == "binary_gt" else results_path).write_bytes(bytes(range(256)) * 8)
    command = [sys.executable, str(CLI), "--gt", str(gt_path), "--results", str(results_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    check_outcome(proc.returncode, proc.stdout, proc.stderr, gt_path, results_path, where)
    assert proc.returncode == 2
    if where in ("results", "gt"):
        assert "add up to 25 pixels" in proc.stderr
        assert ("results entry 0" if where == "results" else "annotation 0") in proc.stderr
    else:
        assert "not a JSON text file" in proc.stderr


if __name__ == "__main__":
    run_fuzz(Path(sys.argv[1]))
