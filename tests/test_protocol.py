"""The crop protocol: prompts, the get_crops tool and parse_reply on every request form and policy."""

from __future__ import annotations

import json

import pytest

from awares_tool.crops import get_crop_set
from awares_tool.errors import (
    AwaresError,
    MalformedRequestError,
    RequestError,
    TooManyCropsError,
    UnknownRegionError,
)
from awares_tool.protocol import (
    FORCE_ANSWER_TEXT,
    GET_CROPS_TOOL,
    CropRequest,
    FinalAnswer,
    GetCropsArgs,
    build_system_prompt,
    crops_turn_text,
    example_request,
    get_crops_tool,
    parse_reply,
)

AWARES9 = get_crop_set("awares9")
GRID = get_crop_set("grid:3x3")


def req(reply, **kw) -> CropRequest:
    out = parse_reply(reply, **kw)
    assert isinstance(out, CropRequest), out
    return out


# --- prompts and tool ----------------------------------------------------------------------------


@pytest.mark.parametrize("crop_set", [AWARES9, GRID], ids=["awares9", "grid3x3"])
@pytest.mark.parametrize("style", ["full", "compact", "tool"])
def test_system_prompt_lists_every_region(crop_set, style):
    prompt = build_system_prompt(crop_set, style=style)
    for region in crop_set.regions:
        assert region.name in prompt
        assert region.description in prompt


def test_full_prompt_teaches_the_text_form_and_one_round():
    prompt = build_system_prompt(AWARES9)
    assert "low-resolution" in prompt
    assert "GET_CROPS: ['3']" in prompt and "GET_CROPS: ['0', '5']" in prompt
    assert "only once" in prompt
    assert AWARES9.describe() in prompt


def test_prompt_examples_parse_to_their_names():
    # The examples the prompt shows must themselves be valid requests, for every set.
    for crop_set in (AWARES9, GRID):
        prompt = build_system_prompt(crop_set)
        line = next(ln for ln in prompt.splitlines() if "GET_CROPS" in ln)
        example = line[line.index("GET_CROPS") :].split(" or ")[0]
        out = req(example, crop_set=crop_set)
        assert out.regions and all(crop_set.has(n) for n in out.regions)


def test_tool_prompt_names_the_tool_not_the_text_form():
    prompt = build_system_prompt(AWARES9, style="tool")
    assert "`get_crops` tool" in prompt
    assert "GET_CROPS:" not in prompt


def test_compact_prompt_is_short_and_on_one_region_line():
    compact = build_system_prompt(AWARES9, style="compact")
    assert len(compact) < len(build_system_prompt(AWARES9)) / 1.5
    assert compact.count("\n") == 0


def test_bad_style_is_a_value_error():
    with pytest.raises(ValueError, match="style"):
        build_system_prompt(AWARES9, style="long")  # type: ignore[arg-type]


def test_crops_turn_text_names_regions_in_order():
    text = crops_turn_text(["0", "5"], AWARES9)
    assert text == "High-resolution crops: 0 (top-left quarter), 5 (top half). Answer the question now."
    assert crops_turn_text(["3"], AWARES9).startswith("High-resolution crop: 3 (bottom-right quarter)")
    assert "box" in crops_turn_text(["box"], AWARES9)  # an unnamed box passes through
    # a model card's template wins over the default wording
    assert crops_turn_text(["1", "5"], AWARES9, "Crop {regions} now.") == "Crop 1, 5 now."


def test_force_answer_text_asks_for_an_answer():
    assert "Answer the question now" in FORCE_ANSWER_TEXT
    assert isinstance(parse_reply(FORCE_ANSWER_TEXT), FinalAnswer)


def test_example_request_round_trips():
    assert example_request(["0", "5"]) == "GET_CROPS: ['0', '5']"
    assert req(example_request(["0", "5"])).regions == ["0", "5"]


