"""The ground-truth reader: the same values as json.load, count lists as arrays, the standard
errors for everything its fast path does not take."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minvis.ytvis_format import YTVISFormatError, read_annotations_json


def _ground_truth(counts: list[Any], extra: str = "") -> str:
    segmentations = ", ".join("null" if c is None else f'{{"size": [2, 3], "counts": {c}}}' for c in counts)
    video = f'{{"id": 1, "height": 2, "width": 3, "length": {len(counts)}}}'
    annotation = f'{{"id": 5, "video_id": 1, "category_id": 1, "segmentations": [{segmentations}]}}'
    return f'{{"videos": [{video}], {extra}"annotations": [{annotation}]}}'


def _plain(value: object) -> object:
    """``value`` with arrays as lists, to compare with json.load."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.tolist() if isinstance(value, np.ndarray) else value


def _read(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gt.json"
    path.write_text(text)
    return read_annotations_json(path)


def _counts(document: Any) -> list[object]:
    return [s and s["counts"] for s in document["annotations"][0]["segmentations"]]


@pytest.mark.parametrize(
    "lists",
    [
        ["[6]", "[0, 6]", None, "[1,2,3]"],
        ["[ 1 ,\n 5\t]", "[\r\n6\n]"],
        ["[4294967295]", "[0]"],  # the largest run; a zero
        ["[" + ", ".join(["1"] * 5000) + "]", "[2, 4]"],  # long lists (more than one numpy batch below)
    ],
)
def test_count_lists_become_uint32_arrays(tmp_path: Path, lists: list[str | None]) -> None:
    text = _ground_truth(lists, '"categories": [{"id": 1, "name": "counts: [1]"}], ')
    document = _read(tmp_path, text)
    assert _plain(document) == json.loads(text)
    for counts in _counts(document):
        assert counts is None or (isinstance(counts, np.ndarray) and counts.dtype == np.uint32)


def test_batches_split_lists_correctly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minvis.ytvis_format import annotations_json

    monkeypatch.setattr(annotations_json, "_BATCH_BYTES", 8)
    lists = [f"[{', '.join(str(i * 7 + k) for k in range(i % 4 + 1))}]" for i in range(40)]
    text = _ground_truth(lists)
    assert _plain(_read(tmp_path, text)) == json.loads(text)


@pytest.mark.parametrize(
    "lists, extra",
    [
        (["[1, -2]", "[6]"], ""),  # negative: a list for the validation to report
        (["[1.5, 4.5]"], ""),
        (["[1e3]"], ""),
        (["[1, [2]]"], ""),  # nested
        (['[1, {"counts": [2]}]'], ""),
        (["[]"], ""),
        (["[4294967296]"], ""),  # beyond a run
        (["[123456789012345678901234567890]"], ""),
        (["[6]", '"\\u0000"'], ""),  # the marker itself in the file
        (["[6]"], '"info": {"counts": [1, 2]}, '),  # a count list outside the annotations
        (["[6]"], '"info": {"x\\"counts": [1, 2]}, '),
        (['[1, "a]"]'], ""),
    ],
)
def test_anything_else_is_read_as_json_reads_it(tmp_path: Path, lists: list[str], extra: str) -> None:
    text = _ground_truth(lists, extra)
    assert _plain(_read(tmp_path, text)) == json.loads(text)


@pytest.mark.parametrize("counts", ["[1,,2]", "[1 2]", "[1, 2,]", "[,1]", "[01, 5]", "[1, 2"])
def test_invalid_json_is_reported_as_json_reports_it(tmp_path: Path, counts: str) -> None:
    text = _ground_truth([counts])
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(YTVISFormatError, match=r"gt\.json: invalid JSON") as error:
        _read(tmp_path, text)
    assert str(expected.value) in str(error.value)
