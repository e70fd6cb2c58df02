"""Faults against the small CLIs (issue 22): tools/eval/eval_results.py,
tools/data/subsample_annotations.py and tools/data/split_dataset.py keep their previous outputs
on a full disk, refuse outputs that are links of their inputs, and check archive members."""

import json
import runpy
import zipfile
from pathlib import Path

import pytest
from test_faults_output_paths import error_line, names, run_python

from minvis.ytvis_format import YTVISFormatError, read_results

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
GT, RESULTS = FIXTURES / "evalcase_s0.gt.json", FIXTURES / "evalcase_s0.results.json"
EVAL = REPO / "tools" / "eval" / "eval_results.py"
SUBSAMPLE = REPO / "tools" / "data" / "subsample_annotations.py"
SPLIT = REPO / "tools" / "data" / "split_dataset.py"
LINKS = ["hardlink_to", "symlink_to"]


def run_main(tool: Path, capsys, *args: str | Path) -> tuple[int, str]:
    """The tool's ``main(ARGS)`` in this process: (exit code, stderr)."""
    try:
        code = runpy.run_path(str(tool))["main"]([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def annotations(num_videos: int = 6) -> dict:
    videos = [
        {"id": i, "length": 4, "height": 4, "width": 6, "file_names": [f"v{i}/{t}.jpg" for t in range(4)]}
        for i in range(1, num_videos + 1)
    ]
    tracks = [
        {"id": i, "video_id": i, "category_id": 1, "iscrowd": 0, "segmentations": [[1, 2, 3]] * 4,
         "bboxes": [[0, 0, 1, 1]] * 4, "areas": [1.0] * 4}
        for i in range(1, num_videos + 1)
    ]  # fmt: skip
    return {"videos": videos, "annotations": tracks, "categories": [{"id": 1, "name": "cat"}]}


@pytest.fixture()
def gt(tmp_path) -> Path:
    path = tmp_path / "gt.json"
    path.write_bytes(GT.read_bytes())
    return path


@pytest.fixture()
def train_json(tmp_path) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(annotations()))
    return path


# ---------------------------------------------------------------------------- a full disk


def test_eval_json_out_on_a_full_disk_keeps_the_previous_metrics(gt, tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text('{"AP": 0.5}')
    args = [EVAL, "--gt", gt, "--results", RESULTS, "--json-out", out, "--overwrite"]
    done = run_python(args, max_file_bytes=64)
    assert done.returncode == 2
    assert error_line(done.stderr) == f"eval_results: error: cannot write {out}: File too large"
    assert out.read_text() == '{"AP": 0.5}' and names(tmp_path) == ["gt.json", "metrics.json"]


def test_subsample_on_a_full_disk_keeps_the_previous_output(train_json, tmp_path):
    out = tmp_path / "sub.json"
    out.write_text("previous")
    args = [SUBSAMPLE, "--json", train_json, "--ratio", "0.5", "--out", out, "--overwrite"]
    done = run_python(args, max_file_bytes=256)
    assert done.returncode == 2
    assert error_line(done.stderr).endswith(f"error: cannot write {out}: File too large")
    assert out.read_text() == "previous" and names(tmp_path) == ["sub.json", "train.json"]


def test_split_on_a_full_disk_keeps_both_previous_files(train_json, tmp_path):
    out_dir = tmp_path / "splits"
    out_dir.mkdir()
    for name in ("train.json", "val.json"):
        (out_dir / name).write_text(f"previous {name}")
    done = run_python([SPLIT, "--json", train_json, "--out-dir", out_dir, "--overwrite"], max_file_bytes=256)
    assert done.returncode == 2
    both = f"{out_dir / 'train.json'}, {out_dir / 'val.json'}"  # replaced together: neither is
    assert error_line(done.stderr).endswith(f"error: cannot write {both}: File too large")
    assert [(out_dir / n).read_text() for n in names(out_dir)] == ["previous train.json", "previous val.json"]


# ---------------------------------------------------------------------------- links of inputs


@pytest.mark.parametrize("link", LINKS)
def test_eval_json_out_may_not_be_a_link_of_the_gt(gt, tmp_path, capsys, link):
    out = tmp_path / "metrics.json"
    getattr(out, link)(gt)
    code, err = run_main(EVAL, capsys, "--gt", gt, "--results", RESULTS, "--json-out", out, "--overwrite")
    assert code == 2 and "would replace the input" in error_line(err)
    assert gt.read_bytes() == GT.read_bytes()


@pytest.mark.parametrize("link", LINKS)
def test_subsample_out_may_not_be_a_link_of_its_input(train_json, tmp_path, capsys, link):
    out = tmp_path / "sub.json"
    getattr(out, link)(train_json)
    before = train_json.read_bytes()
    args = ["--json", train_json, "--ratio", "0.5", "--out", out, "--overwrite"]
    code, err = run_main(SUBSAMPLE, capsys, *args)
    assert code == 2 and "would replace the input" in error_line(err)
    assert train_json.read_bytes() == before


@pytest.mark.parametrize("link", LINKS)
def test_split_out_dir_may_not_hold_a_link_of_its_input(train_json, tmp_path, capsys, link):
    out_dir = tmp_path / "splits"
    out_dir.mkdir()
    getattr(out_dir / "train.json", link)(train_json)
    (tmp_path / "linked").symlink_to(tmp_path)  # the input's own folder under another name
    before = train_json.read_bytes()
    for out in (out_dir, tmp_path / "linked"):
        code, err = run_main(SPLIT, capsys, "--json", train_json, "--out-dir", out, "--overwrite")
        assert code == 2 and "would replace the input" in error_line(err)
        assert train_json.read_bytes() == before


# ---------------------------------------------------------------------------- archive members


def test_an_encrypted_member_is_one_clear_line(tmp_path, capsys):
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("results.json", "[]")
    # Set the flag a password-protected zip gives its members (zipfile writes none).
    data = bytearray(archive.read_bytes())
    data[data.find(b"PK\x03\x04") + 6] |= 0x1  # local header: general purpose flags
    data[data.find(b"PK\x01\x02") + 8] |= 0x1  # central directory
    archive.write_bytes(data)
    code, err = run_main(EVAL, capsys, "--gt", GT, "--results", archive)
    assert code == 2
    assert error_line(err) == (
        f"eval_results: error: {archive}: results.json is encrypted; zip it without a password"
    )


def test_an_archive_of_many_files_is_refused(tmp_path):
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("results.json", "[]")
        for i in range(100):
            zf.writestr(f"junk/{i}.txt", "")
    with pytest.raises(YTVISFormatError, match=r"results.zip: 101 files in the archive \(at most 16"):
        read_results(archive)


def test_a_member_inflating_past_the_bound_is_refused_before_it_is_inflated(tmp_path):
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("results.json", "[" + " " * 10_000_000 + "]")
    assert archive.stat().st_size < 50_000
    with pytest.raises(YTVISFormatError, match="results.json inflates to more than 1000000 bytes"):
        read_results(archive, max_bytes=1_000_000)
    assert read_results(archive, max_bytes=20_000_000) == []
