"""The package surface: public names, core-only imports, extras hints."""

from __future__ import annotations

import subprocess
import sys

import awares_tool

PUBLIC = {
    "__version__", "crop_on_demand", "acrop_on_demand", "crop_on_demand_batch", "CropResult", "VLMBackend",
    "Message", "GenerationSettings", "ModelCard", "ScriptedBackend", "resolve_backend", "CropSet", "get_crop_set",
    "FULL_IMAGE", "make_lowres_view", "parse_lowres", "draw_overlay", "open_image", "load_image", "SourceImage",
    "ImageLimits", "ImageStore", "build_system_prompt", "parse_reply", "CropRequest", "FinalAnswer",
    "count_visual_tokens", "get_family", "rtr", "AwaresError", "ImageError", "RequestError", "BackendError",
    "MissingExtraError",
}


def test_public_surface_is_pinned():
    assert set(awares_tool.__all__) == PUBLIC
    for name in awares_tool.__all__:
        assert hasattr(awares_tool, name), name


def test_core_import_pulls_no_heavy_library():
    code = (
        "import sys, awares_tool, awares_tool.cli, awares_tool.demo\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'llama_cpp', 'langchain_core', 'mcp', 'trl', 'peft')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core import pulled in: {out.stdout}"


def test_missing_extra_names_the_extra():
    from awares_tool.errors import MissingExtraError, require_extra

    try:
        require_extra("awares_surely_missing_module", "llamacpp", package="llama-cpp-python")
    except MissingExtraError as e:
        assert "pip install 'awares[llamacpp]'" in str(e) and "llama-cpp-python" in str(e)
        assert isinstance(e, ImportError)
    else:  # pragma: no cover - the import must fail
        raise AssertionError("expected MissingExtraError")


def test_old_module_paths_still_import_with_a_deprecation_warning():
    """0.2 moved modules into crops/, images/, tokens/, episode/; 0.1 imports work for one release."""
    import importlib

    import pytest

    from awares_tool._moved import MOVED_MODULES

    for old, new in MOVED_MODULES.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            mod = importlib.import_module(old)
        assert mod is importlib.import_module(new), old
    with pytest.warns(DeprecationWarning, match="episode.costs"):
        from awares_tool.tokens import token_report
    from awares_tool.episode.costs import token_report as moved

    assert token_report is moved


def test_wheel_ships_the_embedded_default_but_not_the_reproductions_base(tmp_path):
    """Users of the wheel run tiny-awares (and its GGUF); tiny-base is for `make reproduce` in a checkout."""
    import shutil
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    for pkg in ("awares_tool", "awares_train"):
        shutil.copytree(root / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(src), "-w", str(tmp_path / "out")], check=True)
    (wheel,) = (tmp_path / "out").glob("awares-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "awares_tool/models/tiny-awares/model.safetensors" in names
    assert "awares_tool/models/tiny-awares-gguf/model.gguf" in names
    assert "awares_tool/py.typed" in names and "awares_train/py.typed" in names
    assert "awares_train/configs/sft_tiny_bench.yaml" in names and "awares_train/configs/accelerate/zero3.yaml" in names
    assert not [n for n in names if "/tiny-base/" in n]


def test_reproduction_without_its_base_says_where_it_is(monkeypatch, tmp_path):
    import pytest

    import awares_tool
    from awares_train.reproduce.pipeline import default_base

    assert (default_base() / "model.safetensors").is_file()  # a checkout has it
    monkeypatch.setattr(awares_tool, "__file__", str(tmp_path / "awares_tool" / "__init__.py"))
    with pytest.raises(FileNotFoundError, match="--base"):
        default_base()
