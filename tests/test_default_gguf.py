"""The embedded default model's GGUF export answers like its transformers checkpoint (llama.cpp backend)."""

from __future__ import annotations

import pytest

from awares_tool import crop_on_demand
from awares_tool.backends import default_gguf_path
from awares_tool.demo import demo_assets

GGUF = default_gguf_path().parent


@pytest.mark.skipif(not (GGUF / "model.gguf").is_file(), reason="the GGUF export of the default model is absent")
def test_gguf_default_model_matches_transformers_checkpoint():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("transformers")
    from awares_tool.backends.llamacpp import LlamaCppBackend

    image, questions = demo_assets()
    with LlamaCppBackend(GGUF / "model.gguf", mmproj=GGUF / "mmproj.gguf", n_threads=2) as gguf:
        for q in questions:
            a = crop_on_demand(image, q["question"], backend=gguf)
            b = crop_on_demand(image, q["question"], backend="default")
            assert (a.answer, a.regions, a.tokens.spent) == (b.answer, b.regions, b.tokens.spent)
            assert a.tokens.source == "backend"
