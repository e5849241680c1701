"""The Python surface is typed: mypy --strict passes over python/fleethub (with the _core stub)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_passes():
    """mypy --strict finds no error in the package sources, the stub included."""
    if shutil.which("mypy") is None and subprocess.run([sys.executable, "-m", "mypy", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.fail("mypy is not installed: run tools/bootstrap.sh")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(ROOT / "python/fleethub")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (ROOT / "python/fleethub/py.typed").exists()
