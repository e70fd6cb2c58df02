"""tools/eval/eval_results.py run as a user would: a subprocess on files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
GT = FIXTURES / "evalcase_s0.gt.json"
RESULTS = FIXTURES / "evalcase_s0.results.json"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "tools" / "eval" / "eval_results.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)


def test_fixture_metrics_match_the_official_numbers(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(RESULTS, arcname="results.json")
    proc = run_cli("--gt", GT, "--results", archive, "--json-out", out)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads((FIXTURES / "evalcase_s0.expected.json").read_text())["stats"]
    written = json.loads(out.read_text())
    assert list(written) == list(expected)
    for name, value in expected.items():
        assert written[name] == pytest.approx(value, abs=1e-9), name
    assert "AP50" in proc.stdout and "class1" in proc.stdout


def test_unknown_video_is_a_clear_error(tmp_path: Path) -> None:
    results = json.loads(RESULTS.read_text())
    results[3]["video_id"] = 999
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(results))
    proc = run_cli("--gt", GT, "--results", bad)
    assert proc.returncode == 2
    assert "results entry 3 (video_id 999): unknown video" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("--gt", GT, "--results", tmp_path / "absent.zip")
    assert proc.returncode == 2
    assert "absent.zip" in proc.stderr
    assert "Traceback" not in proc.stderr
