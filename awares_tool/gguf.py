"""Export a Hugging Face Qwen2.5-VL checkpoint to GGUF (``model.gguf`` + ``mmproj.gguf``) for llama.cpp.

We run llama.cpp's **own** converter (``convert_hf_to_gguf.py``) rather than writing GGUF ourselves: the
tensor names, hyper-parameter keys and the projector layout change with every llama.cpp release, and only
the converter that ships with the installed llama-cpp-python is guaranteed to match its loader. It comes
from the llama-cpp-python sdist of the installed version (``vendor/llama.cpp``), downloaded once with pip
into a cache folder.

The converter runs in a **separate virtual environment** (``.venv-gguf`` in the cache): it pins
``transformers==4.57.6`` (and ``protobuf<5``, ``sentencepiece``), while awares itself runs on transformers 5.
Installing both in one environment is impossible, so the converter is a subprocess of its own venv.

Pitfalls handled here (see ``shared/notes/edge-and-adapters.md``, section 2.2, llama-cpp-python 0.3.36):

* a self-trained BPE vocabulary never matches the converter's table of known tokenizer hashes
  (``get_vocab_base_pre`` raises); a small runner script falls back to the ``qwen2`` pre-tokenizer then;
* ``--mmproj`` needs a top-level ``architectures`` in ``config.json``; checkpoints saved by transformers 5
  keep it (and the rope settings) inside ``text_config`` and name the rope dict ``rope_parameters``;
  we stage a patched copy of the config that transformers 4.57 reads;
* the tokenizer class written by transformers 5 (``TokenizersBackend``) is unknown to 4.57;
* the projector's tensor-name map only covers ``merger.mlp.{bid}`` for bid < vision depth, so vision towers of
  depth < 3 (tiny test models) fail with "Can not map tensor 'visual.merger.mlp.2.bias'"; the runner widens it.

Quantisation to ``q4_k_m`` uses ``llama_cpp.llama_model_quantize`` on the f16 export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from .errors import AwaresError, BackendUnavailableError, require_extra

__all__ = ["GGUFExport", "export_gguf", "converter_dir", "converter_python", "default_cache_dir", "QUANTS"]

log = logging.getLogger(__name__)

Quant = Literal["f16", "q8_0", "q4_k_m"]
#: Quantisations ``export_gguf`` offers for the language model (the projector stays f16).
QUANTS: tuple[str, ...] = ("f16", "q8_0", "q4_k_m")
#: Packages of the converter venv. torch first and alone: it must be the CPU build we pin everywhere.
CONVERTER_TORCH = "torch==2.13.0"
CONVERTER_PACKAGES = ("transformers==4.57.6", "sentencepiece", "protobuf<5", "numpy", "safetensors")
_FALLBACK_VERSION = "0.3.36"
#: Files and folders of vendor/llama.cpp that the converter needs (the rest of the sdist is C++).
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "requirements/", "models/templates/")

_RUNNER = '''\
"""Run llama.cpp's convert_hf_to_gguf.py with awares' patches (written by awares_tool.gguf)."""
import runpy, sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/gguf-py"]
import conversion.base as base

_orig = base.TextModel.get_vocab_base_pre

def _vocab_base_pre(self, tokenizer):
    # A self-trained BPE vocabulary has no entry in the converter's hash table (llama-cpp-python 0.3.36
    # raises NotImplementedError); Qwen's byte-level BPE pre-tokenizer is what our tokenizers use.
    try:
        return _orig(self, tokenizer)
    except NotImplementedError:
        return "qwen2"

base.TextModel.get_vocab_base_pre = _vocab_base_pre

import gguf
_orig_map = gguf.get_tensor_name_map

def _tensor_name_map(arch, n_blocks):
    # The projector's "visual.merger.mlp.{bid}" names are block-indexed patterns generated for
    # bid < vision depth only, so a vision tower of depth < 3 cannot map "merger.mlp.2" (tiny test
    # models). Extra patterns are harmless: they only add names.
    return _orig_map(arch, max(n_blocks, 4))

gguf.get_tensor_name_map = _tensor_name_map
sys.argv = [root + "/convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


class GGUFExport(BaseModel):
    """What :func:`export_gguf` wrote."""

    model: Path
    mmproj: Path
    quant: str
    converter: str


class ConversionError(AwaresError):
    """llama.cpp's converter failed; the message carries the tail of its output."""


