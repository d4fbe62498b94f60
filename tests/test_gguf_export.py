"""GGUF export with llama.cpp's own converter, and the tiny GGUF other test modules share.

:func:`tiny_gguf` builds the tiny random Qwen2.5-VL checkpoint (``awares_train.testing``) and converts it
once into a cache folder (``$AWARES_TEST_CACHE`` or ``~/.cache/awares/test-gguf``); the first run creates
the converter venv (about 1-2 minutes), later runs take no time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import pytest

from awares_tool import gguf
from awares_tool.errors import AwaresError, BackendUnavailableError


@functools.cache
def tiny_gguf(family: str = "qwen2.5-vl", checkpoint: bool = False) -> tuple[Path, Path]:
    """``(model.gguf, mmproj.gguf)`` of a tiny random VLM of ``family``, built once and cached on disk.

    ``checkpoint``: with the real checkpoint's template and pixel settings (``build_tiny_vlm``); the
    transformers checkpoint it was converted from stays beside the GGUF files, in ``hf/``.
    """
    pytest.importorskip("transformers")
    pytest.importorskip("trl")  # the tiny VLMs use TRL's chat template
    import awares_train.testing.tiny_vlms as tiny

    source = gguf._llama_cpp_python_version() + Path(tiny.__file__).read_text() + family + str(checkpoint)
    key = hashlib.sha1(source.encode()).hexdigest()[:12]
    root = Path(os.environ.get("AWARES_TEST_CACHE", Path.home() / ".cache" / "awares" / "test-gguf")) / key
    model, mmproj = root / "model.gguf", root / "mmproj.gguf"
    if not (model.is_file() and mmproj.is_file()):
        ckpt = tiny.build_tiny_vlm(family, root / "hf", checkpoint=checkpoint)
        try:
            gguf.export_gguf(ckpt, root, quant="f16")
        except gguf.ConversionError as e:  # e.g. no package index to build the converter venv from
            pytest.skip(f"cannot build the tiny GGUF: {str(e)[:300]}")
    return model, mmproj


# -- fast: checkpoint staging ----------------------------------------------------------------------------
def test_stage_checkpoint_makes_a_transformers5_config_readable_by_457(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cfg = {
        "model_type": "qwen2_5_vl", "dtype": "bfloat16",
        "text_config": {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "hidden_size": 64,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}},
        "vision_config": {"depth": 2},
    }
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend",
                                                            "extra_special_tokens": ["<a>"]}))
    (src / "model.safetensors").write_bytes(b"w")
    dst = tmp_path / "dst"
    gguf._stage_checkpoint(src, dst)
    out = json.loads((dst / "config.json").read_text())
    assert out["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert out["text_config"]["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
    assert out["rope_theta"] == 1e6 and out["hidden_size"] == 64 and out["torch_dtype"] == "bfloat16"
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "Qwen2TokenizerFast" and tok["additional_special_tokens"] == ["<a>"]
    assert (dst / "model.safetensors").is_symlink() and (dst / "model.safetensors").read_bytes() == b"w"
    assert json.loads((src / "config.json").read_text()) == cfg  # the original is untouched


def test_export_rejects_bad_input(tmp_path):
    with pytest.raises(BackendUnavailableError, match="config.json missing"):
        gguf.export_gguf(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ValueError, match="quant"):
        gguf.export_gguf(tmp_path, tmp_path / "out", quant="q2")  # type: ignore[arg-type]
    assert issubclass(gguf.ConversionError, AwaresError)


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("AWARES_GGUF_CACHE", str(tmp_path / "c"))
    assert gguf.default_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("AWARES_LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="convert_hf_to_gguf.py"):
        gguf.converter_dir()
    monkeypatch.setenv("AWARES_GGUF_PYTHON", "/opt/py/bin/python")
    assert gguf.converter_python() == Path("/opt/py/bin/python")


# -- slow: the real converter --------------------------------------------------------------------------
@pytest.mark.slow
def test_export_tiny_checkpoint_and_run_it(tmp_path):
    pytest.importorskip("llama_cpp")
    from typer.testing import CliRunner

    from awares_tool.backends.base import GenerationSettings, ImagePart, Message, TextPart
    from awares_tool.backends.llamacpp import LlamaCppBackend
    from awares_tool.cli import app
    from PIL import Image

    model, _ = tiny_gguf()  # builds the checkpoint (and the converter venv) once
    ckpt = model.parent / "hf"
    (ckpt / "awares.json").write_text(json.dumps({"family": "qwen2.5-vl", "crop_set": "awares9"}))
    res = CliRunner().invoke(app, ["export-gguf", str(ckpt), "--out", str(tmp_path / "q4"), "--quant", "q4_k_m"])
    assert res.exit_code == 0, res.output
    q4, mmproj = tmp_path / "q4" / "model.gguf", tmp_path / "q4" / "mmproj.gguf"
    assert q4.is_file() and mmproj.is_file() and (tmp_path / "q4" / "awares.json").is_file()
    assert f"--backend llamacpp:{q4}" in res.output
    with LlamaCppBackend(q4, mmproj=mmproj, n_ctx=2048, n_threads=2) as be:
        assert be.model_card is not None and be.model_card.family == "qwen2.5-vl"
        gen = be.generate([Message(role="user", content=[ImagePart(image=Image.new("RGB", (448, 448), "red")),
                                                         TextPart(text="colour?")])], GenerationSettings(max_new_tokens=4))
        assert gen.usage.image_tokens == [256] and gen.usage.completion_tokens >= 1
    meta = json.loads(json.dumps({"q": q4.stat().st_size, "f16": model.stat().st_size}))
    assert meta["q"] < meta["f16"]  # quantisation really happened
