"""One parser for every way a model asks for crops: :func:`parse_reply`.

Forms, tried in this order (the first that occurs wins):

1. a structured call passed as a dict/list: an OpenAI ``tool_calls`` entry
   (``{"type": "function", "function": {...}}``), a bare ``{"name", "arguments"}`` call (``"parameters"``
   and LangChain's ``"args"`` are aliases), a list of calls, or a whole assistant message with
   ``tool_calls`` (or legacy ``function_call``) and ``content``;
2. Qwen/Hermes ``<tool_call>{...}</tool_call>`` blocks in text (several are merged; an unclosed last
   block, as left by a stop sequence, is read to the end);
3. Mini-o3 ``<grounding>{...}</grounding>`` and generic ``<zoom>[...]</zoom>`` zoom tags;
4. the JSON of a ``get_crops`` / zoom call written inside the text;
5. the text form ``GET_CROPS: ['0', '5']`` and its tolerated variants (see ``textform``).

In a reply with reasoning, only the text after the last ``</think>`` is searched for a request.

Anything else is a :class:`FinalAnswer`. Every failure is a :class:`RequestError` subclass, so a loop
can tell the model what went wrong instead of crashing.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from awares_tool.crops import CropSet, get_crop_set
from awares_tool.protocol.brief import brief
from awares_tool.errors import MalformedRequestError
from awares_tool.protocol.resolve import (
    BboxMode,
    FoundRequest,
    OnTooMany,
    OnUnknown,
    build_request,
    canonical_name,
    check_options,
)
from awares_tool.protocol.schema import FinalAnswer, ParsedReply
from awares_tool.protocol.textform import find_text_requests
from awares_tool.protocol.tools import COMPUTER_TOOL_NAMES, GET_CROPS_TOOL, ZOOM_TOOL_NAMES
from awares_tool.protocol.zoom import BboxUnits, raw_boxes

__all__ = ["parse_reply", "OnUnknown", "OnTooMany", "BboxMode"]

_KNOWN_TOOLS = (GET_CROPS_TOOL, *ZOOM_TOOL_NAMES, *COMPUTER_TOOL_NAMES)
_MAX_BLOCKS = 64  # tool-call blocks / JSON calls examined per reply: bounds adversarial work
_JSON_WINDOW = 1000  # how far before a quoted tool name the opening brace of its call may be
_MAX_BRACES = 4  # candidate opening braces tried per quoted tool name

_TOOL_CALL_OPEN = re.compile(r"<tool_call>", re.IGNORECASE)
_TOOL_CALL_CLOSE = re.compile(r"</tool_call>", re.IGNORECASE)
_ZOOM_TAG = re.compile(r"<(grounding|zoom)>", re.IGNORECASE)
# computer-use agents send structured calls; a quoted "computer" in prose is no call
_QUOTED_TOOL = re.compile(r"\"(get_crops|image_zoom_in_tool|zoom_in)\"", re.IGNORECASE)
_DECODER = json.JSONDecoder()
_THINK_END = "</think>"


# --- structured calls ----------------------------------------------------------------------------


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise MalformedRequestError(
            f"{what} is not valid JSON: {text[:120]!r}; expected e.g. "
            '{"name": "get_crops", "arguments": {"regions": ["0"]}}'
        ) from e


def _add_call(found: FoundRequest, call: Any) -> None:
    """Add one ``{"name", "arguments"}`` call (or its OpenAI wrapper) to ``found``."""
    if not isinstance(call, Mapping):
        raise MalformedRequestError(f"a tool call must be a JSON object, got {brief(call, 120)}")
    fn = call["function"] if isinstance(call.get("function"), Mapping) else call
    name = fn.get("name")
    if not isinstance(name, str):
        raise MalformedRequestError(f"tool call without a name: {brief(call, 120)}")
    args: Any = next((fn[k] for k in ("arguments", "parameters", "args") if k in fn), None)
    if isinstance(args, str):
        args = _loads(args, f"arguments of {name!r}") if args.strip() else None
    key = name.strip().lower()
    if key == GET_CROPS_TOOL:
        value = args.get("regions") if isinstance(args, Mapping) else args
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise MalformedRequestError(
                f"get_crops call needs a 'regions' list, got arguments {brief(args, 120)}; "
                'expected {"regions": ["0", "5"]}'
            )
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise MalformedRequestError(f"get_crops region {brief(v, 50)} is not a name")
            found.names.append(str(v))
    elif key in ZOOM_TOOL_NAMES or key in COMPUTER_TOOL_NAMES:
        args = args if args is not None else {}
        if key in COMPUTER_TOOL_NAMES:
            action = args.get("action") if isinstance(args, Mapping) else None
            if action != "zoom":
                raise MalformedRequestError(f"computer action {brief(action, 40)} is not a zoom; only "
                                            '{"action": "zoom", "region": [x1, y1, x2, y2]} fetches a crop')
            found.snap = True
        found.boxes.extend(raw_boxes(args))
        found.form = "bbox"
        if isinstance(args, Mapping):
            budget = next((args[k] for k in ("token_budget", "max_tokens") if k in args), None)
            if budget is not None:
                if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
                    raise MalformedRequestError(f"token_budget must be a positive integer, got {brief(budget, 40)}")
                found.token_budget = budget
    else:
        raise MalformedRequestError(
            f"call to unknown tool {brief(name, 60)}; awares accepts {', '.join(_KNOWN_TOOLS)}"
        )


def _content_text(content: Any) -> str:
    """The text of a message ``content``: a string or a list of OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, (str, Mapping))]
        return "".join(p for p in parts if isinstance(p, str))
    raise MalformedRequestError(f"message content must be text or content parts, got {brief(content, 120)}")


