"""The output rule of every CLI (minvis.output_paths; README "Your files are safe")."""

import json
import runpy
from pathlib import Path

import pytest

from minvis.output_paths import OutputPathError, StagedOutputs, check_outputs, partial_path

REPO = Path(__file__).resolve().parents[1]


def tool_main(relative: str):
    return runpy.run_path(str(REPO / relative))["main"]


def test_an_output_never_replaces_an_input(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.jpg").write_bytes(b"x")
    for output, input_path in [
        (tmp_path / "a.json", tmp_path / "a.json"),
        (tmp_path / "frames", tmp_path / "frames" / "0.jpg"),  # deleting the folder deletes it
        (tmp_path / "frames" / "0.jpg", tmp_path / "frames"),
    ]:
        with pytest.raises(OutputPathError, match="would replace the input"):
            check_outputs([output], [input_path], overwrite=True)
    assert check_outputs([tmp_path / "b.json"], [tmp_path / "frames"], overwrite=False) == []


def test_an_existing_file_needs_the_flag(tmp_path):
    existing = tmp_path / "metrics.json"
    existing.write_text("{}")
    with pytest.raises(OutputPathError, match="--overwrite"):
        check_outputs([existing], [], overwrite=False)
    assert check_outputs([existing], [], overwrite=True) == [existing]


def test_staged_outputs_replace_only_on_success(tmp_path):
    final = tmp_path / "annotated.mp4"
    final.write_text("old")
    with pytest.raises(KeyboardInterrupt), StagedOutputs([final], replaces=[final]) as staged:
        staged.path(final).write_text("half")
        raise KeyboardInterrupt
    assert final.read_text() == "old" and not partial_path(final).exists()
    with StagedOutputs([final], replaces=[final]) as staged:
        staged.path(final).write_text("new")
    assert final.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]


def test_eval_json_out_never_overwrites_its_inputs_or_a_file(tmp_path, capsys):
    main = tool_main("tools/eval/eval_results.py")
    fixtures = REPO.parent / "shared" / "fixtures"
    gt = tmp_path / "gt.json"
    gt.write_bytes((fixtures / "evalcase_s0.gt.json").read_bytes())
    results = fixtures / "evalcase_s0.results.json"
    before = gt.read_bytes()
    assert main(["--gt", str(gt), "--results", str(results), "--json-out", str(gt), "--overwrite"]) == 2
    assert gt.read_bytes() == before
    out = tmp_path / "metrics.json"
    out.write_text("mine")
    assert main(["--gt", str(gt), "--results", str(results), "--json-out", str(out)]) == 2
    assert out.read_text() == "mine" and "--overwrite" in capsys.readouterr().err
    assert main(["--gt", str(gt), "--results", str(results), "--json-out", str(out), "--overwrite"]) == 0
    assert "AP" in json.loads(out.read_text())


def test_synthetic_video_out_and_subsample_keep_user_files(tmp_path):
    video = tmp_path / "mine.mp4"
    video.write_bytes(b"the user's video")
    make = tool_main("tools/data/make_synthetic_ytvis.py")
    args = ["--root", str(tmp_path / "data"), "--splits", "train=1", "--num-frames", "2"]
    with pytest.raises(SystemExit) as exit_:
        make([*args, "--video-out", str(video)])
    assert exit_.value.code == 2 and video.read_bytes() == b"the user's video"
    subsample = tool_main("tools/data/subsample_annotations.py")
    annotations = tmp_path / "train.json"
    annotations.write_text('{"videos": []}')
    with pytest.raises(SystemExit):
        subsample(["--json", str(annotations), "--ratio", "0.5", "--out", str(annotations), "--overwrite"])
    assert annotations.read_text() == '{"videos": []}'
