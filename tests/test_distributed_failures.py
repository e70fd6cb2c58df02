"""A two-machine run (``--num-machines 2`` on this host) whose peer never comes or goes silent, or
whose launcher is stopped: one-line errors within ``--dist-timeout``, and no process left behind.

The arguments, and a worker killed without an error, are checked in this process; the other runs
are real ``train_net.py`` processes.
"""

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO, TINY_CONFIG, TINY_RUN
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm
from machines import last_line, listens, start_machine, started_into, workers

from minvis.engine import launch
from minvis.engine.launch import STOP_GRACE_S, LaunchError

spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

JOIN_TIMEOUT_S = 3  # the peer never starts: nothing to wait for
SILENT_TIMEOUT_S = 15  # both machines start together: room for one to start slower than the other
STARTUP_S = 300  # a launcher and its worker importing torch and detectron2 on a busy machine
EXIT_S = 10  # from an error or a signal to the launcher's exit
POLL_S = 0.2
LONG_RUN = [*TINY_RUN, "SOLVER.MAX_ITER", 100_000]


@pytest.fixture
def launched(tmp_path) -> Iterator[list[subprocess.Popen]]:
    """The launchers a test starts; whatever is left of them and their processes is killed at its end."""
    launchers: list[subprocess.Popen] = []
    yield launchers
    for process in started_into(tmp_path):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    for launcher in launchers:
        launcher.wait()


def wait_until(
    condition: Callable[[], bool], launcher: subprocess.Popen, output_dir: Path, machine_rank: int
) -> float:
    """Poll ``condition()`` while ``launcher`` runs; the time it became true."""
    deadline = time.monotonic() + STARTUP_S
    while not condition():
        assert launcher.poll() is None, last_line(output_dir, machine_rank)
        assert time.monotonic() < deadline, f"machine {machine_rank} not ready after {STARTUP_S} s"
        time.sleep(POLL_S)
    return time.monotonic()


def store_open(launcher: subprocess.Popen, port: int) -> Callable[[], bool]:
    """Whether machine 0's worker listens on ``port``: it waits there for the other machine."""
    return lambda: any(listens(worker, port) for worker in workers(launcher))


def left_behind(output_dir: Path) -> list[psutil.Process]:
    """The processes of the machine(s) started into ``output_dir`` still running EXIT_S after their
    launcher ended (multiprocessing's resource tracker ends when its launcher's pipe closes)."""
    deadline = time.monotonic() + EXIT_S
    while started_into(output_dir) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return started_into(output_dir)


def cli_error(capsys, *argv: str) -> str:
    """The one error line of ``train_net.py ARGV`` (exit status 2)."""
    assert train_net.cli(["--config-file", str(TINY_CONFIG), *argv]) == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_dist_timeout_defaults_to_two_minutes():
    assert train_net.parse_args([]).dist_timeout == 120


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--dist-timeout", "0"], "--dist-timeout must be a positive number of seconds, got 0.0"),
        (
            ["--num-gpus", "2", "--dist-url", "file:///tmp/store"],
            "--dist-url 'file:///tmp/store' is not tcp://HOST:PORT (machine 0's address) or auto",
        ),
        (["--num-gpus", "2", "--dist-url", "tcp://127.0.0.1"], "--dist-url 'tcp://127.0.0.1' is not tcp://"),
        (
            ["--num-machines", "2", "--dist-url", "auto"],
            "--dist-url auto only works on one machine; pass tcp://HOST:PORT of machine 0",
        ),
    ],
)
def test_bad_distributed_arguments_are_one_line(capsys, argv, error):
    assert cli_error(capsys, *argv).startswith(f"train_net.py: error: {error}")


def kill_rank_1() -> None:
    if comm.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_without_an_error_is_one_line():
    with pytest.raises(
        LaunchError, match=r"^machine 0 \(rank 1\) ended by SIGKILL without an error message: "
    ):
        launch(kill_rank_1, 2, use_cuda=False)


