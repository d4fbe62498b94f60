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
from awares_tool.episode.loop import crop_on_demand  # noqa: E402

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


def tool_turn(crop: Image.Image) -> list[Message]:
    """Turn one, a get_crops call, and the crop answered inside the tool turn (as TRL's tool loop trains)."""
    return first_turn() + [
        Message(role="assistant", content=[], tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "get_crops", "arguments": {"regions": ["0"]}}}]),
        Message(role="tool", content=[ImagePart(image=crop), TextPart(text="Here is the crop.")], tool_call_id="c1"),
    ]


TOOLS = [{"type": "function", "function": {"name": "get_crops", "parameters": {"type": "object"}}}]


def test_tool_turn_images_stay_in_the_tool_turn_where_the_template_renders_them(backend):
    msgs = tool_turn(noise(56, 56, 3))
    gen = backend.generate(msgs, GREEDY, tools=TOOLS)
    assert gen.usage.image_tokens == [48, 9]  # 56x56 is scaled up to llama.cpp's minimum of 8 tokens (3x3)
    if backend.handler_kind == "mtmd":  # the GGUF's own (Qwen/TRL) template renders tool-turn content parts
        assert backend.supports_tool_images
        prompt = backend._render(msgs, None)
        assert prompt.index("<tool_response>") < prompt.rindex(backend._marker()) < prompt.index("</tool_response>")
    else:  # Qwen25VLChatHandler's fixed template has no tool turn: the crop moves to a user turn
        assert not backend.supports_tool_images
        prompt = backend._render(move_tool_images(msgs), None)
        assert prompt.count(backend._marker()) == 2 and "<tool_call>" in prompt
        with pytest.raises(BackendError, match="only in user turns"):
            backend._render(msgs, None)


def test_tool_turn_prompt_and_reply_match_transformers():
    """The same checkpoint through transformers and through its GGUF: same prompt length, same greedy reply."""
    pytest.importorskip("transformers")
    from awares_tool.backends.transformers import TransformersBackend

    model, mmproj = tiny_gguf()
    # 4x3 tokens in both (llama.cpp scales smaller images up); no digit after a space in the text: the test
    # checkpoint's tokenizer keeps " 0" whole where llama.cpp's Qwen2 pre-tokenizer splits it
    msgs = tool_turn(noise(112, 84, 3))
    hf = TransformersBackend(model.parent / "hf")
    assert hf.supports_tool_images
    want = hf.generate(msgs, GREEDY, tools=TOOLS)
    with LlamaCppBackend(model, mmproj=mmproj, chat_handler="mtmd", n_ctx=4096, n_threads=2) as be:
        got = be.generate(msgs, GREEDY, tools=TOOLS)
    assert got.usage.image_tokens == want.usage.image_tokens == [48, 12]
    assert got.usage.prompt_tokens == want.usage.prompt_tokens
    assert got.text == want.text


def test_qwen3_vl_gguf_sees_the_image_grid_transformers_sees():
    """Qwen3-VL rounds sides to 32 px and scales images up to 65536 px (the real checkpoint's processor); libmtmd
    does neither by itself, so the backend resizes first: every size costs the same tokens on both stacks."""
    pytest.importorskip("transformers")
    from awares_tool.backends.transformers import TransformersBackend

    model, mmproj = tiny_gguf("qwen3-vl", checkpoint=True)
    hf = TransformersBackend(model.parent / "hf")
    with LlamaCppBackend(model, mmproj=mmproj, n_ctx=8192, n_threads=2) as be:
        assert be.token_family == "qwen3-vl"
        # under the minimum (scaled up), odd sides, a wide strip, a photo-sized one
        for w, h in [(64, 64), (250, 150), (500, 301), (900, 120), (1000, 700)]:
            msgs = [Message(role="user", content=[ImagePart(image=noise(w, h, w)), TextPart(text="What is it?")])]
            want = hf.generate(msgs, GREEDY)
            got = be.generate(msgs, GREEDY)
            assert got.usage.image_tokens == want.usage.image_tokens, (w, h)
            assert got.usage.prompt_tokens == want.usage.prompt_tokens, (w, h)
    assert want.usage.image_tokens == [31 * 22]  # 1000x700 -> 992x704 on the 32-px grid


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
