"""The layers' import rules (README "Architecture"), each import in a fresh interpreter.

A light layer must not pull in the heavy frameworks: the file format and the metric load
neither torch nor detectron2, the paper's inference (``minvis.tracking``: torch and scipy)
neither detectron2 nor mask2former, and ``import minvis`` nothing heavy at all, while the
official entry points still register the model and the datasets (``import minvis.data``
registering them is tested in test_ytvis_data.py). The image model (``mask2former``) does
not depend on ``minvis``.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "detectron2", "mask2former", "cv2")

# module -> heavy modules it must not load
RULES = {
    "minvis": HEAVY,
    "minvis.ytvis_format": HEAVY,
    "minvis.evaluation.ytvis_metric": HEAVY,
    "minvis.tracking": ("detectron2", "mask2former", "cv2"),
}


def loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    """Those of ``modules`` in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", sorted(RULES))
def test_light_layers_do_not_load_heavy_frameworks(module: str) -> None:
    forbidden = set(RULES[module]) & set(loaded_after(f"import {module}"))
    assert not forbidden, f"import {module} loads {sorted(forbidden)}"


def test_the_probe_sees_a_heavy_import() -> None:
    # The check itself: a layer that loads torch (and scipy, its Hungarian solver) is seen doing so.
    assert loaded_after("import minvis.tracking", ("torch", "scipy")) == ["torch", "scipy"]


def test_mask2former_does_not_load_minvis() -> None:
    # Every module of the package, imported in one fresh interpreter.
    code = (
        "import pkgutil, importlib, mask2former\n"
        "for info in pkgutil.walk_packages(mask2former.__path__, 'mask2former.'):\n"
        "    importlib.import_module(info.name)\n"
        "assert 'mask2former.matcher' in sys.modules\n"
        "assert 'mask2former.modeling.pixel_decoder.msdeformattn' in sys.modules\n"
    )
    assert loaded_after("import sys\n" + code, ("minvis",)) == []


def test_mask2former_sources_never_import_minvis() -> None:
    # Also imports inside functions, which the fresh interpreter would not run.
    offenders = []
    for path in sorted((REPO / "mask2former").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "minvis"]
    assert offenders == []


def test_eval_cli_imports_neither_torch_nor_detectron2() -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['eval_results.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'tools' / 'eval' / 'eval_results.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import minvis.ytvis_format, minvis.evaluation.ytvis_metric\n"
    )
    assert not {"torch", "detectron2"} & set(loaded_after(code))


_REGISTERED = """
from minvis import add_minvis_config
from detectron2.data import DatasetCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY
print(json.dumps(["VideoMaskFormer_frame" in META_ARCH_REGISTRY, "D2SwinTransformer" in BACKBONE_REGISTRY,
                  "ytvis_2019_train" in DatasetCatalog.list()]))
"""


def test_official_entry_point_registers_model_and_datasets() -> None:
    command = [sys.executable, "-c", "import json" + _REGISTERED]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [True, True, True]