def _dump(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(obj)[:10_000]
        except RecursionError:  # nested deeper than the interpreter recurses: say so, don't crash
            return f"<a {type(obj).__name__} nested too deeply to print>"


def _from_calls(calls: Sequence[Any], preamble: str = "") -> FoundRequest:
    if not calls:
        raise MalformedRequestError("an empty list of tool calls; expected at least one get_crops call")
    raw = _dump(calls[0] if len(calls) == 1 else list(calls))
    found = FoundRequest(form="function", raw=raw, preamble=preamble.strip())
    for call in calls[:_MAX_BLOCKS]:
        _add_call(found, call)
    return found


def _from_structured(reply: Mapping | Sequence) -> FoundRequest | str:
    """A dict/list reply as a request, or the text to parse when it is a message without calls."""
    if isinstance(reply, Mapping):
        # A message first: it may carry a "name" (the speaker) that is not a tool name.
        if any(k in reply for k in ("tool_calls", "function_call", "content", "role")):
            legacy = reply.get("function_call")  # the pre-tools OpenAI field
            calls = reply.get("tool_calls") or ([legacy] if legacy else [])
            if not isinstance(calls, (list, tuple)):
                raise MalformedRequestError(f"message tool_calls must be a list, got {brief(calls, 120)}")
            content = _content_text(reply.get("content"))
            return _from_calls(calls, content) if calls else content
        if "function" in reply or "name" in reply:
            return _from_calls([reply])
        if "bbox_2d" in reply or "bbox" in reply:
            return FoundRequest(form="bbox", raw=_dump(reply), boxes=raw_boxes(reply))
        raise MalformedRequestError(
            "a dict reply must be a tool call or an assistant message, "
            f"got keys {sorted(map(str, reply))[:10]}"
        )
    return _from_calls(list(reply))


# --- text forms -----------------------------------------------------------------------------------


def _strip_fence(body: str) -> str:
    body = body.strip()
    if body.startswith("```"):
        body = body[3:].removeprefix("json").removesuffix("```").strip()
    return body


def _tool_call_blocks(text: str) -> FoundRequest | None:
    first = _TOOL_CALL_OPEN.search(text)
    if first is None:
        return None
    found = FoundRequest(form="tool_call", raw="", preamble=text[: first.start()].strip())
    start, end, m = first.start(), first.end(), first
    for _ in range(_MAX_BLOCKS):
        if m is None:
            break
        close = _TOOL_CALL_CLOSE.search(text, m.end())
        body_end = close.start() if close else len(text)
        end = close.end() if close else len(text)
        payload = _loads(_strip_fence(text[m.end() : body_end]), "<tool_call> block")
        for call in payload if isinstance(payload, list) else [payload]:
            form = found.form
            _add_call(found, call)
            found.form = "bbox" if "bbox" in (form, found.form) else "tool_call"
        m = _TOOL_CALL_OPEN.search(text, end) if close else None
    found.raw = text[start:end]
    return found


def _zoom_tags(text: str) -> FoundRequest | None:
    first = _ZOOM_TAG.search(text)
    if first is None:
        return None
    found = FoundRequest(form="bbox", raw="", preamble=text[: first.start()].strip())
    end, m = first.end(), first
    for _ in range(_MAX_BLOCKS):
        if m is None:
            break
        close = re.compile(rf"</{m.group(1)}>", re.IGNORECASE).search(text, m.end())
        if close is None:
            snippet = text[m.start() : m.start() + 80]
            raise MalformedRequestError(f"<{m.group(1)}> tag is not closed: {snippet!r}")
        payload = _loads(_strip_fence(text[m.end() : close.start()]), f"<{m.group(1)}> tag")
        found.boxes.extend(raw_boxes(payload))
        end = close.end()
        m = _ZOOM_TAG.search(text, end)
    found.raw = text[first.start() : end]
    return found


def _json_calls(text: str) -> FoundRequest | None:
    """JSON function calls written inside the text, found by their quoted tool name."""
    found: FoundRequest | None = None
    start = end = 0
    for m in itertools.islice(_QUOTED_TOOL.finditer(text), _MAX_BLOCKS):
        if found is not None and m.start() < end:
            continue  # inside a call already read
        obj = None
        brace = m.start()
        for _ in range(_MAX_BRACES):
            brace = text.rfind("{", max(0, m.start() - _JSON_WINDOW), brace)
            if brace < 0:
                break
            try:
                cand, cand_end = _DECODER.raw_decode(text, brace)
            except (ValueError, RecursionError):
                continue
            if cand_end > m.start() and isinstance(cand, Mapping) and _call_name(cand) is not None:
                obj = cand
                break
        if obj is None:
            if text.rfind("{", max(0, m.start() - _JSON_WINDOW), m.start()) >= 0:
                snippet = text[max(0, m.start() - 40) : m.end() + 40]
                raise MalformedRequestError(
                    f"cannot read the {m.group(1)} call near {snippet!r}; "
                    'write it as {"name": "get_crops", "arguments": {"regions": ["0"]}}'
                )
            continue
        if found is None:
            preamble = text[:brace].strip().removesuffix("```json").strip()
            found = FoundRequest(form="function", raw="", preamble=preamble)
            start = brace
        _add_call(found, obj)
        end = cand_end
    if found is not None:
        found.raw = text[start:end]
    return found


def _call_name(obj: Mapping) -> str | None:
    fn = obj["function"] if isinstance(obj.get("function"), Mapping) else obj
    name = fn.get("name")
    return name if isinstance(name, str) and name.strip().lower() in _KNOWN_TOOLS else None


def _from_text(text: str, crop_set: CropSet, lookup: dict[str, str]) -> FoundRequest | None:
    # Reasoning models think aloud about requesting ("maybe GET_CROPS: ['3']?") and then answer:
    # only what follows the last </think> can be the request; the reasoning joins the preamble.
    cut = text.rfind(_THINK_END)
    head, text = (text[: cut + len(_THINK_END)], text[cut + len(_THINK_END) :]) if cut >= 0 else ("", text)
    found = None
    for finder in (_tool_call_blocks, _zoom_tags, _json_calls):
        found = finder(text)
        if found is not None:
            break
    else:
        requests = find_text_requests(text, lambda t: canonical_name(t, crop_set, lookup) is not None)
        if requests:
            found = FoundRequest(
                form="text",
                raw=text[requests[0].start : requests[-1].end],
                preamble=text[: requests[0].start].strip(),
                names=[n for r in requests for n in r.names],
            )
    if found is not None and head:
        found.preamble = f"{head.strip()}\n{found.preamble}".strip()
    return found


def parse_reply(
    reply: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    crop_set: CropSet | None = None,
    *,
    max_crops: int | None = None,
    on_unknown: OnUnknown = "drop",
    on_too_many: OnTooMany = "truncate",
    bbox_units: BboxUnits | None = None,
    image_size: tuple[int, int] | None = None,
    bbox_mode: BboxMode = "crop",
) -> ParsedReply:
    """Parse one model reply into a :class:`CropRequest` or a :class:`FinalAnswer`.

    Args:
        reply: The reply text, or a structured call: a tool-call dict, a list of them, or an assistant
            message dict with ``tool_calls``/``content``.
        crop_set: The crop set the names refer to; ``None`` means ``awares9``.
        max_crops: Most crops one request may fetch; ``None`` for no limit.
        on_unknown: Names the set lacks: ``"error"`` raises :class:`UnknownRegionError`; ``"drop"``
            keeps them in ``invalid`` and fetches the rest, or the full image when none is valid (the
            official code's outcome for an unknown name); ``"full_image"`` turns any unknown name into
            a request for the full image.
        on_too_many: More than ``max_crops``: ``"error"`` raises :class:`TooManyCropsError`;
            ``"truncate"`` keeps the first ``max_crops``; ``"full_image"`` fetches the full image.
        bbox_units: Coordinate units of free-form zoom boxes (``"pixels"`` of the original image,
            ``"norm1000"`` or ``"norm1"``). ``None`` refuses zoom boxes: the units are never guessed.
        image_size: ``(width, height)`` of the original image; needed with ``bbox_units``.
        bbox_mode: ``"crop"`` cuts the box itself (``boxes``); ``"snap"`` maps it to the region of the
            crop set with the best IoU (``regions``).

    Returns:
        The typed request, or the final answer (the reply stripped, otherwise untouched).

    Raises:
        MalformedRequestError: A request that cannot be read (bad JSON, empty list, a keyword without a
            list, a zoom box without units or outside the image, an unknown tool).
        UnknownRegionError: With ``on_unknown="error"``.
        TooManyCropsError: With ``on_too_many="error"``.
        ValueError / TypeError: Invalid options or reply type (programmer mistakes).
    """
    check_options(on_unknown, on_too_many, bbox_mode, max_crops, bbox_units, image_size)
    crop_set = crop_set if crop_set is not None else get_crop_set("awares9")
    lookup = {n.casefold(): n for n in crop_set.region_names()}
    if isinstance(reply, str):
        found: FoundRequest | str | None = _from_text(reply, crop_set, lookup)
    elif isinstance(reply, (Mapping, list, tuple)):
        found = _from_structured(reply)
        if isinstance(found, str):
            found = _from_text(found, crop_set, lookup) or found
    else:
        raise TypeError(f"reply must be a str, a dict or a list of tool calls, got {type(reply).__name__}")
    if found is None:
        return FinalAnswer.from_reply(reply)
    if isinstance(found, str):
        return FinalAnswer.from_reply(found)
    return build_request(
        found, crop_set, lookup, max_crops, on_unknown, on_too_many, bbox_units, image_size, bbox_mode
    )
