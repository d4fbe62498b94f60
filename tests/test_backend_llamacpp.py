"""LlamaCppBackend on the tiny random Qwen2.5-VL GGUF (built once by ``test_gguf_export.tiny_gguf``)."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
from PIL import Image

pytest.importorskip("llama_cpp")

from test_gguf_export import tiny_gguf  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from awares_tool.backends import resolve_backend  # noqa: E402
from awares_tool.backends.base import GenerationSettings, ImagePart, Message, TextPart  # noqa: E402
from awares_tool.backends.llamacpp import LlamaCppBackend  # noqa: E402
from awares_tool.backends.openai import move_tool_images  # noqa: E402
from awares_tool.backends.scripted import ReplayBackend  # noqa: E402
from awares_tool.cli import app  # noqa: E402
from awares_tool.errors import BackendError, BackendTimeoutError, BackendUnavailableError  # noqa: E402
from awares_tool.loop import crop_on_demand  # noqa: E402

GREEDY = GenerationSettings(max_new_tokens=6)


def noise(w: int, h: int, seed: int) -> Image.Image:
    import random

    return Image.frombytes("RGB", (w, h), random.Random(seed).randbytes(w * h * 3))


@pytest.fixture(scope="module", params=["mtmd", "qwen2.5-vl"])
def backend(request) -> Iterator[LlamaCppBackend]:
    model, mmproj = tiny_gguf()
    with LlamaCppBackend(model, mmproj=mmproj, chat_handler=request.param, n_ctx=4096, n_threads=2) as be:
        yield be


def first_turn() -> list[Message]:
    return [
        Message.text("system", "Answer, or ask GET_CROPS: ['0']."),
        Message(role="user", content=[ImagePart(image=noise(224, 168, 1)), TextPart(text="What is in the sign?")]),
    ]


def test_counts_image_tokens_itself(backend):
    # Qwen2.5-VL: ceil-ish(W/28) * (H/28) after llama.cpp's smart resize; the library reports positions instead.
    assert backend.count_image_tokens(448, 448) == 256
    assert backend.count_image_tokens(1024, 768) == 37 * 27
    gen = backend.generate(first_turn(), GREEDY)
    assert gen.usage.image_tokens == [8 * 6]
    assert gen.usage.prompt_tokens > 48 and gen.usage.prefilled_tokens == gen.usage.prompt_tokens
    assert backend._llm.n_tokens < gen.usage.prompt_tokens + gen.usage.completion_tokens  # M-RoPE positions
    assert gen.timings.prefill_s > 0 and gen.finish_reason in ("stop", "length")
    assert backend.token_family == "qwen2.5-vl"


def test_second_turn_reuses_the_cache_and_gives_the_same_reply(backend):
    t1 = backend.generate(first_turn(), GREEDY)
    follow = first_turn() + [
        Message.text("assistant", "GET_CROPS: ['0']"),
        Message(role="user", content=[ImagePart(image=noise(112, 84, 2)), TextPart(text="Here is crop 0.")]),
    ]
    reused = backend.generate(follow, GREEDY, state=t1.state)
    assert reused.usage.cached_tokens >= t1.usage.prompt_tokens  # turn one (low-res view included) not re-run
    assert reused.usage.prefilled_tokens == reused.usage.prompt_tokens - reused.usage.cached_tokens
    assert reused.usage.image_tokens == [48, 4 * 3]
    fresh = backend.generate(follow, GREEDY)  # no state: everything is prefilled again
    assert fresh.usage.cached_tokens == 0 and fresh.usage.prefilled_tokens == fresh.usage.prompt_tokens
    assert fresh.text == reused.text


def test_tool_turn_images_move_to_a_user_turn(backend):
    msgs = first_turn() + [
        Message(role="assistant", content=[], tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "get_crops", "arguments": {"regions": ["0"]}}}]),
        Message(role="tool", content=[TextPart(text="crop 0"), ImagePart(image=noise(56, 56, 3))], tool_call_id="c1"),
    ]
    gen = backend.generate(msgs, GREEDY, tools=[{"type": "function", "function": {"name": "get_crops",
                                                                                "parameters": {"type": "object"}}}])
    assert gen.usage.image_tokens == [48, 9]  # 56x56 is scaled up to llama.cpp's minimum of 8 tokens (3x3)
    prompt = backend._render(move_tool_images(msgs), None)
    assert prompt.count(backend._marker()) == 2 and "<tool_call>" in prompt


def test_image_too_large_for_the_context_names_the_limit():
    model, mmproj = tiny_gguf()
    with LlamaCppBackend(model, mmproj=mmproj, n_ctx=512, n_threads=2) as be:
        msgs = [Message(role="user", content=[ImagePart(image=Image.new("RGB", (1024, 768))), TextPart(text="hi")])]
        with pytest.raises(BackendError, match=r"n_ctx is 512.*1024x768 px\) alone takes 999 tokens"):
            be.generate(msgs, GREEDY)


def test_timeout_and_close_are_deterministic():
    model, mmproj = tiny_gguf()
    be = LlamaCppBackend(model, mmproj=mmproj, n_ctx=2048, n_threads=2)
    with pytest.raises(BackendTimeoutError, match="timeout_s"):
        be.generate(first_turn(), GenerationSettings(max_new_tokens=64, timeout_s=1e-6))
    be.close()
    be.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        be.generate(first_turn(), GREEDY)


def test_missing_files_are_unavailable(tmp_path):
    model, mmproj = tiny_gguf()
    with pytest.raises(BackendUnavailableError, match="GGUF model not found"):
        LlamaCppBackend(tmp_path / "x.gguf", mmproj=mmproj)
    with pytest.raises(BackendUnavailableError, match="mmproj"):
        LlamaCppBackend(model, mmproj=tmp_path / "none.gguf")


def test_loop_end_to_end_through_resolve_backend():
    model, mmproj = tiny_gguf()
    be = resolve_backend(f"llamacpp:{model}", mmproj=str(mmproj), n_threads=2)
    try:
        res = crop_on_demand(noise(448, 336, 4), "What is written?", backend=ReplayBackend(be, [
            "GET_CROPS: ['0', '5']", "forty-two"]), max_new_tokens=4)
        assert res.tokens.source == "backend" and res.tokens.first_view == be.count_image_tokens(224, 168) == 48
        assert res.tokens.crops == [48, 96] and res.answer == "forty-two"
    finally:
        be.close()
    # the crops turn reused turn one: only the request and the crops were prefilled
    assert res.timings[1].cached_tokens >= res.timings[0].prompt_tokens
    assert res.timings[1].prefilled_tokens == res.timings[1].prompt_tokens - res.timings[1].cached_tokens


def test_cli_ask_with_llamacpp(tmp_path):
    model, mmproj = tiny_gguf()
    img = tmp_path / "q.png"
    noise(320, 240, 5).save(img)
    res = CliRunner().invoke(app, ["ask", str(img), "What colour?", "--backend", f"llamacpp:{model}",
                                   "--mmproj", str(mmproj), "--max-new-tokens", "4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["backend"] == f"llamacpp:{model}" and out["tokens"]["source"] == "backend"
