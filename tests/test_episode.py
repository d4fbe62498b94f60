"""The crop episode: the one object the loop, the GRPO environment, the tools and the trajectory builder drive."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from awares_tool import ScriptedBackend, crop_on_demand
from awares_tool.episode import CropEpisode, CropOptions
from awares_tool.episode.costs import oracle_rtr
from awares_tool.errors import MalformedRequestError, RequestError, TooManyCropsError, UnknownRegionError
from awares_tool.protocol import CropRequest, FinalAnswer
from awares_tool.tokens import get_family

QWEN = get_family("qwen2.5-vl")  # AwaRes pixel settings: max 1,605,632 pixels


def gradient(w: int, h: int) -> Image.Image:
    """Every pixel different along both axes, so a wrong crop box cannot give the right pixels."""
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    for x in range(0, w, 7):
        draw.line([(x, 0), (x, h)], fill=(x % 256, (x // 3) % 256, 90))
    for y in range(0, h, 5):
        draw.line([(0, y), (w, y)], fill=(40, y % 256, (y // 2) % 256))
    return img


def test_first_view_and_crops_come_from_the_original_pixels():
    img = gradient(640, 480)
    ep = CropEpisode(img, crops_template="Crop {regions} at full resolution.")
    assert ep.first_view().size == (320, 240)
    turn = ep.fetch(ep.request_regions(["3", "0"]))
    assert turn.names == ["3", "0"] and turn.boxes == [(320, 240, 640, 480), (0, 0, 320, 240)]
    assert turn.images[0].tobytes() == img.crop((320, 240, 640, 480)).tobytes()
    assert turn.text == "Crop 3, 0 at full resolution."
    assert [p["type"] for p in turn.parts()] == ["image", "image", "text"]
    assert ep.ledger.regions == ["3", "0"] and ep.ledger.area_fraction == pytest.approx(0.5)
    with pytest.raises(RequestError, match="only 1 time"):
        ep.fetch(ep.request_regions(["1"]))


def test_parse_reads_every_form_and_applies_the_loop_policies():
    ep = CropEpisode(gradient(400, 300))
    assert isinstance(ep.parse("It is blue."), FinalAnswer)
    req = ep.parse("GET_CROPS: ['3', 'nine']")
    assert isinstance(req, CropRequest) and req.regions == ["3"] and req.invalid == ["nine"]
    call = {"name": "get_crops", "arguments": {"regions": ["5"]}}
    assert ep.parse(call).regions == ["5"]
    broken = ep.parse("GET_CROPS: ['0'")  # unreadable: the documented fallback is the full image
    assert broken.regions == ["all"] and broken.fallback == "full_image"
    with pytest.raises(MalformedRequestError):
        ep.parse("GET_CROPS: ['0'", on_malformed="error")


def test_tool_requests_are_strict():
    ep = CropEpisode(gradient(400, 300), max_crops=2)
    with pytest.raises(UnknownRegionError, match="unknown region 'nine'"):
        ep.request_regions(["nine"])
    with pytest.raises(TooManyCropsError, match="3 regions requested, but at most 2"):
        ep.request_regions(["0", "1", "2"])
    for bad in ([], "3", [3], None, {"regions": ["0"]}):
        with pytest.raises(MalformedRequestError, match="non-empty list of region names"):
            ep.request_regions(bad)
    assert ep.request_regions(["3", "3"]).regions == ["3"]


def test_withdrawn_crops_cost_nothing():
    ep = CropEpisode(gradient(400, 200), counter=lambda w, h: (w // 100) * (h // 100) or 1)
    ep.first_view()
    turn = ep.fetch(ep.request_regions(["5"]))
    assert ep.ledger.rtr == pytest.approx((2 + 4) / 8)  # low 200x100 -> 2, top half 400x100 -> 4, full 8
    ep.withdraw(turn)
    assert ep.ledger.regions == [] and len(ep.ledger.withdrawn) == 1
    assert ep.ledger.rtr == pytest.approx(2 / 8) and ep.ledger.crop_rtr == 0.0


def test_full_on_request_answers_any_request_with_the_whole_image():
    ep = CropEpisode(gradient(300, 200), mode="full_on_request")
    turn = ep.fetch(ep.parse("GET_CROPS: ['0']"))
    assert turn.names == ["all"] and turn.images[0].size == (300, 200)


def test_large_photo_first_view_costs_a_quarter_of_what_the_model_sees():
    """#18: above the pixel cap, halving the native image saves nothing; halve the capped view instead."""
    img = Image.new("RGB", (4032, 3024), "white")
    naive = CropEpisode(img, counter=QWEN.count)
    assert QWEN.count(*naive.first_view_size()) == QWEN.count(4032, 3024)  # the old outcome: RTR 1.0
    uncapped = get_family("qwen2.5-vl", max_pixels=10**13)
    ep = CropEpisode(img, counter=QWEN.count, model_max_pixels=QWEN.max_pixels, native_counter=uncapped.count)
    ep.first_view()
    ledger = ep.ledger.token_ledger()
    assert ledger.full == QWEN.count(4032, 3024) == 2028
    assert ledger.rtr <= 0.3 and ledger.first_view == ledger.spent  # 520 tokens: 0.256
    assert ledger.full_native == uncapped.count(4032, 3024) == 15552
    assert ledger.rtr_native == pytest.approx(ledger.spent / 15552)
    small = CropEpisode(gradient(448, 448), counter=QWEN.count, model_max_pixels=QWEN.max_pixels,
                        native_counter=lambda w, h: 10**6)
    small.first_view()
    assert small.ledger.native_tokens == small.ledger.full_tokens  # under the cap both baselines agree


