"""Multi-process launch on GPUs (NCCL) or CPUs (gloo), on one machine or several.

detectron2 0.6's ``launch`` asserts CUDA for more than one process, waits 30 minutes for a
missing machine and leaves its workers running when it is stopped. This launcher spawns the
processes for both backends, sets up detectron2's per-machine process group, and:

- meets the processes at machine 0's TCP store under its own keys, so a machine that does not
  join within the timeout (or was started for another number of processes) is named;
- gives collectives the same timeout and reports a lost peer in one line;
- on SIGTERM or SIGINT, ends its workers and their data-loader processes, then raises.
"""

import contextlib
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.queues import SimpleQueue
from urllib.parse import urlsplit

import psutil
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_S = 5.0  # a process still alive this long after SIGTERM gets SIGKILL
SIGNAL_EXIT_BASE = 128  # the shell's exit status of a process ended by signal N is 128 + N
JOIN_KEY = "minvis/joined/{}"  # set by each rank to the number of processes it was started for
# gloo's transport errors name its source file: "[.../gloo/transport/tcp/pair.cc:545] Read error ..."
GLOO_TRANSPORT_ERROR = re.compile(r"/gloo/transport/\S+\] (.+?)(?:\. |$)")


class LaunchError(RuntimeError):
    """A multi-process run that cannot start or go on (one line); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class _StopSignal(BaseException):  # not an Exception: nothing on the way may swallow it
    """Raised in the launcher by SIGTERM or SIGINT."""


@dataclass(frozen=True)
class _Job:
    main_func: Callable
    args: tuple
    procs_per_machine: int
    num_machines: int
    machine_rank: int
    host: str
    port: int
    timeout: timedelta
    use_cuda: bool

    @property
    def world_size(self) -> int:
        return self.num_machines * self.procs_per_machine

    def who(self, ranks: Iterable[int]) -> str:
        """'machine 1 (rank 2, 3)': the machines of ``ranks``."""
        ranks = sorted(ranks)
        machines = sorted({rank // self.procs_per_machine for rank in ranks})
        return f"machine {', '.join(map(str, machines))} (rank {', '.join(map(str, ranks))})"

    def checks(self) -> str:
        """What to check when processes do not meet."""
        return (
            f"check that every machine was started with --num-machines {self.num_machines}, its own "
            f"--machine-rank and --dist-url tcp://{self.host}:{self.port} naming machine 0, and that "
            f"port {self.port} is open between them (firewall); --dist-timeout sets the wait"
        )


def tcp_address(dist_url: str, num_machines: int) -> tuple[str, int]:
    """``(host, port)`` of ``tcp://HOST:PORT``; ``auto``: a free port of this machine."""
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT of machine 0")
        return "127.0.0.1", _find_free_port()
    url = urlsplit(dist_url)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "tcp" or not url.hostname or port is None:
        raise ValueError(f"--dist-url {dist_url!r} is not tcp://HOST:PORT (machine 0's address) or auto")
    return url.hostname, port


