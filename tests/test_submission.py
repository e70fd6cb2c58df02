"""Submission format: RLE encoding, streaming writer, zip and loader with validation."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import encode_mask
from pycocotools import mask as mask_utils

from minvis.ytvis_format import (
    SubmissionWriter,
    YTVISFormatError,
    encode_masks,
    load_results,
    validate_results,
    zip_results,
)
from minvis.ytvis_format.rle import decode_counts_string


def random_masks(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 24, 32)) > 0.6


def entry(video_id: int, score: float = 0.5) -> dict[str, Any]:
    masks = random_masks(3, seed=video_id)
    masks[1] = False
    return {
        "video_id": video_id,
        "category_id": 2,
        "score": score,
        "segmentations": encode_masks(masks),
    }


def test_rle_round_trip() -> None:
    masks = random_masks(4)
    for mask, rle in zip(masks, encode_masks(masks), strict=True):
        assert rle is not None
        assert rle["size"] == [24, 32]
        assert isinstance(rle["counts"], str)
        json.dumps(rle)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert encode_mask(mask) == rle


def test_empty_frame_is_an_all_zero_rle() -> None:
    rle = encode_mask(np.zeros((5, 6), dtype=bool))  # the official format: never null
    assert rle["size"] == [5, 6] and isinstance(rle["counts"], str)
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert decoded.shape == (5, 6) and not decoded.any()
    assert encode_masks(np.zeros((0, 5, 6), dtype=bool)) == []


def test_writer_streams_a_valid_json_list(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    videos = [[entry(1, 0.9), entry(1, 0.1)], [], [entry(3)]]
    with SubmissionWriter(path) as writer:
        for instances in videos:
            writer.write(instances)
    assert writer.num_entries == 3
    assert json.loads(path.read_text()) == [e for instances in videos for e in instances]


def test_writer_with_no_entries_writes_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    SubmissionWriter(path).close()
    assert json.loads(path.read_text()) == []


def test_writer_rejects_a_malformed_entry(tmp_path: Path) -> None:
    bad = {**entry(1), "score": "high"}
    with (
        pytest.raises(YTVISFormatError, match=r"results entry 1 \(video_id 1\): score"),
        SubmissionWriter(tmp_path / "results.json") as writer,
    ):
        writer.write([entry(1), bad])
    with pytest.raises(json.JSONDecodeError):  # an interrupted file is not a submission
        json.loads((tmp_path / "results.json").read_text())


def test_zip_holds_exactly_results_json(tmp_path: Path) -> None:
    entries = [entry(1), entry(2)]
    json_path = tmp_path / "out" / "results.json"
    json_path.parent.mkdir()
    with SubmissionWriter(json_path) as writer:
        writer.write(entries)
    zip_path = zip_results(json_path)
    assert zip_path == json_path.with_name("results.zip")
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["results.json"]
        validate_results(json.loads(archive.read("results.json")))
    assert load_results(zip_path) == entries
    assert load_results(json_path) == entries


def test_zip_without_results_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "results.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sub/results.json", "[]")
    with pytest.raises(YTVISFormatError, match="no results.json at the archive root"):
        load_results(path)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("[{")
    with pytest.raises(YTVISFormatError, match="invalid JSON"):
        load_results(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"video_id": "1"}, r"results entry 1: video_id must be an integer"),
        ({"category_id": None}, r"entry 1 \(video_id 1\): category_id must be an integer"),
        ({"score": float("nan")}, r"entry 1 \(video_id 1\): score must be a finite number"),
        ({"segmentations": []}, r"entry 1 \(video_id 1\): segmentations must be a non-empty"),
        ({"segmentations": [{"size": [24, 32]}]}, r"entry 1 .* frame 0: .*'counts'"),
        ({"segmentations": [None, {"counts": "a"}]}, r"entry 1 .* frame 1: .*'size'"),
        ({"segmentations": [{"size": [24], "counts": "a"}]}, r"frame 0: RLE size must be"),
        ({"segmentations": [{"size": [2, 2], "counts": [4]}]}, r"frame 0: .*compressed"),
        ({"segmentations": [[1, 2, 3]]}, r"frame 0: expected an RLE dict or null"),
    ],
)
def test_malformed_entries_name_the_entry(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps([entry(1), {**entry(1), **change}]))
    with pytest.raises(YTVISFormatError, match=message):
        load_results(path)


def test_missing_keys_are_listed() -> None:
    with pytest.raises(YTVISFormatError, match="results entry 0: missing key.*score"):
        validate_results([{"video_id": 1, "category_id": 1, "segmentations": [None]}])


def column_major_runs(mask: np.ndarray) -> list[int]:
    """Runs of a ``[h, w]`` mask in COCO's order (column-major, starting with zeros), by hand."""
    flat = mask.T.flatten().astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = [0, *edges.tolist(), flat.size]
    runs = [b - a for a, b in zip(bounds, bounds[1:])]
    return runs if flat[0] == 0 else [0, *runs]


