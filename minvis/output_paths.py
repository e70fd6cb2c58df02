"""The output rule shared by every command-line tool (README, "Your files are safe").

1. An output never replaces an input, not even with ``--overwrite``.
2. An existing file or folder at an output name is replaced only with ``--overwrite``.
3. Outputs are written as ``NAME.partial.EXT`` and renamed into place only when the run
   succeeds; a failed or interrupted run (SIGTERM included) removes them.

Standard library only: the light tools (the eval CLI) use it too.
"""

import os
import shutil
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Self

PARTIAL_TAG = ".partial"


class OutputPathError(Exception):
    """An output that would replace an input or an existing file (one-line message)."""


def overlaps(output: str | os.PathLike, input_path: str | os.PathLike) -> bool:
    """True if writing or deleting ``output`` would touch ``input_path``: the same path
    (links resolved), or one inside the other."""
    out, inp = Path(output).expanduser().resolve(), Path(input_path).expanduser().resolve()
    return out == inp or out in inp.parents or inp in out.parents


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    *,
    overwrite: bool,
    flag: str = "--overwrite",
) -> list[Path]:
    """Apply rules 1 and 2 (:class:`OutputPathError`); return the outputs that exist (and may be replaced)."""
    outputs, inputs = [Path(p) for p in outputs], [Path(p) for p in inputs]
    for output in outputs:
        for input_path in inputs:
            if overlaps(output, input_path):
                raise OutputPathError(
                    f"the output {output} would replace the input {input_path}; "
                    "choose another output location (an input is never overwritten)"
                )
    existing = [p for p in outputs if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing)
        raise OutputPathError(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; "
            f"pass {flag} to replace {'it' if len(existing) == 1 else 'them'} or choose another output"
        )
    return existing


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name of an output: ``annotated.mp4`` -> ``annotated.partial.mp4``."""
    path = Path(path)
    return path.with_name(f"{path.stem}{PARTIAL_TAG}{path.suffix}")


def remove_path(path: Path) -> None:
    """Delete a file, link or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class StagedOutputs:
    """Rule 3: ``with StagedOutputs([final, ...], replaces=[...]) as staged:`` write to
    ``staged.path(final)``; on success the old ``replaces`` are removed and the partial
    outputs renamed to their final names, on an error or interrupt the partial outputs
    are removed and the old ones stay as they were."""

    def __init__(self, finals: Iterable[str | os.PathLike], replaces: Iterable[Path] = ()) -> None:
        self.finals = [Path(p) for p in finals]
        self.replaces = list(replaces)
        for final in self.finals:
            remove_path(partial_path(final))  # left by a run killed with SIGKILL

    def path(self, final: str | os.PathLike) -> Path:
        return partial_path(final)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            for final in self.finals:
                remove_path(partial_path(final))
            return
        for old in self.replaces:
            remove_path(old)
        for final in self.finals:
            staged = partial_path(final)
            if staged.exists():
                staged.replace(final)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signal.Signals(signum).name}")


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (so ``finally`` and
    ``with`` cleanup runs) instead of ending the process on the spot."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