def launch(
    main_func: Callable,
    num_procs_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    use_cuda: bool = True,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_procs_per_machine`` processes on each machine.

    Call it from the main thread (it handles SIGTERM and SIGINT while the processes run)."""
    if num_machines * num_procs_per_machine == 1:
        main_func(*args)
        return
    if use_cuda and num_procs_per_machine > torch.cuda.device_count():
        raise LaunchError(
            f"{num_procs_per_machine} processes per machine but {torch.cuda.device_count()} CUDA devices"
        )
    host, port = tcp_address(dist_url or "auto", num_machines)
    job = _Job(
        main_func, args, num_procs_per_machine, num_machines, machine_rank, host, port, timeout, use_cuda
    )
    errors = mp.get_context("spawn").SimpleQueue()
    children_before = set(multiprocessing.active_children())
    previous_handlers = {signum: signal.signal(signum, _raise_stop_signal) for signum in STOP_SIGNALS}
    try:
        mp.spawn(_worker, nprocs=num_procs_per_machine, args=(job, errors), daemon=False)
    except _StopSignal as stop:
        for signum in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        workers = set(multiprocessing.active_children()) - children_before
        _end_process_trees(workers)
        name = signal.Signals(stop.args[0]).name
        raise LaunchError(
            f"stopped by {name}: ended machine {machine_rank}'s {len(workers)} worker process(es)",
            exit_code=SIGNAL_EXIT_BASE + stop.args[0],
        ) from None
    except mp.ProcessRaisedException:
        if errors.empty():
            raise
        raise errors.get() from None  # the failed process's own exception, not its traceback text
    except mp.ProcessExitedException as error:
        rank = machine_rank * num_procs_per_machine + error.error_index
        ending = error.signal_name or f"exit code {error.exit_code}"
        raise LaunchError(
            f"{job.who([rank])} ended by {ending} without an error message: killed (out of memory?), "
            f"crashed, or ended by NCCL after a collective waited --dist-timeout "
            f"({timeout.total_seconds():g} s); see its log"
        ) from None
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def _raise_stop_signal(signum: int, _frame) -> None:
    raise _StopSignal(signum)


def _end_process_trees(processes: Iterable[multiprocessing.Process]) -> None:
    """SIGTERM ``processes`` and their descendants (data-loader workers); SIGKILL what is left
    after STOP_GRACE_S (a process blocked in C++ cannot run a Python handler, but SIGTERM's
    default action needs none)."""
    tree: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(process.pid)
            tree += [root, *root.children(recursive=True)]
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=STOP_GRACE_S)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)


def _worker(local_rank: int, job: _Job, errors: SimpleQueue) -> None:
    rank = job.machine_rank * job.procs_per_machine + local_rank
    try:
        store = _join(job, rank)
        dist.init_process_group(
            "nccl" if job.use_cuda else "gloo",
            store=store,
            rank=rank,
            world_size=job.world_size,
            timeout=job.timeout,
        )
        for machine in range(job.num_machines):
            first = machine * job.procs_per_machine
            group = dist.new_group(list(range(first, first + job.procs_per_machine)))
            if machine == job.machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
        if job.use_cuda:
            torch.cuda.set_device(local_rank)
        else:  # share the machine's cores between its processes instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.procs_per_machine))
        comm.synchronize()
        job.main_func(*job.args)
    except Exception as error:
        shown = _lost_peer(job, rank, error) or error
        with contextlib.suppress(Exception):  # an exception that cannot be pickled stays a traceback
            errors.put(shown)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _join(job: _Job, rank: int) -> dist.TCPStore:
    """Meet every rank at machine 0's TCP store within ``job.timeout``; a LaunchError names the
    machines that did not come or were started for another number of processes."""
    try:
        is_master = rank == 0
        store = dist.TCPStore(
            job.host, job.port, job.world_size, is_master, timeout=job.timeout, wait_for_workers=False
        )
    except dist.DistNetworkError as error:
        action = f"listen on port {job.port}" if is_master else f"reach machine 0 at {job.host}:{job.port}"
        raise LaunchError(f"{job.who([rank])} could not {action} ({error}); {job.checks()}") from None
    keys = [JOIN_KEY.format(other) for other in range(job.world_size)]
    store.set(keys[rank], str(job.world_size))
    try:
        store.wait(keys)
    except dist.DistStoreError:
        missing = [other for other, key in enumerate(keys) if not store.check([key])]
        raise LaunchError(
            f"{job.who(missing)} did not join tcp://{job.host}:{job.port} within "
            f"{job.timeout.total_seconds():g} s; {job.checks()}"
        ) from None
    for other, key in enumerate(keys):
        started_for = int(store.get(key))
        if started_for != job.world_size:
            raise LaunchError(
                f"{job.who([other])} was started for {started_for} processes in all, {job.who([rank])} for "
                f"{job.world_size}: give every machine the same --num-machines and --num-gpus"
            )
    return store


def _lost_peer(job: _Job, rank: int, error: Exception) -> LaunchError | None:
    """``error`` as a one-line LaunchError if it is a failed collective or store call."""
    transport = GLOO_TRANSPORT_ERROR.search(str(error))
    if transport is None and not isinstance(error, dist.DistError):
        return None
    detail = transport.group(1) if transport else str(error).splitlines()[0]
    return LaunchError(
        f"{job.who([rank])} lost another process of the run: {detail}; see the other machines' logs "
        f"(a silent process is waited for --dist-timeout, {job.timeout.total_seconds():g} s)"
    )
