"""The crop protocol: what the model is told, and how its requests are read.

* :mod:`.prompts`: the system prompt, the turn that delivers crops, the force-answer turn;
* :mod:`.tools`: the ``get_crops`` tool, declared once for every backend and adapter;
* :mod:`.parsing`: :func:`parse_reply`, one parser for the text form, function calls,
  ``<tool_call>`` blocks and other models' zoom boxes;
* :mod:`.schema`: the typed results, :class:`CropRequest` and :class:`FinalAnswer`.
"""

from awares_tool.protocol.parsing import parse_reply
from awares_tool.protocol.resolve import BboxMode, OnTooMany, OnUnknown
from awares_tool.protocol.prompts import (
    FORCE_ANSWER_TEXT,
    PromptStyle,
    build_system_prompt,
    crops_turn_text,
    example_request,
)
from awares_tool.protocol.schema import CropRequest, FinalAnswer, ParsedReply, PixelBox, split_reasoning
from awares_tool.protocol.tools import (
    GET_CROPS_TOOL,
    ZOOM_TOOL_NAMES,
    GetCropsArgs,
    get_crops_tool,
    tool_description,
)
from awares_tool.protocol.zoom import BboxUnits

__all__ = [
    "BboxMode",
    "BboxUnits",
    "CropRequest",
    "FORCE_ANSWER_TEXT",
    "FinalAnswer",
    "GET_CROPS_TOOL",
    "GetCropsArgs",
    "OnTooMany",
    "OnUnknown",
    "ParsedReply",
    "PixelBox",
    "PromptStyle",
    "ZOOM_TOOL_NAMES",
    "build_system_prompt",
    "crops_turn_text",
    "example_request",
    "get_crops_tool",
    "parse_reply",
    "split_reasoning",
    "tool_description",
]