@pytest.mark.parametrize("crop_set", [AWARES9, GRID], ids=["awares9", "grid3x3"])
def test_get_crops_tool_schema(crop_set):
    tool = get_crops_tool(crop_set)
    assert tool["type"] == "function"
    fn = tool["function"]
    assert fn["name"] == GET_CROPS_TOOL == "get_crops"
    regions = fn["parameters"]["properties"]["regions"]
    assert regions["type"] == "array" and regions["minItems"] == 1
    assert regions["items"] == {"type": "string", "enum": crop_set.region_names()}
    assert fn["parameters"]["required"] == ["regions"]
    for region in crop_set.regions:
        assert region.description in fn["description"]
    json.dumps(tool)  # must be JSON-serialisable as sent to a server


def test_get_crops_args_model():
    assert GetCropsArgs(regions=["0", "5"]).regions == ["0", "5"]
    with pytest.raises(ValueError):
        GetCropsArgs(regions=[])
    with pytest.raises(ValueError):
        GetCropsArgs(regions=["0"], extra=1)  # type: ignore[call-arg]


# --- text form -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "regions"),
    [
        # every example of the official prompt
        ("GET_CROPS: ['3']", ["3"]),
        ("GET_CROPS: ['0', '5']", ["0", "5"]),
        ("GET_CROPS: ['all']", ["all"]),
        ("GET_CROPS:['4']", ["4"]),
        # tolerant variants
        ("GET_CROPS ['3']", ["3"]),
        ('GET_CROPS: ["0", "5"]', ["0", "5"]),
        ("GET_CROPS: [3, 5]", ["3", "5"]),
        ("GET_CROPS: [3 5]", ["3", "5"]),
        ("GET_CROPS : [ '0' , '5' ]", ["0", "5"]),
        ("GET_CROPS:\n['0',\n '5']", ["0", "5"]),
        ("get_crops: ['1']", ["1"]),
        ("Get_Crops: ['1']", ["1"]),
        ("GET_CROPS: ['2'].", ["2"]),
        ("GET_CROPS: ['2']\n", ["2"]),
        ("GET_CROPS: ['2',]", ["2"]),
        ("GET_CROPS: [‘2’, “6”]", ["2", "6"]),
        ("GET_CROPS: [`7`]", ["7"]),
        ("GET_CROPS: ['ALL']", ["all"]),
        ("GET_CROPS(['8'])", ["8"]),
        ("get_crops(regions=['8', '0'])", ["8", "0"]),
        ("GET_CROPS: 3, 5", ["3", "5"]),
        ("GET_CROPS: '3'.", ["3"]),
        ("GET_CROPS: ['3', '3', '0', '3']", ["3", "0"]),
        ("GET_CROPS: ['3']\nGET_CROPS: ['5', '3']", ["3", "5"]),
    ],
)
def test_text_form_variants(reply, regions):
    out = req(reply)
    assert out.form == "text"
    assert out.regions == regions
    assert out.invalid == [] and out.fallback is None and out.boxes == []


def test_multi_crop_request_is_not_the_full_image():
    # The official parser maps this to the full image; we must fetch exactly the two crops.
    out = req("GET_CROPS: ['0', '5']")
    assert out.regions == ["0", "5"] and out.fallback is None


def test_text_before_the_request_is_the_preamble_and_raw_is_exact():
    out = req("The sign is too small to read.\nGET_CROPS: ['3']. Then I will answer.")
    assert out.preamble == "The sign is too small to read."
    assert out.raw == "GET_CROPS: ['3']"


def test_prose_mention_before_a_valid_request_is_skipped():
    out = req("I need GET_CROPS for this one. GET_CROPS: ['1']")
    assert out.regions == ["1"]


@pytest.mark.parametrize(
    "reply",
    [
        "GET_CROPS: []",
        "GET_CROPS: [ ]",
        "GET_CROPS: ['0'",
        "GET_CROPS: ['0', '5]",
        "GET_CROPS",
        "GET_CROPS:",
        "The region is unclear. GET_CROPS: ",
    ],
)
def test_keyword_without_readable_list_is_malformed(reply):
    with pytest.raises(MalformedRequestError):
        parse_reply(reply)