def test_oracle_rtr_prices_exactly_what_an_episode_spends():
    img = gradient(1000, 800)
    ep = CropEpisode(img, counter=QWEN.count)
    ep.first_view()
    ep.fetch(ep.request_regions(["4"]))
    assert oracle_rtr((1000, 800), ["4"], "qwen2.5-vl") == pytest.approx(ep.ledger.rtr)
    assert oracle_rtr((1000, 800), [], "qwen2.5-vl") == pytest.approx(
        QWEN.count(500, 400) / QWEN.count(1000, 800))


def test_the_loop_uses_the_episode_costs_for_a_large_photo():
    img = Image.new("RGB", (4032, 3024), "white")
    res = crop_on_demand(img, "What is it?", backend=ScriptedBackend(["A wall."]))
    w, h = res.first_view_size
    assert w * h <= QWEN.max_pixels / 4 + 2 * (w + h)
    assert res.tokens.rtr <= 0.3 and res.tokens.rtr_native < 0.05


def test_options_travel_as_one_object_and_keywords_override_them():
    be = ScriptedBackend(["GET_CROPS: ['0', '1', '2']", "ok"])
    opts = CropOptions(max_crops=1, mode="awares")
    res = crop_on_demand(gradient(400, 300), "q", backend=be, options=opts)
    assert res.regions == ["0"] and res.requests[0].fallback == "truncated"
    res = crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend(["x"]), options=opts, mode="lowres")
    assert res.mode == "lowres"
    with pytest.raises(TypeError, match="zoom"):
        crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend(["x"]), zoom=2)
    with pytest.raises(ValueError, match="max_crops"):
        crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend(["x"]), max_crops=0)


def test_awares_tokens_on_a_12_megapixel_photo():
    """#18 acceptance: the low-res view costs at most 0.3 of the capped full view."""
    import json

    from typer.testing import CliRunner

    from awares_tool.cli import app

    out = CliRunner().invoke(app, ["tokens", "4032x3024", "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert rep["lowres"] / rep["full"] <= 0.3 and rep["rtr_lowres"] <= 0.3
    assert rep["full"] == 2028 and rep["full_native"] == 15552


def test_the_keyword_in_prose_is_answered_without_fetching_anything():
    """#17: the loop used to read this as a malformed request, fetch the full image (RTR 1.25) and ask again."""
    reply = "No need to call get_crops. The answer is 7."
    res = crop_on_demand(gradient(400, 300), "How many?", backend=ScriptedBackend([reply]))
    assert res.answer == reply and res.regions == [] and res.rounds == 0 and res.tokens.rtr < 0.3


def test_an_empty_reply_is_no_answer():
    """#17: '' counted as answered; now the model is told once to answer, then the result says it did not."""
    res = crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend(["   ", "blue"]))
    assert res.answered and res.answer == "blue" and res.forced_answer
    res = crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend(["", "<think>hmm"]))
    assert not res.answered and res.answer == "" and res.reasoning == "hmm"


def test_reasoning_stays_in_the_trace_not_in_the_answer():
    """#17: <think>...</think> was returned as part of the answer."""
    be = ScriptedBackend(["<think>tiny digits, crop 3</think>GET_CROPS: ['3']", "<think>it reads 42</think> 42"])
    res = crop_on_demand(gradient(400, 300), "What is the code?", backend=be)
    assert res.answer == "42" and res.reasoning == "it reads 42" and res.regions == ["3"]
    assert "<think>it reads 42</think>" in res.trace[-1]["content"][0]["text"]


def test_a_zoom_token_budget_caps_what_is_sent():
    ep = CropEpisode(gradient(2000, 1500), counter=QWEN.count, model_max_pixels=QWEN.max_pixels)
    call = {"name": "computer", "arguments": {"action": "zoom", "region": [1100, 800, 1900, 1400], "token_budget": 200}}
    turn = ep.fetch(ep.parse(call, bbox_units="pixels"))
    assert turn.names == ["3"] and QWEN.count(*turn.images[0].size) <= 200
    assert turn.images[0].size[0] / turn.images[0].size[1] == pytest.approx(1000 / 750, rel=0.02)
    assert ep.ledger.token_ledger().crops == [QWEN.count(*turn.images[0].size)]


@pytest.mark.parametrize("delivery, role", [("user", "user"), ("tool", "tool"), ("auto", "user")])
def test_crop_delivery_puts_the_crops_where_asked(delivery, role):
    """#20: inside the tool result, or moved to a follow-up user turn."""
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"regions": ["3"]}}\n</tool_call>'
    res = crop_on_demand(gradient(400, 300), "q", backend=ScriptedBackend([call, "ok"]), crop_delivery=delivery)
    crops_turn = res.trace[-2]
    assert crops_turn["role"] == role and crops_turn["content"][0]["type"] == "image"
