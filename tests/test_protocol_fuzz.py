"""Property-based tests of parse_reply: exact names back, answers stay answers, garbage never crashes."""

from __future__ import annotations

import json
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from awares_tool.crops import get_crop_set  # noqa: E402
from awares_tool.errors import AwaresError, MalformedRequestError  # noqa: E402
from awares_tool.protocol import CropRequest, FinalAnswer, parse_reply  # noqa: E402

CROP_SETS = {"awares9": get_crop_set("awares9"), "grid:3x3": get_crop_set("grid:3x3")}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

QUOTES = ["'", '"', "", "‘’", "“”", "`"]
SPACES = st.sampled_from(["", " ", "  ", "\n", "\t", " \n "])


@st.composite
def text_requests(draw):
    """A GET_CROPS request with random names, quoting, spacing, colon and keyword case."""
    crop_set = CROP_SETS[draw(st.sampled_from(sorted(CROP_SETS)))]
    names = draw(st.lists(st.sampled_from(crop_set.region_names()), min_size=1, max_size=12))
    keyword = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in "get_crops")
    items = []
    for n in names:
        q = draw(st.sampled_from(QUOTES))
        left, right = (q[0], q[-1]) if q else ("", "")
        items.append(draw(SPACES) + left + n + right + draw(SPACES))
    sep = draw(st.sampled_from([",", ", ", " ,", " , "]))
    colon = draw(st.sampled_from(["", ":", " :", ": ", " : "]))
    tail = draw(st.sampled_from(["", ".", "\n", " \n", ".\n"]))
    prefix = draw(st.sampled_from(["", "I need a closer look.\n", "Hmm. "]))
    text = f"{prefix}{keyword}{colon}{draw(SPACES)}[{sep.join(items)}]{tail}"
    return crop_set, names, text, prefix


@FAST
@given(text_requests())
def test_random_text_requests_parse_to_exactly_those_names(case):
    crop_set, names, text, prefix = case
    out = parse_reply(text, crop_set)
    assert isinstance(out, CropRequest)
    assert out.form == "text"
    assert out.regions == list(dict.fromkeys(names))
    assert out.invalid == [] and out.fallback is None
    assert out.preamble == prefix.strip()


@FAST
@given(
    names=st.lists(st.sampled_from(CROP_SETS["awares9"].region_names()), min_size=1, max_size=10),
    style=st.sampled_from(["dict", "openai", "json_text", "tool_call", "message"]),
)
def test_random_structured_requests_parse_to_exactly_those_names(names, style):
    args = {"regions": names}
    call = {"name": "get_crops", "arguments": json.dumps(args)}
    reply: object = {
        "dict": {"name": "get_crops", "arguments": args},
        "openai": [{"type": "function", "function": call}],
        "json_text": json.dumps({"name": "get_crops", "arguments": args}),
        "tool_call": f"<tool_call>\n{json.dumps({'name': 'get_crops', 'arguments': args})}\n</tool_call>",
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": call}],
        },
    }[style]
    out = parse_reply(reply)
    assert isinstance(out, CropRequest)
    assert out.regions == list(dict.fromkeys(names))


# Text that cannot contain the keyword or any tool-call marker: no "_" (so no get_crops / zoom_in),
# no "<" (no tags) and no '"' (no quoted tool names).
PLAIN = st.text(
    alphabet=st.characters(blacklist_characters='_<"', blacklist_categories=("Cs",)), max_size=300
)


@FAST
@given(PLAIN)
def test_text_without_markers_is_a_final_answer(text):
    out = parse_reply(text)
    assert out == FinalAnswer(text=text.strip())


NEAR_GRAMMAR = st.sampled_from(list("GET_CROPSget_crops:[]'\"{}<>/tool_call,0123456789 \nall"))


@FAST
@given(st.text(alphabet=NEAR_GRAMMAR, max_size=200))
def test_garbage_near_the_grammar_raises_only_awares_errors(text):
    try:
        parse_reply(text, max_crops=3, on_unknown="error", on_too_many="error")
    except AwaresError:
        pass


