"""The machine a benchmark ran on, for the header of its table."""

import os
import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what ``platform`` knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: str) -> str:
    """CPU, memory, accelerator, versions and the load before the run, in one line."""
    import psutil  # here, so that the metric benchmarks' header needs neither
    import torch

    accelerator = torch.cuda.get_device_name() if device.startswith("cuda") else "no GPU used"
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GB RAM, "
        f"{accelerator}; torch {torch.__version__}, Python {platform.python_version()}; "
        f"load average before the run {os.getloadavg()[0]:.1f}"
    )
