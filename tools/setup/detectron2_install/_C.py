"""Stand-in for detectron2's compiled extension in a Python-only install.

detectron2 0.6 imports ``detectron2._C`` at module level in a few places
(deformable convolution, rotated boxes, fast COCO eval). MinVIS needs none of
these ops, so the install built from the ``pb1-detectron2`` source release ships
this module instead of the C++/CUDA library: importing works, the environment
report (``collect_env_info``) works, and *calling* any compiled op raises an
error that names the op and the way to get it.
"""

from typing import NoReturn


class CompiledOpUnavailableError(NotImplementedError):
    """Raised when code calls an op of detectron2's C++/CUDA extension."""


def get_compiler_version() -> str:
    return "none: detectron2 was installed without its C++/CUDA extension"


def get_cuda_version() -> str:
    return "none: detectron2 was installed without its C++/CUDA extension"


def has_cuda() -> bool:
    return False


def __getattr__(op_name: str) -> NoReturn:
    if op_name.startswith("__"):
        raise AttributeError(op_name)
    raise CompiledOpUnavailableError(
        f"detectron2 compiled op '{op_name}' is unavailable: this detectron2 was installed "
        "from the pb1-detectron2 source release without its C++/CUDA extension. MinVIS does "
        f"not need it; to use '{op_name}', install detectron2 from its git repository "
        "(python tools/setup/install_detectron2.py --source git --force)."
    )
