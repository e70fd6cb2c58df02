"""The output rule shared by every command-line tool and writer (README, "Your files are safe").

1. An output never replaces an input, not even with ``--overwrite``. Paths are compared as
   files (device and inode), so a hard or symbolic link of an input is that input.
2. An existing file or folder at an output name is replaced only with ``--overwrite``.
3. Outputs are written as ``NAME.partial.EXT`` next to their final name, checked (a JSON file
   re-parsed, a zip or ``.pth`` archive tested, a video read back by the caller's check),
   flushed to disk and moved into place with ``os.replace``. A write that fails (a full disk)
   is an :class:`OutputWriteError` naming the final file; a failed or interrupted run
   (SIGTERM included) removes the temporaries and leaves the previous version as it was.
4. One run writes into an output folder at a time (:func:`lock_output_dir`).

Standard library only: the light tools (the eval CLI) use it too.
"""

import errno
import fcntl
import json
import os
import shutil
import signal
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Self

PARTIAL_TAG = ".partial"
LOCK_NAME = ".minvis.lock"
JSON_CHECK_MAX_BYTES = 256 * 2**20  # larger JSON outputs are not re-parsed (too costly)
# Errors of a write that name no file: the disk is full or the file over its size limit.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

# What is wrong with a written output (given its temporary path), or None.
Check = Callable[[Path], str | None]


class OutputPathError(Exception):
    """An output that would replace an input or an existing file (one-line message)."""


class OutputLockedError(OutputPathError):
    """An output folder another run is writing into."""


class OutputWriteError(OSError):
    """An output that could not be written completely (one line naming its final path)."""


FileId = tuple[int, int]  # (st_dev, st_ino)


def _file_ids(path: Path, cache: dict[Path, FileId | None]) -> list[FileId]:
    """The identities of ``path`` (links resolved) and of each folder above it that exists."""
    ids = []
    for p in (path, *path.parents):
        if p not in cache:
            try:
                stat = p.stat()
                cache[p] = (stat.st_dev, stat.st_ino)
            except OSError:
                cache[p] = None
        if cache[p] is not None:
            ids.append(cache[p])
    return ids


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    *,
    overwrite: bool,
    flag: str = "--overwrite",
) -> list[Path]:
    """Apply rules 1 and 2 (:class:`OutputPathError`); return the outputs that exist (and may be replaced).

    An output overlaps an input if writing or deleting it would touch the input: the same
    file or one inside the other, by path (links resolved) or by device and inode."""
    outputs, inputs = [Path(p) for p in outputs], [Path(p) for p in inputs]
    cache: dict[Path, FileId | None] = {}
    for output in outputs:
        out = output.expanduser().resolve()
        out_ids = _file_ids(out, cache)
        for input_path in inputs:
            inp = input_path.expanduser().resolve()
            in_ids = _file_ids(inp, cache)
            same_path = out == inp or out in inp.parents or inp in out.parents
            same_file = cache[out] in in_ids or cache[inp] in out_ids  # None is in neither
            if same_path or same_file:
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


def _json_problem(path: Path) -> str | None:
    if path.stat().st_size > JSON_CHECK_MAX_BYTES:
        return None
    try:
        json.loads(path.read_bytes())
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return f"the file written is not valid JSON ({error})"
    return None


def _archive_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as error:
        return f"the archive written is not readable ({error})"
    return None if bad is None else f"the archive written fails its test at {bad}"