def default_cache_dir() -> Path:
    """``$AWARES_GGUF_CACHE`` or ``~/.cache/awares/gguf``: converter sources and the converter venv."""
    env = os.environ.get("AWARES_GGUF_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "awares" / "gguf"


def _llama_cpp_python_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        log.info("llama-cpp-python is not installed; using the converter of %s", _FALLBACK_VERSION)
        return _FALLBACK_VERSION


def _run(cmd: list[str], what: str, timeout: float = 3600) -> str:
    log.info("%s: %s", what, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConversionError(f"{what} failed to run ({' '.join(cmd[:3])} ...): {e}") from e
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise ConversionError(f"{what} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout + proc.stderr


def converter_dir(cache_dir: Path | None = None, version: str | None = None) -> Path:
    """The ``vendor/llama.cpp`` folder holding ``convert_hf_to_gguf.py``, fetched once per version.

    ``$AWARES_LLAMA_CPP_DIR`` may point at an existing llama.cpp checkout instead (e.g. a CI cache).
    Otherwise the llama-cpp-python sdist of the installed version is downloaded with pip (only that
    package is fetched as a source archive; its build tools may be wheels) and only the Python parts are
    extracted.
    """
    env = os.environ.get("AWARES_LLAMA_CPP_DIR")
    if env:
        root = Path(env)
        if not (root / "convert_hf_to_gguf.py").is_file():
            raise BackendUnavailableError(f"AWARES_LLAMA_CPP_DIR={env} has no convert_hf_to_gguf.py")
        return root
    version = version or _llama_cpp_python_version()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    root = cache / f"llama.cpp-{version}"
    if (root / "convert_hf_to_gguf.py").is_file():
        return root
    sdist_dir = cache / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    archives = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not archives:
        # --no-binary only for llama-cpp-python: ":all:" would also build cmake/ninja from source (minutes).
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
             f"llama-cpp-python=={version}", "-d", str(sdist_dir)],
            "downloading the llama-cpp-python sdist",
        )
        archives = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
        if not archives:
            raise ConversionError(f"pip did not produce llama_cpp_python-{version}.tar.gz in {sdist_dir}")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix="extract-"))
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    try:
        with tarfile.open(archives[0]) as tar:
            members = [
                m for m in tar.getmembers()
                if m.name.startswith(prefix) and m.name[len(prefix):].startswith(_CONVERTER_PARTS)
            ]
            tar.extractall(tmp, members=members, filter="data")
        shutil.move(str(tmp / prefix), str(root))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def converter_python(cache_dir: Path | None = None) -> Path:
    """Python of the converter venv (``<cache>/.venv-gguf``), created on first use (about a minute).

    A fresh venv, not ``--system-site-packages``: the converter pins transformers 4.57.6, and awares'
    own environment has transformers 5, which the converter cannot use. ``$AWARES_GGUF_PYTHON`` may name
    a ready interpreter instead.
    """
    env = os.environ.get("AWARES_GGUF_PYTHON")
    if env:
        return Path(env)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    home = cache / ".venv-gguf"
    py = home / "bin" / "python"
    marker = home / "awares-ready.json"
    wanted = [CONVERTER_TORCH, *CONVERTER_PACKAGES]
    if py.is_file() and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return py
    log.warning("creating the GGUF converter environment in %s (first use only, about a minute)", home)
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    _run([str(py), "-m", "pip", "install", "-q", CONVERTER_TORCH], "installing torch into the converter venv")
    _run([str(py), "-m", "pip", "install", "-q", *CONVERTER_PACKAGES], "installing the converter's packages")
    marker.write_text(json.dumps(wanted))
    return py