@pytest.mark.parametrize("reply", [
    "I don't need to GET_CROPS here; the answer is 5",
    "No need to call get_crops. The answer is 7.",
    "GET_CROPS: 3 because the sign is small",
    "I would call GET_CROPS here but the answer is 4.",
])
def test_the_keyword_in_prose_is_an_answer(reply):
    """#17: a mention without a list is an answer (the loop used to fetch the full image and ask again)."""
    out = parse_reply(reply)
    assert isinstance(out, FinalAnswer) and out.text == reply


def test_malformed_message_names_the_fix():
    with pytest.raises(MalformedRequestError, match=r"GET_CROPS: \['0'\]"):
        parse_reply("GET_CROPS: []")


@pytest.mark.parametrize(
    "reply",
    [
        "The answer is 3.",
        "There are 5 crops in the field: wheat, corn, rice, soy and barley.",
        "Crops 0 and 5 are both visible; the total is 12.",
        "get crops: no, the answer is B",
        "mygget_crops_helper is a function",  # not the keyword as a word
        "  A  \n",
        "",
        "Answer: 42",
        '{"answer": 42}',
        '[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]',  # a grounding answer, not a request
        "<b>bold</b> and [0, 5]",
    ],
)
def test_plain_answers_stay_final(reply):
    out = parse_reply(reply)
    assert isinstance(out, FinalAnswer)
    assert out.text == reply.strip()


_ARGS_0 = '{"regions": ["0"]}'
_ARGS_50 = '{"regions": ["5", "0"]}'
_ARGS_3 = '{"regions": ["3"]}'
_ARGS_7 = '{"regions": ["7"]}'

# --- function calls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        {"name": "get_crops", "arguments": '{"regions": ["0", "5"]}'},
        {"name": "get_crops", "arguments": {"regions": ["0", "5"]}},
        {"name": "get_crops", "args": {"regions": ["0", "5"]}, "id": "c1", "type": "tool_call"},  # LangChain
        {"type": "function", "function": {"name": "get_crops", "arguments": '{"regions": ["0", "5"]}'}},
        [
            {"id": "a", "type": "function", "function": {"name": "get_crops", "arguments": _ARGS_0}},
            {"id": "b", "type": "function", "function": {"name": "get_crops", "arguments": _ARGS_50}},
        ],
        {"name": "get_crops", "arguments": {"regions": [0, 5]}},
    ],
)
def test_function_call_forms(reply):
    out = req(reply)
    assert out.form == "function"
    assert out.regions == ["0", "5"]


def test_assistant_message_with_tool_calls_keeps_content_as_preamble():
    message = {
        "role": "assistant",
        "content": "The digits are too small.",
        "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_crops", "arguments": _ARGS_3}}
        ],
    }
    out = req(message)
    assert out.regions == ["3"] and out.preamble == "The digits are too small."
    assert json.loads(out.raw)["function"]["name"] == "get_crops"  # one call: raw is that call


def test_assistant_message_without_tool_calls_parses_its_content():
    message = {"role": "assistant", "content": " It is red. ", "tool_calls": None}
    assert parse_reply(message) == FinalAnswer(text="It is red.")
    parts = {"role": "assistant", "content": [{"type": "text", "text": "GET_CROPS: ['6']"}]}
    assert req(parts).regions == ["6"]


def test_function_call_json_inside_text():
    text = 'I will zoom.\n```json\n{"name": "get_crops", "arguments": {"regions": ["2"]}}\n```'
    out = req(text)
    assert out.form == "function" and out.regions == ["2"]
    assert out.preamble == "I will zoom."
    wrapped = json.dumps({"type": "function", "function": {"name": "get_crops", "arguments": _ARGS_7}})
    assert req(wrapped).regions == ["7"]
    args_first = '{"arguments": {"regions": ["8"]}, "name": "get_crops"}'
    assert req(args_first).regions == ["8"]


