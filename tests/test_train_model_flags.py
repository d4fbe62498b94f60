"""``awares-train build-data`` and ``eval`` take --device / --dtype / --attn like every command that loads a model."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from awares_train.cli import app
from awares_train.data.synthetic import write_split

runner = CliRunner()


@pytest.fixture()
def tiny_spec():
    pytest.importorskip("transformers")
    from awares_tool.backends import clear_cache
    from awares_train.testing import tiny_vlm_path

    spec = f"transformers:{tiny_vlm_path('qwen2.5-vl')}"
    yield spec
    clear_cache(spec, dtype="bfloat16", device="cpu")  # only what these tests loaded: others may hold theirs


@pytest.mark.hf
@pytest.mark.slow
def test_eval_and_build_data_load_the_model_in_the_asked_dtype(tmp_path, tiny_spec):
    torch = pytest.importorskip("torch")
    from awares_tool.backends import resolve_backend

    records = write_split(tmp_path / "syn", 1, split="test")
    res = runner.invoke(app, ["eval", "--data", str(records), "--backend", tiny_spec, "--dtype", "bfloat16",
                              "--device", "cpu", "--modes", "lowres", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["backend"] == tiny_spec
    be = resolve_backend(tiny_spec, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in be.model.parameters()} == {torch.bfloat16}

    args = ["build-data", "--data", str(tmp_path / "syn"), "--out", str(tmp_path / "traj"), "--backend", tiny_spec,
            "--grounding", "dataset", "--no-progress", "--no-plot", "--max-new-tokens", "2"]
    res = runner.invoke(app, [*args, "--dtype", "bf16", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    recorded = json.loads((tmp_path / "traj" / "settings.json").read_text())["config"]["backend"]
    assert recorded == f"{tiny_spec}?device=cpu&dtype=bfloat16"  # how the answers were made is on record
    assert resolve_backend(recorded) is be  # the same model, loaded once for both commands
    res = runner.invoke(app, [*args, "--dtype", "float32", "--device", "cpu"])
    assert res.exit_code != 0 and "different settings" in str(res.exception)  # a resume in another dtype


@pytest.mark.parametrize(("command", "backend", "flags", "words"), [
    ("eval", "transformers:/nowhere", ["--dtype", "bf17"], ["bad value 'bf17' for option 'dtype'"]),
    ("eval", "openai:http://127.0.0.1:1/v1#m", ["--device", "cuda"], ["unknown option 'device' for openai"]),
    ("build-data", "transformers:/nowhere", ["--attn", "flash"], ["bad value 'flash' for option 'attn'"]),
    ("build-data", "py:mod:attr", ["--dtype", "bfloat16"], ["apply to transformers backends"]),
])
def test_bad_model_flags_are_usage_errors(tmp_path, command, backend, flags, words):
    records = write_split(tmp_path / "syn", 1, split="test")
    data = str(records) if command == "eval" else str(tmp_path / "syn")
    res = runner.invoke(app, [command, "--data", data, "--out", str(tmp_path / "o"), "--backend", backend, *flags])
    assert res.exit_code == 2, res.output
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())  # typer wraps the message in a box
    assert all(w in text for w in words), res.output