def test_a_machine_that_never_joins_fails_in_one_line_within_the_timeout(tiny_datasets, tmp_path, launched):
    """Machine 0 alone waits for machine 1; machine 1 alone cannot reach machine 0."""
    ports = {rank: _find_free_port() for rank in (0, 1)}
    folders = {rank: tmp_path / f"machine{rank}_alone" for rank in (0, 1)}
    timeout = ["--dist-timeout", JOIN_TIMEOUT_S]
    for rank in (0, 1):
        launched.append(start_machine(rank, ports[rank], tiny_datasets, folders[rank], *timeout, *TINY_RUN))
    first, second = launched
    waiting_since = wait_until(store_open(first, ports[0]), first, folders[0], 0)
    assert first.wait(timeout=JOIN_TIMEOUT_S + EXIT_S) == 1
    assert time.monotonic() - waiting_since < JOIN_TIMEOUT_S + EXIT_S
    address = f"tcp://127.0.0.1:{ports[0]}"
    error = last_line(folders[0], 0)
    assert error.startswith(
        f"train_net.py: error: machine 1 (rank 1) did not join {address} within 3 s; check "
    )
    assert all(
        hint in error for hint in ("--num-machines 2", f"--dist-url {address}", "firewall", "--dist-timeout")
    )

    assert second.wait(timeout=STARTUP_S) == 1
    error = last_line(folders[1], 1)
    assert error.startswith(
        f"train_net.py: error: machine 1 (rank 1) could not reach machine 0 at 127.0.0.1:{ports[1]}"
    )
    assert "firewall" in error


def test_a_silent_machine_fails_the_other_within_the_timeout(tiny_datasets, tmp_path, launched):
    """Machine 1's worker is suspended in training: machine 0 fails after --dist-timeout; SIGTERM
    to machine 1's launcher ends the suspended worker (SIGKILL after the grace period)."""
    port = _find_free_port()
    timeout = ["--dist-timeout", SILENT_TIMEOUT_S]
    for rank in (0, 1):
        launched.append(start_machine(rank, port, tiny_datasets, tmp_path, *timeout, *LONG_RUN))
    first, second = launched
    wait_until(lambda: "Starting training" in (tmp_path / "machine0.out").read_text(), first, tmp_path, 0)
    (silent,) = workers(second)
    silent.suspend()
    silent_since = time.monotonic()
    assert first.wait(timeout=SILENT_TIMEOUT_S + EXIT_S) == 1
    assert (
        time.monotonic() - silent_since < SILENT_TIMEOUT_S + EXIT_S
    )  # the message says it waited the timeout
    assert re.fullmatch(
        rf"train_net.py: error: machine 0 \(rank 0\) lost another process of the run: Timed out waiting "
        rf"{SILENT_TIMEOUT_S * 1000}ms .*--dist-timeout, {SILENT_TIMEOUT_S} s\)",
        last_line(tmp_path, 0),
    )

    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=STOP_GRACE_S + EXIT_S) == 128 + signal.SIGTERM
    assert (
        last_line(tmp_path, 1)
        == "train_net.py: error: stopped by SIGTERM: ended machine 1's 1 worker process(es)"
    )
    assert not left_behind(tmp_path)


def test_sigterm_or_sigint_to_a_waiting_launcher_ends_its_worker(tiny_datasets, tmp_path, launched):
    """Machine 0 waiting (default timeout) for a machine 1 that never comes, stopped as a scheduler
    (SIGTERM) or a user (SIGINT) stops it: it exits at once and leaves no process."""
    stops = (signal.SIGTERM, signal.SIGINT)
    ports = {stop: _find_free_port() for stop in stops}
    folders = {stop: tmp_path / stop.name for stop in stops}
    for stop in stops:
        launched.append(start_machine(0, ports[stop], tiny_datasets, folders[stop], *TINY_RUN))
    for stop, launcher in zip(stops, launched, strict=True):
        wait_until(store_open(launcher, ports[stop]), launcher, folders[stop], 0)
    for stop, launcher in zip(stops, launched, strict=True):
        launcher.send_signal(stop)
        assert launcher.wait(timeout=EXIT_S) == 128 + stop
        assert (
            last_line(folders[stop], 0)
            == f"train_net.py: error: stopped by {stop.name}: ended machine 0's 1 worker process(es)"
        )
        assert not left_behind(folders[stop])
