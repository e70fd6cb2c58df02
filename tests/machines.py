"""Test helper: ``train_net.py`` on the tiny config as one machine of a multi-machine run on this host."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import psutil
from conftest import REPO, TINY_CONFIG

NUM_MACHINES = 2
MARK = "MINVIS_TEST_MACHINE"  # the output folder, in the environment of a started machine's processes


def start_machine(
    machine_rank: int, port: int, datasets: Path, output_dir: Path, *args: object
) -> subprocess.Popen:
    """``train_net.py --num-gpus 1 --num-machines 2 --machine-rank R --dist-url tcp://127.0.0.1:PORT``
    with one OpenMP thread; stdout and stderr go to ``output_dir/machineR.{out,err}`` (a pipe that
    nobody reads would block the training log)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1", MARK: str(output_dir)}
    command = [
        *[sys.executable, str(REPO / "train_net.py"), "--config-file", str(TINY_CONFIG)],
        *["--num-gpus", "1", "--num-machines", str(NUM_MACHINES), "--machine-rank", str(machine_rank)],
        *["--dist-url", f"tcp://127.0.0.1:{port}", *map(str, args), "OUTPUT_DIR", str(output_dir)],
    ]
    log = output_dir / f"machine{machine_rank}"
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)


def stderr_of(output_dir: Path, machine_rank: int) -> str:
    return (output_dir / f"machine{machine_rank}.err").read_text()


def last_line(output_dir: Path, machine_rank: int) -> str:
    return stderr_of(output_dir, machine_rank).splitlines()[-1]


def workers(launcher: subprocess.Popen) -> list[psutil.Process]:
    """The launcher's worker processes: its children started by multiprocessing's spawn."""
    found = []
    for child in psutil.Process(launcher.pid).children():
        with contextlib.suppress(psutil.Error):  # a short-lived child (a tool that detectron2 runs) ended
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
    return found


def listens(process: psutil.Process, port: int) -> bool:
    """Whether ``process`` listens on ``port`` (rank 0 hosting the rendezvous store)."""
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections())
    except psutil.NoSuchProcess:
        return False


def started_into(folder: Path) -> list[psutil.Process]:
    """The running processes (zombies waiting to be reaped have ended) that ``start_machine`` started
    into ``folder`` or a folder below it, with all their descendants (they inherit the mark)."""
    running = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # ended meanwhile, or another user's
            mark = process.environ().get(MARK)
            if mark and Path(mark).is_relative_to(folder) and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running
