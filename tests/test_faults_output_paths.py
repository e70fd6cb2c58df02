"""Faults against the output rule's primitives (minvis.output_paths, issue 22): a full disk, a
kill mid-write and a second writer never cost a previous output; links of inputs are inputs.

The helpers here (a subprocess with a file-size limit, the one-line error) serve the other
tests/test_faults_*.py files too."""

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minvis.output_paths import (
    LOCK_NAME,
    OutputLockedError,
    OutputPathError,
    OutputWriteError,
    StagedOutputs,
    atomic_output,
    check_outputs,
    lock_output_dir,
)

REPO = Path(__file__).resolve().parents[1]


def run_python(
    args: list[str | Path], *, max_file_bytes: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository; with ``max_file_bytes``, writing a file past that
    size fails with EFBIG, as on a full disk (SIGXFSZ ignored, so ``write`` reports it)."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, preexec_fn=None if max_file_bytes is None else limit_file_size,
    )  # fmt: skip


def error_line(stderr: str) -> str:
    """The one line of a CLI's error (``...error: ...``), with no traceback."""
    lines = [line for line in stderr.splitlines() if "error: " in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- writing


def test_a_failed_write_keeps_the_previous_file_and_names_the_output(tmp_path):
    final = tmp_path / "metrics.json"
    final.write_text('{"AP": 1}')
    with pytest.raises(OutputWriteError, match=f"cannot write {final}: No space left on device"):
        with atomic_output(final) as temporary:
            temporary.write_text('{"AP": ')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write() failing
    assert final.read_text() == '{"AP": 1}' and names(tmp_path) == ["metrics.json"]


def test_an_output_failing_its_check_is_not_moved_into_place(tmp_path):
    final = tmp_path / "results.json"
    final.write_text("[]")
    with pytest.raises(OutputWriteError, match=f"cannot write {final}: the file written is not valid JSON"):
        with atomic_output(final) as temporary:
            temporary.write_text("[{")
    archive = tmp_path / "results.zip"
    with pytest.raises(OutputWriteError, match=f"cannot write {archive}: the archive written is not"):
        with atomic_output(archive) as temporary:
            temporary.write_bytes(b"PK\x03\x04 cut short")
    assert final.read_text() == "[]" and names(tmp_path) == ["results.json"]


def test_outputs_are_replaced_together_or_not_at_all(tmp_path):
    video, results = tmp_path / "annotated.mp4", tmp_path / "results.json"
    video.write_text("old video")
    results.write_text("[]")
    with pytest.raises(OutputWriteError, match=f"cannot write {video}: unplayable"):
        with StagedOutputs([video, results], replaces=[video, results]) as staged:
            staged.path(video).write_text("new video")
            staged.path(results).write_text('[{"new": 1}]')
            staged.checks[video] = lambda path: "unplayable"
    assert video.read_text() == "old video" and results.read_text() == "[]"
    # An error reading an input is not a write error: it passes unchanged.
    with pytest.raises(FileNotFoundError), StagedOutputs([results]) as staged:
        staged.path(results).write_text("[1]")
        open(tmp_path / "missing-input.json")
    assert names(tmp_path) == ["annotated.mp4", "results.json"]


WRITER = """
import sys, time
from pathlib import Path
from minvis.output_paths import atomic_output
with atomic_output(Path(sys.argv[1])) as temporary, open(temporary, "w") as f:
    f.write("new, ")
    f.flush()
    while True:  # until killed
        time.sleep(0.01)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file(tmp_path):
    final = tmp_path / "val.json"
    final.write_text("[]")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final)], cwd=REPO)
    partial = tmp_path / "val.partial.json"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert final.read_text() == "[]" and partial.exists()
    with atomic_output(final) as temporary:  # the rerun is not blocked by the leftover
        temporary.write_text("[1]")
    assert final.read_text() == "[1]" and names(tmp_path) == ["val.json"]


def test_a_full_disk_in_a_subprocess_keeps_the_previous_file(tmp_path):
    final = tmp_path / "train.json"
    final.write_text('{"videos": []}')
    script = f"""
        from minvis.output_paths import atomic_output
        with atomic_output({str(final)!r}) as temporary:
            temporary.write_text("[" + "0, " * 100_000 + "0]")
    """
    done = run_python(["-c", textwrap.dedent(script)], max_file_bytes=4096)
    assert done.returncode == 1
    assert f"OutputWriteError: cannot write {final}: File too large" in done.stderr
    assert final.read_text() == '{"videos": []}' and names(tmp_path) == ["train.json"]


# ---------------------------------------------------------------------------- one writer per folder

HOLDER = """
import sys, time
from minvis.output_paths import lock_output_dir
with lock_output_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_subprocess(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(tmp_path):
    folder = tmp_path / "out"
    holder = hold_in_subprocess(folder)
    try:
        with pytest.raises(OutputLockedError) as refused, lock_output_dir(folder):
            pass
        message = str(refused.value)
        assert message == (
            f"{folder} is in use by another run (pid {holder.pid}); "
            "wait for it to finish or choose another output folder"
        )
        assert isinstance(refused.value, OutputPathError)  # what the CLIs report in one line
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the next run takes it, and leaves no lock file.
    with lock_output_dir(folder):
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert names(folder) == []


def test_one_process_may_nest_its_own_lock(tmp_path):
    with lock_output_dir(tmp_path), lock_output_dir(tmp_path / "."):
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


# ---------------------------------------------------------------------------- links


def test_hard_and_symbolic_links_of_an_input_are_that_input(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    (tmp_path / "hard.json").hardlink_to(gt)
    (tmp_path / "soft.json").symlink_to(gt)
    (tmp_path / "data").mkdir()
    (tmp_path / "linked_dir").symlink_to(tmp_path / "data")
    (tmp_path / "data" / "frame.jpg").write_bytes(b"x")
    for output, input_path in [
        (tmp_path / "hard.json", gt),
        (tmp_path / "soft.json", gt),
        (gt, tmp_path / "hard.json"),
        (tmp_path / "linked_dir", tmp_path / "data" / "frame.jpg"),
        (tmp_path / "linked_dir" / "frame.jpg", tmp_path / "data" / "frame.jpg"),
    ]:
        with pytest.raises(OutputPathError, match="would replace the input"):
            check_outputs([output], [input_path], overwrite=True)
    assert check_outputs([tmp_path / "other.json"], [gt], overwrite=False) == []