@pytest.mark.parametrize(
    "reply",
    [
        {"name": "get_crops", "arguments": "{regions: [0]}"},
        {"name": "get_crops", "arguments": {}},
        {"name": "get_crops", "arguments": {"regions": []}},
        {"name": "get_crops", "arguments": {"regions": [{"x": 1}]}},
        {"name": "get_crops", "arguments": {"regions": [True]}},
        {"name": "search_web", "arguments": {"q": "x"}},
        {"name": 3},
        {"foo": "bar"},
        [],
        ["get_crops"],
        {"role": "assistant", "tool_calls": {"name": "get_crops"}},
        '{"name": "get_crops", "arguments": {"regions": ["0"]',
    ],
)
def test_malformed_function_calls(reply):
    with pytest.raises(MalformedRequestError):
        parse_reply(reply)


def test_reply_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        parse_reply(42)  # type: ignore[arg-type]


# --- <tool_call> blocks ----------------------------------------------------------------------------


def test_qwen_tool_call_block():
    text = '<tool_call>\n{"name": "get_crops", "arguments": {"regions": ["0"]}}\n</tool_call>'
    out = req(text)
    assert out.form == "tool_call" and out.regions == ["0"] and out.raw == text


def test_several_tool_call_blocks_merge_and_parameters_alias():
    text = (
        "Let me look closer.\n"
        '<tool_call>{"name": "get_crops", "arguments": {"regions": ["0", "1"]}}</tool_call>\n'
        '<TOOL_CALL>\n  {"name": "get_crops",\n "parameters": {"regions": ["1", "4"]}}  \n</TOOL_CALL>'
    )
    out = req(text)
    assert out.regions == ["0", "1", "4"]
    assert out.preamble == "Let me look closer."


def test_unclosed_tool_call_block_is_read_to_the_end():
    out = req('<tool_call>{"name": "get_crops", "arguments": {"regions": ["6"]}}')
    assert out.regions == ["6"]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "get_crops", "arguments": {"regions": ["0"]}</tool_call>',
        "<tool_call>get_crops(['0'])</tool_call>",
        "<tool_call></tool_call>",
        '<tool_call>{"name": "calculator", "arguments": {}}</tool_call>',
    ],
)
def test_malformed_tool_call_block(text):
    with pytest.raises(MalformedRequestError):
        parse_reply(text)


# --- zoom boxes ------------------------------------------------------------------------------------

SIZE = (2000, 1000)


@pytest.mark.parametrize(
    ("units", "box", "pixels"),
    [
        ("pixels", [100, 50, 600, 450], (100, 50, 600, 450)),
        ("norm1000", [50, 50, 300, 450], (100, 50, 600, 450)),
        ("norm1", [0.05, 0.05, 0.3, 0.45], (100, 50, 600, 450)),
        ("pixels", [100.4, 50.6, 599.2, 449.9], (100, 50, 600, 450)),  # widened to whole pixels
        ("pixels", [-20, -5, 2500, 1200], (0, 0, 2000, 1000)),  # clamped
    ],
)
def test_zoom_tool_crop_mode_each_unit(units, box, pixels):
    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": box, "label": "sign"}}
    out = req(call, bbox_units=units, image_size=SIZE)
    assert out.form == "bbox" and out.regions == [] and out.boxes == [pixels]


def test_deepeyes_tool_call_block_and_snap_mode():
    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1100, 600, 1900, 950]}}
    text = f"Zoom.<tool_call>{json.dumps(call)}</tool_call>"
    crop = req(text, bbox_units="pixels", image_size=SIZE)
    assert crop.form == "bbox" and crop.boxes == [(1100, 600, 1900, 950)] and crop.preamble == "Zoom."
    snap = req(text, bbox_units="pixels", image_size=SIZE, bbox_mode="snap")
    assert snap.form == "bbox" and snap.regions == ["3"] and snap.boxes == []


@pytest.mark.parametrize(
    "reply",
    [
        '<grounding>{"bbox_2d": [0.0, 0.0, 0.5, 0.5], "source": "original_image"}</grounding>',
        "<zoom>[0, 0, 0.5, 0.5]</zoom>",
        '<zoom>{"bbox_2d": [0, 0, 0.5, 0.5]}</zoom>',
        {"bbox_2d": [0, 0, 0.5, 0.5]},
        '{"name": "zoom_in", "arguments": {"bbox": [0, 0, 0.5, 0.5]}}',
    ],
)
def test_other_zoom_forms(reply):
    out = req(reply, bbox_units="norm1", image_size=SIZE)
    assert out.boxes == [(0, 0, 1000, 500)]
    snapped = req(reply, bbox_units="norm1", image_size=SIZE, bbox_mode="snap")
    assert snapped.regions == ["0"]


