"""The quickstart example runs as a script with the embedded default model and answers both questions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_answers_with_and_without_a_crop() -> None:
    pytest.importorskip("transformers")
    out = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    code, count = out.split("Q: ")[1:]
    assert "A: 808" in code and "fetched: ['1']" in code and "RTR 0.50" in code
    assert "A: 3" in count and "low-res view was enough" in count and "RTR 0.25" in count
