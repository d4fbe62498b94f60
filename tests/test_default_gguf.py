"""The embedded default model's GGUF export answers like its transformers checkpoint (llama.cpp backend)."""

from __future__ import annotations

import pytest

from awares_tool import crop_on_demand
from awares_tool.backends import default_gguf_path
from awares_tool.demo import demo_items

GGUF = default_gguf_path().parent


@pytest.mark.skipif(not (GGUF / "model.gguf").is_file(), reason="the GGUF export of the default model is absent")
def test_gguf_default_model_matches_transformers_checkpoint():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("transformers")
    from awares_tool.backends.llamacpp import LlamaCppBackend

    from awares_train.data.synthetic import SyntheticConfig, generate_sample

    cases = [(image, q["question"]) for image, q in demo_items()]  # the demo's, benchmark items included
    # and the first 12 questions of the reproduction's test split (9 of them need a crop)
    samples = [generate_sample(i, SyntheticConfig(font_size=28, seed=0), "test") for i in range(12)]
    cases += [(s.image, s.question) for s in samples]
    with LlamaCppBackend(GGUF / "model.gguf", mmproj=GGUF / "mmproj.gguf", n_threads=2) as gguf:
        for img, question in cases:
            a = crop_on_demand(img, question, backend=gguf)
            b = crop_on_demand(img, question, backend="default")
            assert (a.answer, a.regions, a.tokens.spent) == (b.answer, b.regions, b.tokens.spent), question
            assert a.tokens.source == "backend"
    assert sum(bool(s.target_regions) for s in samples) == 9
