#!/usr/bin/env python
"""Install detectron2 as a pip-managed distribution (idempotent).

``--source auto`` uses ``git`` (upstream, with its C++/CUDA extension) if reachable, else ``sdist``:
PyPI's ``pb1-detectron2==0.6`` (upstream v0.6's Python files, no C++ sources), installed as
``detectron2`` with a stand-in ``detectron2._C`` whose compiled ops (none used by MinVIS) raise
an error naming the op. Pillow is pinned below 10 only where detectron2 reads
``PIL.Image.LINEAR``, which Pillow 10 removed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

UPSTREAM_GIT = "https://github.com/facebookresearch/detectron2.git"
SDIST_REQUIREMENT = "pb1-detectron2==0.6"
HERE = Path(__file__).resolve().parent / "detectron2_install"
PILLOW_PIN = "Pillow<10"
IMAGE_LINEAR = re.compile(rb"\bImage\.LINEAR\b")


def installed_version(distribution: str = "detectron2") -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_package_dir() -> Path | None:
    """The installed ``detectron2`` package's folder, found without importing it."""
    importlib.invalidate_caches()
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def pillow_requirement(detectron2_dir: Path | None, pillow_version: str | None) -> str | None:
    """``PILLOW_PIN`` if the detectron2 sources in ``detectron2_dir`` read ``PIL.Image.LINEAR``
    and Pillow ``pillow_version`` (None: not installed) lacks it; otherwise None."""
    if detectron2_dir is None:
        return None
    if not any(IMAGE_LINEAR.search(path.read_bytes()) for path in detectron2_dir.rglob("*.py")):
        return None
    if pillow_version is not None and int(pillow_version.split(".")[0]) < 10:
        return None
    return PILLOW_PIN


def pin_pillow_if_needed() -> None:
    requirement = pillow_requirement(installed_package_dir(), installed_version("Pillow"))
    if requirement is not None:
        print(f"this detectron2 reads PIL.Image.LINEAR (removed in Pillow 10): installing {requirement}")
        pip("install", requirement)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def git_reachable(timeout_s: float = 20.0) -> bool:
    if shutil.which("git") is None:
        return False
    try:
        result = subprocess.run(
            ["git", "ls-remote", "--heads", UPSTREAM_GIT],
            capture_output=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def install_from_sdist() -> None:
    with tempfile.TemporaryDirectory(prefix="d2_sdist_") as tmp:
        tmp_dir = Path(tmp)
        # The sdist's setup.py imports torch, hence --no-build-isolation.
        pip(
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "-d",
            str(tmp_dir),
            SDIST_REQUIREMENT,
        )
        archives = list(tmp_dir.glob("pb1-detectron2-*.tar.gz")) + list(
            tmp_dir.glob("pb1_detectron2-*.tar.gz")
        )
        if len(archives) != 1:
            raise SystemExit(f"expected one pb1-detectron2 archive in {tmp_dir}, got {archives}")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp_dir, filter="data")
        source_dir = next(p for p in tmp_dir.iterdir() if p.is_dir())
        shutil.copy(HERE / "setup_python_only.py", source_dir / "setup.py")
        shutil.copy(HERE / "_C.py", source_dir / "detectron2" / "_C.py")
        pip("install", "--no-build-isolation", str(source_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["auto", "git", "sdist"], default="auto")
    parser.add_argument("--force", action="store_true", help="reinstall even if installed")
    args = parser.parse_args()

    version = installed_version()
    if version is not None and not args.force:
        print(f"detectron2 {version} is already installed; kept (--force reinstalls)")
        pin_pillow_if_needed()
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("install torch first: detectron2 builds against the installed torch") from None

    source = args.source
    if source == "auto":
        source = "git" if git_reachable() else "sdist"
        print(f"installing detectron2 from {source}")
    if source == "git":
        pip("install", "--no-build-isolation", f"git+{UPSTREAM_GIT}")
    else:
        install_from_sdist()
    pin_pillow_if_needed()
    print(f"detectron2 {installed_version()} installed")


if __name__ == "__main__":
    main()
