"""The ``awares`` command line, run as users run it (typer's runner and a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from awares_tool.cli import app

runner = CliRunner()


def official(w: int, h: int) -> dict[str, list[int]]:
    """The official evaluation code's formulas, written out independently."""
    if w < 100 or h < 100:
        return {n: [0, 0, w, h] for n in [*map(str, range(9)), "all"]}
    cw, ch = max(100, w // 2), max(100, h // 2)
    return {
        "0": [0, 0, cw, ch], "1": [w - cw, 0, w, ch], "2": [0, h - ch, cw, h], "3": [w - cw, h - ch, w, h],
        "4": [(w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2],
        "5": [0, 0, w, ch], "6": [0, h - ch, w, h], "7": [0, 0, cw, h], "8": [w - cw, 0, w, h], "all": [0, 0, w, h],
    }


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000))
def test_regions_json_matches_official_formulas(w, h):
    res = runner.invoke(app, ["regions", "--size", f"{w}x{h}", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == official(w, h)


@pytest.mark.parametrize("size", ["1x1", "99x300", "100x100", "150x199", "199x199", "20000x50"])
def test_regions_small_and_extreme_sizes(size):
    w, h = map(int, size.split("x"))
    res = runner.invoke(app, ["regions", "--size", size, "--json"])
    assert json.loads(res.output) == official(w, h)


def test_regions_table_and_other_sets():
    res = runner.invoke(app, ["regions", "--size", "300x300", "--set", "grid:3x3"])
    assert res.exit_code == 0 and "r2c2" in res.output
    bad = runner.invoke(app, ["regions", "--size", "axb"])
    assert bad.exit_code == 2 and "--size" in bad.output


def test_crop_writes_original_pixels(tmp_path):
    img = Image.new("RGB", (400, 300), "white")
    img.paste((0, 0, 255), (200, 0, 400, 150))
    path = tmp_path / "in.png"
    img.save(path)
    res = runner.invoke(app, ["crop", str(path), "--regions", "1,4", "--out", str(tmp_path / "crops")])
    assert res.exit_code == 0, res.output
    paths = res.output.split()
    assert len(paths) == 2
    top_right = Image.open(paths[0])
    assert top_right.size == (200, 150) and top_right.getpixel((10, 10)) == (0, 0, 255)


def test_crop_rejects_unknown_region_before_writing(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (400, 300)).save(path)
    res = runner.invoke(app, ["crop", str(path), "--regions", "1,zz", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "zz" in res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_crop_bad_image_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    res = runner.invoke(app, ["crop", str(bad), "--regions", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    missing = runner.invoke(app, ["show", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o.png")])
    assert missing.exit_code == 2 and "nope.png" in missing.output


def test_show_writes_overlay(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (640, 480), "white").save(path)
    out = tmp_path / "overlay.png"
    res = runner.invoke(app, ["show", str(path), "--out", str(out), "--highlight", "3"])
    assert res.exit_code == 0, res.output
    pic = Image.open(out)
    assert pic.size == (640, 480)
    assert pic.convert("RGB").getpixel((600, 400)) != (255, 255, 255)  # region 3 is tinted


def test_tokens_report(tmp_path):
    res = runner.invoke(app, ["tokens", "1024x768", "--family", "qwen2.5-vl", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["full"] == 999 and rep["lowres"] == 252
    assert rep["rtr_with_crop"]["1"] == pytest.approx((252 + rep["crops"]["1"]) / 999)
    text = runner.invoke(app, ["tokens", "1024x768", "--family", "qwen3-vl"])
    assert "RTR" in text.output and "crop 8" in text.output


def test_console_script_runs_in_a_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "awares_tool.cli", "regions", "--size", "200x100", "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["4"] == [50, 0, 150, 100]


@pytest.mark.hf
@pytest.mark.slow
def test_ask_runs_a_tiny_model_in_bfloat16_on_cpu(tmp_path):
    """Issue 18's acceptance: `awares ask IMG Q --backend transformers:PATH --dtype bfloat16 --device cpu`."""
    torch = pytest.importorskip("torch")
    from awares_tool.backends import clear_cache, resolve_backend
    from awares_train.testing import tiny_vlm_path

    spec = f"transformers:{tiny_vlm_path('qwen2.5-vl')}"
    img = tmp_path / "in.png"
    Image.new("RGB", (224, 224), "white").save(img)
    try:
        res = runner.invoke(app, ["ask", str(img), "What is here?", "--backend", spec, "--dtype", "bfloat16",
                                  "--device", "cpu", "--max-new-tokens", "2"])
        assert res.exit_code == 0, res.output
        assert f"model:    {spec} on cpu, bfloat16, sdpa" in res.output
        be = resolve_backend(spec, dtype="bfloat16", device="cpu")  # the CLI's backend, from the process cache
        assert {p.dtype for p in be.model.parameters()} == {torch.bfloat16}
        # the same options written into the spec name the same loaded model
        assert resolve_backend(f"{spec}?device=cpu&dtype=bf16") is be
    finally:
        clear_cache(spec, dtype="bfloat16", device="cpu")


@pytest.mark.parametrize(("args", "words"), [
    (["--backend", "transformers:/nowhere", "--dtype", "bf17"], ["bad value 'bf17' for option 'dtype'", "bfloat16"]),
    (["--backend", "transformers:/nowhere?dtpye=bf16"], ["unknown option 'dtpye'", "valid options: device, dtype"]),
    (["--backend", "llamacpp:/nowhere.gguf", "--device", "cuda"], ["unknown option 'device' for llamacpp"]),
    (["--backend", "transformers:/nowhere?dtype=float16", "--dtype", "bfloat16"], ["'dtype' is given twice"]),
])
def test_ask_refuses_bad_model_options_in_one_line(tmp_path, args, words):
    img = tmp_path / "in.png"
    Image.new("RGB", (64, 64), "white").save(img)
    res = runner.invoke(app, ["ask", str(img), "q", *args])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert all(w in res.output for w in words), res.output


@pytest.mark.parametrize("command", [["ui"], ["demo", "--out", "OUT"]])
def test_ui_and_demo_refuse_bad_model_flags_before_starting(tmp_path, command):
    command = [str(tmp_path) if c == "OUT" else c for c in command]
    res = runner.invoke(app, [*command, "--dtype", "bf17"])
    assert res.exit_code == 2 and "bad value 'bf17' for option 'dtype'" in res.output, res.output
    assert not any(tmp_path.iterdir())  # nothing was served or written


# ---------------------------------------------------------------- #17: every failure is one line and exit 2
def _png(path):
    from PIL import Image

    Image.new("RGB", (300, 200), "white").save(path)
    return path


@pytest.mark.parametrize("args", [
    ["tokens", "a" * 5000],  # OSError: File name too long, from Path.exists()
    ["tokens", "missing.png"],
    ["crop", "data:image/png;base64," + "A" * 6000, "--regions", "0", "--out", "OUT"],
    ["crop", "IMG", "--regions", "0", "--out", "FILE"],  # FileExistsError
    ["crop", "IMG", "--regions", "nine", "--out", "OUT"],
])
def test_cli_failures_are_one_line_and_exit_2(args, tmp_path):
    img = _png(tmp_path / "img.png")
    (tmp_path / "file").write_text("x")
    subst = {"IMG": str(img), "FILE": str(tmp_path / "file"), "OUT": str(tmp_path / "out")}
    res = CliRunner().invoke(app, [subst.get(a, a) for a in args])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), res.stderr


def test_tokens_names_what_it_expected(tmp_path):
    res = CliRunner().invoke(app, ["tokens", "missing.png"])
    assert "neither an image file nor a size WIDTHxHEIGHT" in res.stderr


def test_help_renders_as_written():
    """`tokens:family:N` came out as "tokens👪N": rich read `:family:` as an emoji code."""
    import re

    import typer

    commands = typer.main.get_command(app).commands
    assert len(commands) >= 8
    for command in commands:  # every command: a `:word:` in any help would have become an emoji
        out = CliRunner().invoke(app, [command, "--help"]).output
        assert not re.search("[\U0001F300-\U0001FAFF]", out), command
    assert "tokens:FAMILY:N" in CliRunner().invoke(app, ["tokens", "--help"]).output


def test_the_installed_command_fails_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("awares")
    out = subprocess.run([str(exe), "crop", str(_png(tmp_path / "i.png")), "--regions", "0", "--out",
                          str(_png(tmp_path / "taken.png"))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"error: --out {str(tmp_path / 'taken.png')!r} exists and is not a "
                                               "folder; give a folder for the crops"]