# The checks of outputs by suffix (``.pth``: torch.save writes a zip archive).
_CHECKS: dict[str, Check] = {".json": _json_problem, ".zip": _archive_problem, ".pth": _archive_problem}


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedOutputs:
    """Rule 3 for outputs replaced together: ``with StagedOutputs([final, ...], replaces=[...]) as
    staged:`` write each output to ``staged.path(final)``; ``staged.checks[final]`` sets its
    check (otherwise by suffix: JSON re-parsed, archives tested). When the block succeeds, every
    output written is checked and flushed to disk, then moved into place, and the ``replaces``
    not written again are removed. On an error, a failed check or an interrupt, the temporaries
    are removed, nothing is replaced, and a failed write becomes an :class:`OutputWriteError`
    naming the output."""

    def __init__(self, finals: Iterable[str | os.PathLike], replaces: Iterable[Path] = ()) -> None:
        self.finals = [Path(p) for p in finals]
        self.replaces = list(replaces)
        self.checks: dict[Path, Check] = {}
        for final in self.finals:
            remove_path(partial_path(final))  # left by a run killed with SIGKILL

    def path(self, final: str | os.PathLike) -> Path:
        return partial_path(final)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, *_: object) -> None:
        if error is None:
            try:
                written = [final for final in self.finals if partial_path(final).exists()]
                for final in written:
                    self._verify(final)
                self._replace(written)
            except BaseException:
                self._discard()
                raise
            return
        self._discard()
        failed = self._failed_writes(error)
        if failed:
            reason = error.strerror or str(error)  # type: ignore[union-attr]  # an OSError
            raise OutputWriteError(f"cannot write {', '.join(map(str, failed))}: {reason}") from error

    def _verify(self, final: Path) -> None:
        temporary = partial_path(final)
        check = self.checks.get(final) or _CHECKS.get(final.suffix)
        try:
            problem = check(temporary) if check and temporary.is_file() else None
            for path in [*temporary.rglob("*"), temporary] if temporary.is_dir() else [temporary]:
                _fsync(path)
        except OSError as error:
            problem = error.strerror or str(error)
        if problem is not None:
            raise OutputWriteError(f"cannot write {final}: {problem}")

    def _replace(self, written: list[Path]) -> None:
        for old in self.replaces:
            if old not in written:
                remove_path(old)
        for final in written:
            try:
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)  # os.replace moves a folder only onto an empty one
                os.replace(partial_path(final), final)
            except OSError as error:
                raise OutputWriteError(f"cannot write {final}: {error.strerror or error}") from error
        for folder in {final.parent for final in written}:
            _fsync(folder)  # the renames

    def _discard(self) -> None:
        for final in self.finals:
            remove_path(partial_path(final))

    def _failed_writes(self, error: BaseException) -> list[Path]:
        """The outputs ``error`` failed to write: the one at an ``OSError``'s file name, or all
        of them for a full disk (a failed ``write`` names no file); none for other errors
        (bad input), which pass unchanged."""
        if not isinstance(error, OSError) or isinstance(error, OutputWriteError):
            return []
        if error.filename is None:
            return list(self.finals) if error.errno in _DISK_FULL else []
        name = Path(os.fsdecode(error.filename))
        return [f for f in self.finals if partial_path(f) == name or partial_path(f) in name.parents]


@contextmanager
def atomic_output(final: str | os.PathLike) -> Iterator[Path]:
    """Rule 3 for one file: ``with atomic_output(path) as temporary:`` write ``temporary``; it
    becomes ``path`` once checked and on disk (see :class:`StagedOutputs`)."""
    with StagedOutputs([final]) as staged:
        yield staged.path(final)


# Output folders this process holds (by identity): a nested lock of the same folder is a no-op.
_held: set[FileId] = set()


def _take_lock(lock: Path, folder: Path) -> int:
    """An open descriptor of ``lock``, flocked, holding this process's pid."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLockedError(
                f"{folder} is in use by another run (pid {holder}); "
                "wait for it to finish or choose another output folder"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder finished and removed it as we opened it: take a new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextmanager
def lock_output_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Rule 4: hold ``folder`` (created if needed) for the block, through an exclusive
    ``flock`` of ``folder/.minvis.lock`` holding this process's pid. Another process holding it
    is an :class:`OutputLockedError` naming the folder and that pid. The kernel releases the
    lock of a process that dies, so a killed run never blocks the next one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stat = folder.stat()
    key = (stat.st_dev, stat.st_ino)
    if key in _held:
        yield folder
        return
    lock = folder / LOCK_NAME
    fd = _take_lock(lock, folder)
    _held.add(key)
    try:
        yield folder
    finally:
        _held.discard(key)
        lock.unlink(missing_ok=True)  # while still locked: a waiting run then opens a new file
        os.close(fd)


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