def test_zoom_without_units_is_malformed_and_says_how_to_fix():
    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 30, 40]}}
    with pytest.raises(MalformedRequestError, match="bbox_units"):
        parse_reply(call)


def test_units_without_image_size_is_a_programmer_error():
    with pytest.raises(ValueError, match="image_size"):
        parse_reply("x", bbox_units="pixels")


@pytest.mark.parametrize(
    "box",
    [
        [600, 50, 100, 450],  # reversed x
        [100, 450, 600, 50],  # reversed y
        [100, 50, 100, 450],  # zero width
        [3000, 2000, 4000, 3000],  # outside the image
        [1, 2, 3],
        [1, 2, 3, "x"],
        [1, 2, float("inf"), 4],
        "100,50,600,450",
    ],
)
def test_bad_boxes_are_malformed(box):
    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": box}}
    with pytest.raises(MalformedRequestError):
        parse_reply(call, bbox_units="pixels", image_size=SIZE)


def test_several_boxes_dedupe_and_max_crops():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 50, 50], [100, 100, 200, 200]]
    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": boxes}}
    out = req(call, bbox_units="pixels", image_size=SIZE, max_crops=2)
    assert out.boxes == [(0, 0, 10, 10), (5, 5, 50, 50)] and out.fallback == "truncated"
    full = req(call, bbox_units="pixels", image_size=SIZE, max_crops=2, on_too_many="full_image")
    assert full.regions == ["all"] and full.boxes == [] and full.fallback == "full_image"
    with pytest.raises(TooManyCropsError):
        parse_reply(call, bbox_units="pixels", image_size=SIZE, max_crops=2, on_too_many="error")


def test_mixing_regions_and_boxes_in_crop_mode_is_malformed():
    calls = [
        {"name": "get_crops", "arguments": {"regions": ["0"]}},
        {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1100, 600, 1900, 950]}},
    ]
    with pytest.raises(MalformedRequestError, match="mixes"):
        parse_reply(calls, bbox_units="pixels", image_size=SIZE)
    assert req(calls, bbox_units="pixels", image_size=SIZE, bbox_mode="snap").regions == ["0", "3"]


# --- policies --------------------------------------------------------------------------------------


def test_unknown_drop_keeps_valid_names():
    out = req("GET_CROPS: ['0', '9', 'left', '5']")
    assert out.regions == ["0", "5"] and out.invalid == ["9", "left"] and out.fallback is None


def test_unknown_drop_with_nothing_valid_is_the_full_image():
    out = req("GET_CROPS: ['9']")
    assert out.regions == ["all"] and out.invalid == ["9"] and out.fallback == "full_image"


def test_unknown_full_image_policy():
    out = req("GET_CROPS: ['0', '9']", on_unknown="full_image")
    assert out.regions == ["all"] and out.invalid == ["9"] and out.fallback == "full_image"


def test_unknown_error_names_bad_value_and_valid_names():
    with pytest.raises(UnknownRegionError) as info:
        parse_reply("GET_CROPS: ['0', 'top']", on_unknown="error")
    message = str(info.value)
    assert "'top'" in message and "'8'" in message and "'all'" in message
    assert isinstance(info.value, RequestError)


def test_too_many_policies():
    text = "GET_CROPS: ['0', '1', '2', '3']"
    assert req(text, max_crops=4).fallback is None
    truncated = req(text, max_crops=2)
    assert truncated.regions == ["0", "1"] and truncated.fallback == "truncated"
    full = req(text, max_crops=2, on_too_many="full_image")
    assert full.regions == ["all"] and full.fallback == "full_image"
    with pytest.raises(TooManyCropsError, match="at most 2"):
        parse_reply(text, max_crops=2, on_too_many="error")


