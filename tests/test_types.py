"""The code type-checks: mypy --strict over gateway/, providers/ and wire/, as configured in
pyproject.toml ([tool.mypy]). So an adapter that does not satisfy the Provider protocol, or a
sink that misses a ChatSink method, fails the suite, not a request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_mypy_strict_is_clean() -> None:
    # A subprocess, as tests/test_style.py runs ruff: mypy's cache and its imports stay apart
    # from the test process.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
