"""TransformersBackend on tiny random VLMs of every family: generation, token counts, KV-cache reuse, the loop.

The models are random, so answers are gibberish; what is checked is structure, exact token accounting, and
that reusing the first turn's cache gives the very same logits and tokens as re-running the whole prompt.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("trl") is None:  # the Qwen and Idefics3 chat templates come from TRL (not imported: slow)
    pytest.skip("trl is not installed", allow_module_level=True)

import torch  # noqa: E402
from hf_fixtures import (  # noqa: E402,F401 - fixtures are used by name
    FAMILIES,
    QWEN_FAMILIES,
    noise_image,
    record_generate,
    single_torch_thread,
    tiny_backend,
)

from awares_tool.backends.base import Generation, GenerationSettings, ImagePart, Message, TextPart  # noqa: E402
from awares_tool.backends.hf_processors import load_processor  # noqa: E402
from awares_tool.backends.transformers import TransformersBackend, _TurnState  # noqa: E402
from awares_tool.crops import FULL_IMAGE, get_crop_set  # noqa: E402
from awares_tool.errors import BackendUnavailableError  # noqa: E402
from awares_tool.episode.loop import crop_on_demand  # noqa: E402
from awares_tool.episode.result import CropResult  # noqa: E402
from awares_tool.tokens import get_family  # noqa: E402
from awares_train.testing import build_tiny_vlm, tiny_vlm_path, token_family_overrides  # noqa: E402

pytestmark = [pytest.mark.hf, pytest.mark.usefixtures("single_torch_thread")]

NON_QWEN = tuple(f for f in FAMILIES if f not in QWEN_FAMILIES)
SHORT = GenerationSettings(max_new_tokens=6)
LONG = GenerationSettings(max_new_tokens=20)
REQUEST = "GET_CROPS: ['0', '5']"


def _turn1(seed: int = 1) -> list[Message]:
    return [
        Message.text("system", "You are a helpful assistant."),
        Message(role="user", content=[ImagePart(image=noise_image(112, 84, seed)), TextPart(text="What is written?")]),
    ]


def _turn2(first: list[Message], assistant_text: str) -> list[Message]:
    crops = [ImagePart(image=noise_image(224, 168, 2)), ImagePart(image=noise_image(168, 224, 3))]
    return [*first, Message.text("assistant", assistant_text), Message(role="user", content=[*crops, TextPart(text="Crops.")])]


def _hf_inputs(backend: TransformersBackend, messages: list[Message]):
    return backend._encode(messages, None)


# ------------------------------------------------------------------------------------------- building
def test_unknown_family_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny VLM family"):
        build_tiny_vlm("gpt-9", tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_built_folder_reloads_through_the_real_loaders(family: str) -> None:
    from transformers import AutoModelForImageTextToText

    path = tiny_vlm_path(family)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = load_processor(path)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    tok = processor.tokenizer
    assert model.generation_config.eos_token_id == tok.eos_token_id is not None
    assert model.generation_config.pad_token_id == tok.pad_token_id is not None
    if family in QWEN_FAMILIES or family == "idefics3":
        name = "idefics3" if family == "idefics3" else "qwen3_vl"
        shipped = (Path(importlib.util.find_spec("trl").origin).parent / "chat_templates" / f"{name}.jinja").read_text()
        assert processor.chat_template == shipped  # TRL recognises templates only byte for byte
    if family in QWEN_FAMILIES:
        over = token_family_overrides(family)
        assert processor.image_processor.size == {
            "shortest_edge": over["min_pixels"], "longest_edge": over["max_pixels"]
        }
        assert tok.convert_tokens_to_ids("<tool_call>") != tok.unk_token_id


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = build_tiny_vlm("llava", tmp_path / "a", seed=3)
    b = build_tiny_vlm("llava", tmp_path / "b", seed=3)
    c = build_tiny_vlm("llava", tmp_path / "c", seed=4)
    weights = [(p / "model.safetensors").read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]


# ------------------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("family", FAMILIES)
def test_generate_two_user_turns_with_images(tiny_backend, family: str) -> None:
    backend = tiny_backend(family)
    assert backend.token_family is not None
    gen1 = backend.generate(_turn1(), SHORT)
    assert isinstance(gen1, Generation) and isinstance(gen1.text, str)
    assert 1 <= gen1.usage.completion_tokens <= SHORT.max_new_tokens
    assert (gen1.finish_reason == "length") == (gen1.usage.completion_tokens == SHORT.max_new_tokens)
    assert len(gen1.usage.image_tokens) == 1 and gen1.usage.image_tokens[0] > 0
    assert gen1.timings.prefill_s > 0 and gen1.timings.decode_s >= 0

    gen2 = backend.generate(_turn2(_turn1(), REQUEST), SHORT)
    assert len(gen2.usage.image_tokens) == 3
    assert gen2.usage.prompt_tokens > gen1.usage.prompt_tokens + sum(gen2.usage.image_tokens[1:])
    assert gen2.usage.prefilled_tokens == gen2.usage.prompt_tokens and gen2.usage.cached_tokens == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_are_the_processors_real_counts(tiny_backend, family: str) -> None:
    backend = tiny_backend(family)
    messages = _turn2(_turn1(), REQUEST)
    gen = backend.generate(messages, GenerationSettings(max_new_tokens=1))
    inputs = _hf_inputs(backend, messages)
    in_prompt = int((inputs["input_ids"] == backend._image_token_id).sum())
    assert sum(gen.usage.image_tokens) == in_prompt == gen.usage.prompt_tokens - _text_tokens(inputs, backend)
    sizes = [im.size for m in messages for im in m.images]
    assert gen.usage.image_tokens == [backend.count_image_tokens(w, h) for w, h in sizes]


def _text_tokens(inputs, backend) -> int:
    return int((inputs["input_ids"] != backend._image_token_id).sum())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(64, 64), (112, 84), (448, 336), (300, 448), (100, 400)])
def test_count_image_tokens_agrees_with_token_family(tiny_backend, family: str, size: tuple[int, int]) -> None:
    backend = tiny_backend(family)
    estimate = get_family(backend.token_family, **token_family_overrides(family))
    assert backend.count_image_tokens(*size) == estimate.count(*size)


# ------------------------------------------------------------------------------------------ KV reuse
@pytest.mark.parametrize("family", QWEN_FAMILIES)
@pytest.mark.parametrize("answer_with", ["generated", "fixed"])
def test_kv_reuse_gives_identical_logits_and_tokens(tiny_backend, family: str, answer_with: str) -> None:
    reusing = tiny_backend(family, fresh=True)
    fresh = tiny_backend(family, fresh=True)
    seen_reuse, seen_fresh = record_generate(reusing), record_generate(fresh)
    first = _turn1()
    gen1 = reusing.generate(first, SHORT)
    messages = _turn2(first, gen1.text if answer_with == "generated" else REQUEST)

    # The same state twice: the cache grows in place, so the second call must crop it back first.
    for settings in (SHORT, LONG):
        got = reusing.generate(messages, settings, state=gen1.state)
        want = fresh.generate(messages, settings, state=None)
        assert got.text == want.text
        assert torch.equal(seen_reuse["sequences"], seen_fresh["sequences"])
        assert len(seen_reuse["logits"]) == len(seen_fresh["logits"]) == got.usage.completion_tokens
        for a, b in zip(seen_reuse["logits"], seen_fresh["logits"]):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        assert got.usage.cached_tokens >= gen1.usage.prompt_tokens > 0
        assert got.usage.prefilled_tokens == got.usage.prompt_tokens - got.usage.cached_tokens
        assert got.usage.prefilled_tokens < got.usage.prompt_tokens == want.usage.prompt_tokens
        assert want.usage.cached_tokens == 0 and got.usage.image_tokens == want.usage.image_tokens

    # First-step logits of the reuse path against one plain forward over the whole prompt.
    reusing.generate(messages, GenerationSettings(max_new_tokens=1), state=gen1.state)
    with torch.inference_mode():
        full = reusing.model(**_hf_inputs(reusing, messages)).logits[:, -1]
    torch.testing.assert_close(seen_reuse["logits"][0], full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_state_of_another_conversation_reuses_only_text_before_the_image(tiny_backend, family: str) -> None:
    # Every image expands to the same placeholder ids, so equal ids must not mean "same keys/values".
    backend = tiny_backend(family, fresh=True)
    other = backend.generate(_turn1(seed=1), SHORT)
    mine = _turn1(seed=7)  # same size and text, different pixels
    got = backend.generate(mine, LONG, state=other.state)
    want = tiny_backend(family, fresh=True).generate(mine, LONG)
    assert got.text == want.text
    first_image = int((_hf_inputs(backend, mine)["input_ids"][0] == backend._image_token_id).nonzero()[0])
    assert 0 < got.usage.cached_tokens <= first_image


@pytest.mark.parametrize("family", NON_QWEN)
def test_other_families_fall_back_to_full_prefill(tiny_backend, family: str) -> None:
    backend = tiny_backend(family)
    first = _turn1()
    gen1 = backend.generate(first, SHORT)
    assert gen1.state is not None
    messages = _turn2(first, REQUEST)
    got = backend.generate(messages, LONG, state=gen1.state)
    want = tiny_backend(family, fresh=True).generate(messages, LONG)
    assert got.usage.cached_tokens == 0 and got.usage.prefilled_tokens == got.usage.prompt_tokens
    assert got.text == want.text and got.usage == want.usage


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("family", ["qwen2.5-vl", "llava"])
def test_corrupt_state_is_ignored(tiny_backend, family: str) -> None:
    backend = tiny_backend(family)
    messages = _turn2(_turn1(), REQUEST)
    want = backend.generate(messages, SHORT)
    corrupt = ["garbage", {"cache": 1}, _TurnState(cache=None, ids=torch.tensor([1, 2, 3]))]
    for state in corrupt:
        got = backend.generate(messages, SHORT, state=state)
        assert got.text == want.text and got.usage.cached_tokens == 0


def test_missing_or_empty_model_folder(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="not found"):
        TransformersBackend(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendUnavailableError):
        TransformersBackend(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ whole loop
MODES = ("awares", "lowres", "fullres", "all_crops", "full_on_request")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_crop_on_demand_runs_every_mode(tiny_backend, family: str, mode: str) -> None:
    backend = tiny_backend(family)
    image = noise_image(448, 336, 11)
    result = crop_on_demand(image, "What is written on the sign?", backend=backend, mode=mode, max_new_tokens=6)
    assert isinstance(result, CropResult) and result.mode == mode and result.image_size == (448, 336)
    assert result.tokens.rtr is not None and result.tokens.rtr > 0
    assert result.tokens.source == "backend"
    assert result.tokens.full == backend.count_image_tokens(448, 336)
    roles = [m["role"] for m in result.trace]
    if mode in ("awares", "all_crops", "full_on_request"):  # the protocol's system prompt comes first
        assert roles[0] == "system"
        body = roles[1:]
    else:
        assert "system" not in roles
        body = roles
    assert body[::2] == ["user"] * len(body[::2]) and body[1::2] == ["assistant"] * len(body[1::2])
    assert roles[-1] == "assistant" and len(result.timings) >= 1
    if mode == "fullres":
        assert result.first_view_size == (448, 336)
        assert result.tokens.rtr == 1.0 and result.tokens.full == backend.count_image_tokens(448, 336)
    else:
        assert result.first_view_size == (224, 168)
    if mode == "lowres" and family in ("qwen2-vl", "qwen2.5-vl"):  # 448x336 and 224x168 are multiples of 28 px
        assert result.tokens.rtr == 0.25
    if mode == "all_crops":
        expected = [n for n in get_crop_set("awares9").region_names() if n != FULL_IMAGE]
        assert result.regions == expected and len(expected) == 9
        assert roles == ["system", "user", "assistant", "user", "assistant"]
        images_in_crop_turn = [p for p in result.trace[3]["content"] if p["type"] == "image"]
        assert len(images_in_crop_turn) == 9 and len(result.tokens.crops) == 9
        assert result.tokens.spent == result.tokens.first_view + sum(result.tokens.crops)
    if mode in ("lowres", "fullres"):
        assert result.rounds == 0
