"""Multi-process launch on GPUs (detectron2's NCCL launcher) or on CPUs (gloo).

detectron2 0.6's ``launch`` asserts CUDA for more than one process, so on CPUs the processes
are spawned here, joined by gloo, with detectron2's per-machine process group set up.
"""

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.queues import SimpleQueue

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


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
    """Run ``main_func(*args)`` in ``num_procs_per_machine`` processes on each machine."""
    if use_cuda:
        detectron2_launch(
            main_func, num_procs_per_machine, num_machines, machine_rank, dist_url, args, timeout
        )
        return
    world_size = num_machines * num_procs_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(
            _cpu_worker,
            nprocs=num_procs_per_machine,
            args=(
                main_func,
                world_size,
                num_procs_per_machine,
                machine_rank,
                dist_url,
                args,
                timeout,
                errors,
            ),
            daemon=False,
        )
    except mp.ProcessRaisedException:
        if errors.empty():
            raise
        raise errors.get() from None  # the failed process's own exception, not its traceback text


def _cpu_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_procs_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
    errors: SimpleQueue,
) -> None:
    global_rank = machine_rank * num_procs_per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    num_machines = world_size // num_procs_per_machine
    for machine in range(num_machines):
        ranks = list(range(machine * num_procs_per_machine, (machine + 1) * num_procs_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    # Share the machine's cores between the processes instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_procs_per_machine))
    comm.synchronize()
    try:
        main_func(*args)
    except Exception as error:
        with contextlib.suppress(Exception):  # an exception that cannot be pickled stays a traceback
            errors.put(error)
        raise
    finally:
        dist.destroy_process_group()