@FAST
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(
            ["name", "arguments", "function", "regions", "bbox_2d", "tool_calls", "content", "x"]
        ),
        children, max_size=4),
    max_leaves=20,
))
def test_garbage_structures_raise_only_awares_errors(obj):
    reply = obj if isinstance(obj, (dict, list)) else {"name": "get_crops", "arguments": {"regions": obj}}
    try:
        parse_reply(reply, bbox_units="norm1000", image_size=(640, 480))
    except AwaresError:
        pass


FRAGMENTS = st.sampled_from(["GET_CROPS", "get_crops", ":", "[", "]", "'0'", '"5"', "all", ",", "(", ")",
                             "<think>", "</think>", "<tool_call>", "</tool_call>", '{"name": "get_crops"',
                             '"arguments": {"regions": ["3"]}}', "<zoom>", "</zoom>", " ", "\n", "é", "\u202e", "𝟘",
                             "The answer is 5.", "x" * 5000])


@FAST
@given(st.lists(FRAGMENTS, max_size=25).map("".join))
def test_grammar_fragments_give_only_typed_outcomes(text):
    """#17: only a CropRequest, a FinalAnswer (reasoning split off) or an AwaresError, never another exception."""
    try:
        out = parse_reply(text, max_crops=2)
    except AwaresError:
        return
    assert isinstance(out, (CropRequest, FinalAnswer))
    if isinstance(out, FinalAnswer):
        assert "</think>" not in out.text


@FAST
@given(st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_bytes_raise_only_awares_errors(text):
    try:
        parse_reply(text)
    except AwaresError:
        pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 1_000_000, FinalAnswer),
        ("GET_CROPS: [" + "'0', " * 200_000, MalformedRequestError),
        ("GET_CROPS " * 100_000, MalformedRequestError),  # one line of 1M characters after the keyword
        ("GET_CROPS:" + " " * 1_000_000, MalformedRequestError),
        ("[" * 500_000 + "GET_CROPS", MalformedRequestError),
        ("<tool_call>" + "[" * 100_000, MalformedRequestError),
        ('{"name": "get_crops", ' * 50_000, MalformedRequestError),
        ('"get_crops"' * 90_000, MalformedRequestError),
        ("'" * 1_000_000 + "GET_CROPS: ['0']", CropRequest),
        ("<zoom>" * 100_000, MalformedRequestError),
        ("GET_CROPS: [" + "'" * 1_000_000 + "]", MalformedRequestError),
        ('{"get_crops": ' * 10_000 + "1" + "}" * 10_000, MalformedRequestError),
        ("GET_CROPS[" * 64 + "x" * 1_000_000, MalformedRequestError),
        ("x " * 500_000 + "GET_CROPS: ['0', '5']", CropRequest),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else v.__name__,
)
def test_adversarial_inputs_are_bounded(text, expected):
    start = time.perf_counter()
    try:
        out: object = parse_reply(text)
    except AwaresError as e:
        out = e
    elapsed = time.perf_counter() - start
    # A bound, not a timing: a linear parse takes milliseconds, a backtracking one hours on these inputs;
    # 20 s leaves a shared, loaded machine its noise.
    assert elapsed < 20.0, f"{elapsed:.2f}s"
    assert isinstance(out, expected)


def test_thousand_names_request_dedupes_fast():
    text = "GET_CROPS: [" + ", ".join(f"'{i % 9}'" for i in range(1000)) + "]"
    out = parse_reply(text)
    assert isinstance(out, CropRequest) and out.regions == [str(i) for i in range(9)]
    bad = "GET_CROPS: [" + ", ".join(f"'x{i}'" for i in range(1000)) + "]"
    out = parse_reply(bad)
    assert out.regions == ["all"] and len(out.invalid) == 1000
    with pytest.raises(MalformedRequestError):
        parse_reply("GET_CROPS: [" + "'0', " * 200_000)


def _nested(depth: int, make):
    value: object = []
    for _ in range(depth):
        value = make(value)
    return value


@pytest.mark.parametrize("make", [lambda v: [v], lambda v: {"tool_calls": [{"function": {"name": "get_crops",
                                                                                          "arguments": v}}]}])
def test_replies_nested_100000_deep_are_typed_errors(make):
    """#17: a structure deeper than Python can repr raised RecursionError from the error message itself."""
    with pytest.raises(MalformedRequestError, match=r"\.\.\."):
        parse_reply(_nested(100_000, make))
