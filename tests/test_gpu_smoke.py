"""The GPU smoke script keeps working between GPU sessions: its CPU mode runs every stage (#18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")


@pytest.mark.slow
def test_gpu_smoke_script_runs_every_stage_on_cpu(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AWARES_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(root / "benchmarks/gpu_smoke.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, env=env, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert report["device"] == "cpu"
    assert report["inference"]["ok"] and report["inference"]["awares, no crop"]["rtr"] < 0.3
    assert report["sft"]["ok"] and report["sft"]["card"]["max_steps"] == 2
    assert report["grpo"]["ok"] and len(report["grpo"]["metrics"]) == 2
    assert report["grpo_vllm"]["ok"] is None  # no GPU here: skipped, and said so
