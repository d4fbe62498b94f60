"""The AwaRes loop, driven by scripted backends: every mode, limits, fallbacks and bad input."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image, ImageDraw

from awares_tool import ScriptedBackend, crop_on_demand, crop_on_demand_batch, acrop_on_demand
from awares_tool.backends.base import GenerationSettings, ImagePart
from awares_tool.errors import BackendError, ImageDecodeError, MalformedRequestError, UnknownRegionError
from awares_tool.tokens import get_family


@pytest.fixture
def image() -> Image.Image:
    img = Image.new("RGB", (1024, 768), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((600, 50, 1000, 300), fill="red")  # something in the top-right quarter
    return img


def q25(w: int, h: int) -> int:
    return get_family("qwen2.5-vl").count(w, h)


def test_direct_answer_costs_only_the_lowres_view(image):
    be = ScriptedBackend(["red"])
    res = crop_on_demand(image, "What colour is the box?", backend=be)
    assert res.answer == "red" and res.answered and res.rounds == 0 and res.regions == []
    assert res.first_view_size == (512, 384)
    assert res.tokens.spent == q25(512, 384) and res.tokens.full == q25(1024, 768)
    assert res.tokens.rtr == pytest.approx(q25(512, 384) / q25(1024, 768))
    assert res.tokens.pixel_ratio == pytest.approx(0.25)
    # the model saw a system prompt listing the crop map, then the low-res view and the question
    sent = be.calls[0]
    assert sent[0].role == "system" and "GET_CROPS" in sent[0].text_content
    assert sent[1].images[0].size == (512, 384)


def test_crop_request_sends_the_original_pixels_next_turn(image):
    be = ScriptedBackend(["GET_CROPS: ['1']", "a red box"])
    res = crop_on_demand(image, "What is in the top right?", backend=be)
    assert res.answer == "a red box" and res.rounds == 1 and res.regions == ["1"]
    assert res.requests[0].boxes["1"] == (512, 0, 1024, 384)
    second = be.calls[1]
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[2].text_content == "GET_CROPS: ['1']"
    crop = second[3].images[0]
    assert crop.size == (512, 384)
    assert crop.getpixel((200, 100)) == (255, 0, 0)  # full-resolution red from the original, not the low-res view
    assert second[1].images[0].size == (512, 384)  # the low-res view stays in context
    assert res.tokens.crops == [q25(512, 384)]
    assert res.tokens.rtr == pytest.approx(2 * q25(512, 384) / q25(1024, 768))
    assert [t["role"] for t in res.trace] == ["system", "user", "assistant", "user", "assistant"]


def test_multi_crop_request_of_the_official_prompt_is_honoured(image):
    be = ScriptedBackend(["GET_CROPS: ['0', '5']", "done"])
    res = crop_on_demand(image, "q", backend=be)
    assert res.regions == ["0", "5"] and len(be.calls[1][-1].images) == 2


def test_model_that_never_stops_requesting_is_forced_then_marked_unanswered(image):
    be = ScriptedBackend(["GET_CROPS: ['0']"], repeat_last=True)
    res = crop_on_demand(image, "q", backend=be, max_rounds=1)
    assert res.rounds == 1 and res.forced_answer and not res.answered
    assert len(be.calls) == 3  # request, request after crops, request after the "answer now" turn
    assert "No more crops" in be.calls[2][-1].text_content


def test_forced_answer_after_last_round(image):
    be = ScriptedBackend(["GET_CROPS: ['0']", "GET_CROPS: ['3']", "fine, 42"])
    res = crop_on_demand(image, "q", backend=be, max_rounds=1)
    assert res.answer == "fine, 42" and res.forced_answer and res.answered and res.regions == ["0"]


def test_unknown_region_falls_back_to_full_image_by_default(image):
    be = ScriptedBackend(["GET_CROPS: ['top-left-ish']", "ok"])
    res = crop_on_demand(image, "q", backend=be)
    assert res.requests[0].invalid == ["top-left-ish"] and res.regions == ["all"]
    assert res.requests[0].fallback == "full_image"
    assert be.calls[1][-1].images[0].size == (1024, 768)


def test_unknown_region_can_be_an_error(image):
    be = ScriptedBackend(["GET_CROPS: ['nope']"])
    with pytest.raises(UnknownRegionError):
        crop_on_demand(image, "q", backend=be, on_unknown="error")


def test_malformed_request_documented_fallback_and_error(image):
    res = crop_on_demand(image, "q", backend=ScriptedBackend(["GET_CROPS: [", "ok"]))
    assert res.regions == ["all"] and res.requests[0].fallback == "full_image"
    with pytest.raises(MalformedRequestError):
        crop_on_demand(image, "q", backend=ScriptedBackend(["GET_CROPS: ["]), on_malformed="error")


def test_max_crops_truncates(image):
    be = ScriptedBackend(["GET_CROPS: ['0', '1', '2', '3']", "ok"])
    res = crop_on_demand(image, "q", backend=be, max_crops=2)
    assert res.regions == ["0", "1"] and res.requests[0].fallback == "truncated"


def test_lowres_mode_never_crops(image):
    be = ScriptedBackend(["GET_CROPS: ['0']", "blue"])
    res = crop_on_demand(image, "q", backend=be, mode="lowres")
    assert res.regions == [] and res.answer == "blue" and res.forced_answer
    assert be.calls[0][0].role == "user"  # no crop protocol prompt in the baseline
    assert res.tokens.rtr == pytest.approx(q25(512, 384) / q25(1024, 768))


def test_fullres_mode_costs_one(image):
    be = ScriptedBackend(["red"])
    res = crop_on_demand(image, "q", backend=be, mode="fullres")
    assert be.calls[0][0].images[0].size == (1024, 768)
    assert res.tokens.rtr == pytest.approx(1.0) and res.first_view_size == (1024, 768)


def test_all_crops_mode_sends_every_region_without_asking(image):
    be = ScriptedBackend(["ok"])
    res = crop_on_demand(image, "q", backend=be, mode="all_crops")
    assert res.regions == [str(i) for i in range(9)]
    assert len(be.calls) == 1 and len(be.calls[0][-1].images) == 9
    assert res.tokens.rtr > 1.0  # fetching everything costs more than the full image


def test_full_on_request_sends_whole_image(image):
    be = ScriptedBackend(["GET_CROPS: ['1']", "ok"])
    res = crop_on_demand(image, "q", backend=be, mode="full_on_request")
    assert res.requests[0].requested == ["1"] and res.regions == ["all"]
    assert be.calls[1][-1].images[0].size == (1024, 768)
    assert res.tokens.rtr == pytest.approx((q25(512, 384) + q25(1024, 768)) / q25(1024, 768))


def test_qwen_tool_call_and_openai_function_call(image):
    be = ScriptedBackend(['<tool_call>{"name": "get_crops", "arguments": {"regions": ["2"]}}</tool_call>', "x"])
    assert crop_on_demand(image, "q", backend=be).regions == ["2"]


def test_bbox_zoom_calls_crop_the_box_itself(image):
    call = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [500, 0, 1000, 500]}}</tool_call>'
    be = ScriptedBackend([call, "x"])
    res = crop_on_demand(image, "q", backend=be, bbox_units="norm1000")
    assert res.requests[0].form == "bbox"
    assert list(res.requests[0].boxes.values()) == [(512, 0, 1024, 384)]


def test_custom_crop_set_and_lowres_policy(image):
    be = ScriptedBackend(["GET_CROPS: ['r0c2']", "x"])
    res = crop_on_demand(image, "q", backend=be, crop_set="grid:3x3", lowres="256px")
    assert res.first_view_size == (256, 192) and res.regions == ["r0c2"]
    assert "r0c2" in be.calls[0][0].text_content


def test_model_card_defaults_are_used(image):
    from awares_tool.backends.base import ModelCard

    card = ModelCard(system_prompt="TINY PROMPT", crops_turn_text="Crops {regions}.", lowres={"kind": "scale", "factor": 0.25})
    be = ScriptedBackend(["GET_CROPS: ['3']", "x"], model_card=card)
    res = crop_on_demand(image, "q", backend=be)
    assert be.calls[0][0].text_content == "TINY PROMPT"
    assert res.first_view_size == (256, 192)
    assert be.calls[1][-1].text_content == "Crops 3."


def test_backend_error_propagates_typed(image):
    with pytest.raises(BackendError):
        crop_on_demand(image, "q", backend=ScriptedBackend([BackendError("server down")]))


def test_bad_image_is_typed_error():
    with pytest.raises(ImageDecodeError):
        crop_on_demand(b"not an image", "q", backend=ScriptedBackend(["x"]))


def test_batch_keeps_going_and_keeps_order(image, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")

    def reply(messages):
        q = messages[-1].text_content
        return "boom" if q == "q2" else f"answer to {q}"

    results = crop_on_demand_batch(
        [(image, "q1"), (str(bad), "q-bad"), (image, "q2"), (str(tmp_path / "missing.png"), "q-missing")],
        backend=ScriptedBackend(reply), progress=False, concurrency=2,
    )
    assert [r.question for r in results] == ["q1", "q-bad", "q2", "q-missing"]
    assert results[0].answer == "answer to q1" and results[2].answer == "boom"
    assert not results[1].answered and "ImageDecodeError" in results[1].error
    assert not results[3].answered and "ImageNotFoundError" in results[3].error


def test_async_twin(image):
    res = asyncio.run(acrop_on_demand(image, "q", backend=ScriptedBackend(["yes"])))
    assert res.answer == "yes"


def test_max_new_tokens_reaches_backend(image):
    seen = []

    class Spy(ScriptedBackend):
        def generate(self, messages, settings: GenerationSettings, **kw):
            seen.append(settings.max_new_tokens)
            return super().generate(messages, settings, **kw)

    crop_on_demand(image, "q", backend=Spy(["x"]), max_new_tokens=7)
    assert seen == [7]


def test_no_default_model_gives_clear_error(image, monkeypatch, tmp_path):
    import awares_tool.backends as backends
    from awares_tool.errors import BackendUnavailableError

    monkeypatch.setattr(backends, "_MODELS_DIR", tmp_path)
    with pytest.raises(BackendUnavailableError, match="transformers:PATH"):
        crop_on_demand(image, "q")


def test_trace_has_no_pixels(image):
    res = crop_on_demand(image, "q", backend=ScriptedBackend(["GET_CROPS: ['4']", "x"]))
    dumped = res.model_dump_json()
    assert "GET_CROPS" in dumped and len(dumped) < 20_000
    assert isinstance(ImagePart(image=image).size, tuple)


def test_tool_call_answered_in_tool_turn_when_backend_renders_tool_images(image):
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"regions": ["3"]}}\n</tool_call>'
    be = ScriptedBackend([call, "x"])
    be.supports_tool_images = True
    res = crop_on_demand(image, "q", backend=be)
    second = be.calls[1]
    assert [m.role for m in second] == ["system", "user", "assistant", "tool"]
    assert second[-1].images[0].size == (512, 384) and res.regions == ["3"]
    # the same request from a backend without tool images gets the crops in a user turn
    be2 = ScriptedBackend([call, "x"])
    crop_on_demand(image, "q", backend=be2)
    assert [m.role for m in be2.calls[1]][-1] == "user"


def test_model_card_tool_format_declares_the_tool(image):
    from awares_tool.backends.base import ModelCard

    seen = []

    class Spy(ScriptedBackend):
        def generate(self, messages, settings, *, state=None, tools=None):
            seen.append(tools)
            return super().generate(messages, settings, state=state, tools=tools)

    crop_on_demand(image, "q", backend=Spy(["x"], model_card=ModelCard(request_format="tool")))
    assert seen[0] and seen[0][0]["function"]["name"] == "get_crops"