def test_counts_strings_decode_to_the_masks_runs() -> None:
    masks = random_masks(6, seed=7)
    masks[0] = True  # starts with ones: a leading empty run
    for mask, rle in zip(masks, encode_masks(masks), strict=True):
        assert decode_counts_string(rle["counts"], "x").tolist() == column_major_runs(mask)


def test_bytes_and_non_ascii_counts() -> None:
    """Bytes counts (pycocotools' own) decode like the same string; a non-ASCII
    character is named, among ASCII strings."""
    from minvis.ytvis_format import decode_counts

    rles = encode_masks(random_masks(3, seed=3))
    strings = [r["counts"] for r in rles]
    as_str = decode_counts(strings, str)
    mixed = decode_counts([strings[0].encode(), *strings[1:]], str)
    assert all(np.array_equal(a, b) for a, b in zip(as_str, mixed, strict=True))
    with pytest.raises(YTVISFormatError, match="^mask 1: RLE counts string has a non-ASCII character"):
        decode_counts([strings[0], strings[1] + "é", strings[2]], lambda i: f"mask {i}")


def _corrupt(counts: str, how: str) -> str:
    if how == "truncated":  # ends inside a value
        return counts[:-1] + chr(ord("0") + 0x20)
    if how == "last run dropped":
        return counts[:-1]
    if how == "extra run":
        return counts + "1"
    if how == "character outside the alphabet":
        return counts[:3] + "~" + counts[4:]
    if how == "one run changed":  # same structure, another value
        i = len(counts) // 2
        c = ord(counts[i]) - ord("0")
        return counts[:i] + chr(ord("0") + (c ^ 0x01)) + counts[i + 1 :]
    raise ValueError(how)


@pytest.mark.parametrize(
    "how",
    ["truncated", "last run dropped", "extra run", "character outside the alphabet", "one run changed"],
)
def test_corrupt_compressed_counts_fail_validation(tmp_path: Path, how: str) -> None:
    good = entry(1)
    rle = good["segmentations"][0]
    bad_rle = {"size": rle["size"], "counts": _corrupt(rle["counts"], how)}
    assert bad_rle["counts"] != rle["counts"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps([good, {**good, "segmentations": [bad_rle, *good["segmentations"][1:]]}]))
    with pytest.raises(YTVISFormatError, match=r"results entry 1 \(video_id 1\) frame 0: RLE (counts|runs)"):
        load_results(path)
    path.write_text(json.dumps([good]))  # the uncorrupted entry passes
    assert load_results(path) == [good]


def test_batched_validation_names_the_bad_rle_among_many() -> None:
    """validate_rles decodes all strings in one pass yet blames exactly the bad one."""
    from minvis.ytvis_format import YTVISFormatError, validate_rles

    rng = np.random.default_rng(0)
    masks = rng.random((4000, 5, 7)) < 0.5  # more RLEs than one decoding chunk
    rles = [
        {"size": [5, 7], "counts": r["counts"].decode()}
        for r in mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    ]
    validate_rles(rles, lambda i: f"mask {i}")
    for bad in (0, 2047, 2048, 3999):
        corrupt = [dict(r) for r in rles]
        corrupt[bad]["counts"] = corrupt[bad]["counts"] + "1"  # one run too many
        with pytest.raises(YTVISFormatError, match=rf"^mask {bad}: RLE runs add up to"):
            validate_rles(corrupt, lambda i: f"mask {i}")


@pytest.mark.parametrize(
    "counts, valid",
    [
        (np.array([3, 3], dtype=np.uint8), True),
        (np.array([6], dtype=np.int32), True),
        (np.array([0, 6], dtype=np.uint32), True),
        (np.array([2**64 - 1, 7], dtype=np.uint64), False),  # wraps negative in int64: still refused
        (np.array([2**40, 0], dtype=np.int64), False),
        (np.array([-1, 7], dtype=np.int64), False),
        (np.array([2, 3], dtype=np.int64), False),  # 5 pixels, not 6
    ],
)
def test_uncompressed_array_counts(counts: np.ndarray, valid: bool) -> None:
    from minvis.ytvis_format import validate_rles

    rles = [{"size": [2, 3], "counts": [6]}, {"size": [2, 3], "counts": counts}]  # mixed with a list
    if valid:
        validate_rles(rles, str, compressed_only=False)
    else:
        with pytest.raises(YTVISFormatError, match="^1: RLE"):
            validate_rles(rles, str, compressed_only=False)
