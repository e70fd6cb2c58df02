"""tools/setup/install_detectron2.py pins Pillow < 10 only for a detectron2 that needs it.

detectron2 0.6 evaluates ``PIL.Image.LINEAR`` (removed in Pillow 10) at import; current
upstream uses ``Image.BILINEAR``. A kept detectron2 must not cost the user their Pillow.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "tools" / "setup" / "install_detectron2.py"
OLD_TRANSFORM = "class ExtentTransform:\n    def __init__(self, src_rect, size, interp=Image.LINEAR):\n"
NEW_TRANSFORM = "class ExtentTransform:\n    def __init__(self, src_rect, size, interp=Image.BILINEAR):\n"


@pytest.fixture(scope="module")
def installer():
    spec = importlib.util.spec_from_file_location("install_detectron2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_detectron2(root: Path, transform_source: str) -> Path:
    package = root / "detectron2"
    (package / "data" / "transforms").mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "x"\n')
    (package / "data" / "transforms" / "transform.py").write_text(transform_source)
    return package


@pytest.mark.parametrize(
    ("transform", "pillow", "expected"),
    [
        (OLD_TRANSFORM, "11.0.0", "Pillow<10"),
        (OLD_TRANSFORM, "10.0.0", "Pillow<10"),
        (OLD_TRANSFORM, None, "Pillow<10"),
        (OLD_TRANSFORM, "9.5.0", None),  # already suits it
        (NEW_TRANSFORM, "11.0.0", None),
        (NEW_TRANSFORM, None, None),
    ],
    ids=[
        "0.6-pillow11",
        "0.6-pillow10",
        "0.6-no-pillow",
        "0.6-pillow9",
        "upstream-pillow11",
        "upstream-no-pillow",
    ],
)
def test_pillow_requirement(installer, tmp_path, transform, pillow, expected):
    assert installer.pillow_requirement(fake_detectron2(tmp_path, transform), pillow) == expected


def test_no_detectron2_needs_no_pin(installer):
    assert installer.pillow_requirement(None, "11.0.0") is None


# Imports detectron2's transforms where PIL.Image has no LINEAR, as under Pillow 10.
WITHOUT_IMAGE_LINEAR = """
import PIL.Image as Image
Image.__dict__.pop("LINEAR", None)
deprecated = Image.__dict__.get("__getattr__")  # Pillow 9.1-9.5 serve LINEAR from here


def __getattr__(name):
    if name == "LINEAR" or deprecated is None:
        raise AttributeError(f"module 'PIL.Image' has no attribute {name!r}")
    return deprecated(name)


Image.__getattr__ = __getattr__
import detectron2.data.transforms
"""


def installed_detectron2_reads_image_linear() -> bool:
    """Whether the installed detectron2 reads ``PIL.Image.LINEAR`` on import: the 0.6 release
    does, current upstream (which also calls itself 0.6) does not. Decided by running it."""
    proc = subprocess.run([sys.executable, "-c", WITHOUT_IMAGE_LINEAR], capture_output=True, text=True)
    assert proc.returncode == 0 or "LINEAR" in proc.stderr, proc.stderr[-3000:]
    return proc.returncode != 0


def test_installed_detectron2_gets_the_pin_exactly_when_it_reads_image_linear(installer):
    package = installer.installed_package_dir()
    assert (package / "engine" / "defaults.py").is_file()
    expected = "Pillow<10" if installed_detectron2_reads_image_linear() else None
    assert installer.pillow_requirement(package, "11.0.0") == expected


@pytest.mark.parametrize(
    ("transform", "pip_calls"),
    [(NEW_TRANSFORM, []), (OLD_TRANSFORM, [("install", "Pillow<10")])],
    ids=["upstream", "0.6"],
)
def test_kept_detectron2_keeps_pillow_unless_it_needs_the_pin(
    installer, monkeypatch, tmp_path, transform, pip_calls
):
    package = fake_detectron2(tmp_path, transform)
    versions = {"detectron2": "0.6", "Pillow": "11.0.0"}
    calls = []
    monkeypatch.setattr(installer, "installed_version", lambda name="detectron2": versions[name])
    monkeypatch.setattr(installer, "installed_package_dir", lambda: package)
    monkeypatch.setattr(installer, "pip", lambda *args: calls.append(args))
    monkeypatch.setattr(sys, "argv", ["install_detectron2.py"])
    installer.main()
    assert calls == pip_calls