def _stage_checkpoint(src: Path, dst: Path) -> None:
    """Link the checkpoint into ``dst`` with a config.json/tokenizer_config.json transformers 4.57 can read."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in ("config.json", "tokenizer_config.json"):
            (dst / f.name).symlink_to(f.resolve())
    cfg = json.loads((src / "config.json").read_text())
    text = dict(cfg.get("text_config") or {})
    archs = cfg.get("architectures") or text.get("architectures")
    if not archs:
        archs = {"qwen2_5_vl": ["Qwen2_5_VLForConditionalGeneration"], "qwen2_vl": ["Qwen2VLForConditionalGeneration"]}.get(
            cfg.get("model_type", ""), []
        )
    cfg["architectures"] = archs
    rope = text.get("rope_parameters") or cfg.get("rope_parameters")
    if rope and "rope_scaling" not in text:  # transformers 5 name -> 4.57 names
        rope = dict(rope)
        text.setdefault("rope_theta", rope.pop("rope_theta", 1e6))
        if "mrope_section" in rope:
            text["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    if "dtype" in text and "torch_dtype" not in text:
        text["torch_dtype"] = text["dtype"]
    cfg["text_config"] = text
    # Qwen2.5-VL configs of 4.57 also carry the text keys at top level (the converter reads them there).
    for k, v in text.items():
        if k not in ("architectures", "model_type"):
            cfg.setdefault(k, v)
    if "dtype" in cfg and "torch_dtype" not in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    tok_cfg_path = src / "tokenizer_config.json"
    if tok_cfg_path.is_file():
        tok = json.loads(tok_cfg_path.read_text())
        if tok.get("tokenizer_class") in (None, "TokenizersBackend", "PreTrainedTokenizerFast"):
            tok["tokenizer_class"] = "Qwen2TokenizerFast"  # transformers 5 name, unknown to 4.57
        if isinstance(tok.get("extra_special_tokens"), list):  # 5.x writes a list; 4.57 expects a dict
            tok["additional_special_tokens"] = tok.pop("extra_special_tokens")
        (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))


def export_gguf(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    quant: Quant = "q8_0",
    cache_dir: str | Path | None = None,
    timeout_s: float = 3600,
) -> GGUFExport:
    """Convert a Qwen2.5-VL checkpoint folder into ``out_dir/model.gguf`` and ``out_dir/mmproj.gguf``.

    Args:
        checkpoint: Hugging Face model folder (``config.json``, safetensors, tokenizer, chat template),
            e.g. one trained by ``awares_train``.
        out_dir: Folder to write; an ``awares.json`` model card in the checkpoint is copied along.
        quant: Language-model weights: ``f16``, ``q8_0`` (the converter writes both) or ``q4_k_m``
            (quantised from f16 with ``llama_cpp.llama_model_quantize``; needs llama-cpp-python).
        cache_dir: Where the converter sources and venv live (default :func:`default_cache_dir`).
        timeout_s: Limit for each converter run.

    Raises:
        BackendUnavailableError: The checkpoint folder is missing or has no config.json.
        ConversionError: The converter (or the venv set-up) failed; the message carries its output.
    """
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {QUANTS}, got {quant!r}")
    src = Path(checkpoint).expanduser()
    if not (src / "config.json").is_file():
        raise BackendUnavailableError(f"no Hugging Face checkpoint at {src} (config.json missing)")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = converter_dir(cache)
    py = converter_python(cache)
    runner = cache / "awares_convert.py"
    runner.write_text(_RUNNER)
    model_out, mmproj_out = out / "model.gguf", out / "mmproj.gguf"
    with tempfile.TemporaryDirectory(prefix="awares-gguf-") as tmp:
        staged = Path(tmp) / (src.resolve().name or "checkpoint")  # the folder name becomes general.name
        _stage_checkpoint(src, staged)
        text_type = "q8_0" if quant == "q8_0" else "f16"
        text_file = model_out if quant != "q4_k_m" else Path(tmp) / "model-f16.gguf"
        base = [str(py), str(runner), str(root), str(staged)]
        _run([*base, "--outtype", text_type, "--outfile", str(text_file)], "converting the language model", timeout_s)
        _run([*base, "--mmproj", "--outtype", "f16", "--outfile", str(mmproj_out)], "converting the projector", timeout_s)
        if quant == "q4_k_m":
            quantize(text_file, model_out, "q4_k_m")
    card = src / "awares.json"
    if card.is_file():
        shutil.copy2(card, out / "awares.json")
    if not model_out.is_file() or not mmproj_out.is_file():
        raise ConversionError(f"the converter finished but {model_out} or {mmproj_out} is missing")
    return GGUFExport(model=model_out, mmproj=mmproj_out, quant=quant, converter=str(root))


def quantize(src: str | Path, dst: str | Path, quant: str = "q4_k_m", threads: int = 0) -> Path:
    """Quantise a GGUF language model with llama.cpp (``llama_model_quantize``)."""
    llama_cpp = require_extra("llama_cpp", "llamacpp", package="llama-cpp-python")
    ftypes = {
        "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
        "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    }
    if quant not in ftypes:
        raise ValueError(f"quant must be one of {sorted(ftypes)}, got {quant!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ConversionError(f"llama_model_quantize({src} -> {dst}, {quant}) failed with code {rc}")
    return Path(dst)