def test_duplicates_do_not_count_towards_max_crops():
    out = req("GET_CROPS: ['0', '0', '0', '1']", max_crops=2)
    assert out.regions == ["0", "1"] and out.fallback is None


def test_other_crop_set_names():
    out = req("GET_CROPS: ['r0c0', 'R2C2', '0']", crop_set=GRID)
    assert out.regions == ["r0c0", "r2c2"] and out.invalid == ["0"]
    # and a grid name is unknown to awares9
    assert req("GET_CROPS: ['r0c0']").fallback == "full_image"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_unknown": "ignore"},
        {"on_too_many": "drop"},
        {"bbox_mode": "resize"},
        {"max_crops": 0},
        {"bbox_units": "inches", "image_size": (10, 10)},
        {"image_size": (0, 10)},
    ],
)
def test_bad_options_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        parse_reply("GET_CROPS: ['0']", **kwargs)


def test_every_failure_is_an_awares_error():
    for bad in ("GET_CROPS: []", "<tool_call>{</tool_call>", {"name": "nope"}):
        with pytest.raises(AwaresError):
            parse_reply(bad)


def test_reasoning_before_think_end_is_not_a_request():
    thought = "<think>Maybe GET_CROPS: ['3']? No, the digits are readable.</think>\nThe answer is 4."
    assert parse_reply(thought) == FinalAnswer(
        text="The answer is 4.", reasoning="Maybe GET_CROPS: ['3']? No, the digits are readable.")
    out = req("<think>The text is tiny.</think>\nGET_CROPS: ['3']")
    assert out.regions == ["3"] and out.preamble == "<think>The text is tiny.</think>"


@pytest.mark.parametrize("reply, answer, reasoning", [
    ("<think>count the dots</think> 5", "5", "count the dots"),
    ("<think>count the dots, one, two", "", "count the dots, one, two"),  # cut by max_new_tokens
    ("   \n ", "", ""),
    ("", "", ""),
])
def test_reasoning_is_kept_apart_and_empty_replies_are_no_answer(reply, answer, reasoning):
    """#17: <think> stayed in the answer; an empty reply counted as an answer."""
    out = parse_reply(reply)
    assert isinstance(out, FinalAnswer) and (out.text, out.reasoning) == (answer, reasoning)
    assert out.empty == (answer == "")


def test_bare_list_must_be_a_short_line_of_names():
    assert req("GET_CROPS: 0 5\nthanks").regions == ["0", "5"]
    with pytest.raises(MalformedRequestError):
        parse_reply("GET_CROPS: 0" + " 0" * 20_000)


def test_computer_use_zoom_is_snapped_to_the_crop_set():
    """#20: the zoom action of the big APIs' computer-use agents, snapped to a region of the crop set."""
    call = {"type": "function", "function": {"name": "computer", "arguments": json.dumps(
        {"action": "zoom", "region": [1100, 800, 1900, 1400], "token_budget": 300})}}
    out = parse_reply({"role": "assistant", "content": "", "tool_calls": [call]}, bbox_units="pixels",
                      image_size=(2000, 1500))
    assert isinstance(out, CropRequest) and out.regions == ["3"] and out.boxes == [] and out.token_budget == 300
    text = '<tool_call>{"name": "computer", "arguments": {"action": "zoom", "region": [0, 0, 900, 700]}}</tool_call>'
    assert parse_reply(text, bbox_units="pixels", image_size=(2000, 1500)).regions == ["0"]
    with pytest.raises(MalformedRequestError, match="not a zoom"):
        parse_reply({"name": "computer", "arguments": {"action": "left_click", "coordinate": [5, 5]}})
    with pytest.raises(MalformedRequestError, match="token_budget"):
        parse_reply({"name": "zoom_in", "arguments": {"bbox_2d": [0, 0, 10, 10], "token_budget": -3}},
                     bbox_units="pixels", image_size=(100, 100))
    assert isinstance(parse_reply('The word on the sign is "computer".'), FinalAnswer)
