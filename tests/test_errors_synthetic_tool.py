"""tools/data/make_synthetic_ytvis.py checks all its arguments before writing anything: a bad
one is one error line and exit code 2, and the dataset is not written (issue 22)."""

import runpy

import pytest
from conftest import REPO

TOOL = REPO / "tools" / "data" / "make_synthetic_ytvis.py"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--video-out", "{tmp}/demo.txt"], "--video-out {tmp}/demo.txt: unknown video extension '.txt'"),
        (["--video-out", "{tmp}"], "--video-out {tmp}: unknown video extension ''"),
        (["--video-out", "{tmp}/folder.mp4"], "--video-out {tmp}/folder.mp4 is a folder"),
        (
            ["--video-out", "{tmp}/file/demo.mp4"],
            "--video-out {tmp}/file/demo.mp4: {tmp}/file is not a writable folder",
        ),
        (["--video-out", "{tmp}/demo.mp4", "--fps", "0"], "--fps must be a positive number, got 0.0"),
        (["--video-out", "{tmp}/demo.mp4", "--fps", "nan"], "--fps must be a positive number, got nan"),
        (["--video-out", "{tmp}/demo.mp4", "--video-frames", "0"], "--video-frames must be >= 1, got 0"),
        (["--video-frames", "-3"], "--video-frames must be >= 1, got -3"),
        (["--num-frames", "0"], "--num-frames must be >= 1, got 0"),
        (["--height", "0"], "--height must be >= 1, got 0"),
        (["--max-objects", "1"], "--max-objects must be >= 2, got 1"),
    ],
    ids=[
        "video-extension",
        "video-no-extension",
        "video-folder",
        "video-under-a-file",
        "fps-0",
        "fps-nan",
        "video-frames-0",
        "video-frames-negative",
        "num-frames-0",
        "height-0",
        "max-objects-1",
    ],
)
def test_bad_arguments_are_one_line_before_anything_is_written(tmp_path, capsys, args, expected):
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "file").write_text("a file")
    root = tmp_path / "syn"
    main = runpy.run_path(str(TOOL))["main"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), "--splits", "train=1", *[a.format(tmp=tmp_path) for a in args]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert f": error: {expected.format(tmp=tmp_path)}" in line
    assert "Traceback" not in err and not root.exists()
