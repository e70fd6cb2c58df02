"""Install the ``mask2former`` and ``minvis`` packages (``pip install --no-build-isolation -e .``).

torch/torchvision and detectron2 are installed beforehand (see README): detectron2 is
not on PyPI under its own name and both need the right build for the machine.

The CPU inference kernel of multi-scale deformable attention
(``mask2former/modeling/pixel_decoder/csrc``) is compiled against the installed torch
when a C++ compiler is there; without it (or without torch at build time) the package
installs anyway and the layer uses the ``torch-ms-deform-attn`` kernel.
"""

import logging
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

logger = logging.getLogger(__name__)

CPU_KERNEL_NAME = "mask2former.modeling.pixel_decoder._ms_deform_attn_cpu"
CPU_KERNEL_SOURCE = "mask2former/modeling/pixel_decoder/csrc/ms_deform_attn_cpu.cpp"

requirements = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


class OptionalBuildExt(build_ext):
    """Builds the extensions, but a failed build only warns: the kernel is an optimisation."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing: install without the kernel
            logger.warning("not building the CPU deformable-attention kernel: %s", exc)


def cpu_kernel_build() -> dict:
    """``ext_modules`` and ``cmdclass`` for the kernel, or nothing when torch is absent."""
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return {}
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    extension = CppExtension(
        CPU_KERNEL_NAME,
        [CPU_KERNEL_SOURCE],
        extra_compile_args=["-O3", *openmp],
        extra_link_args=openmp,
    )

    class BuildKernel(OptionalBuildExt, BuildExtension):
        pass

    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildKernel}}


setup(
    name="minvis",
    version="0.1.0",
    description="MinVIS: video instance segmentation by tracking image-model queries",
    python_requires=">=3.11",
    packages=find_packages(include=["mask2former*", "minvis*"]),
    install_requires=requirements,
    **cpu_kernel_build(),
)
