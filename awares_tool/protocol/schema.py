"""Typed results of parsing one model reply: a crop request or a final answer.

Every request form the parser understands (the ``GET_CROPS: [...]`` text, an OpenAI function
call, a Qwen/Hermes ``<tool_call>`` block, a free-form zoom box) becomes the same
:class:`CropRequest`, so the inference loop, the rewards and the adapters handle one type only.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CropRequest", "FinalAnswer", "ParsedReply", "RequestForm", "Fallback", "PixelBox"]

RequestForm = Literal["text", "function", "tool_call", "bbox"]
"""How the model wrote the request: ``GET_CROPS`` text, an OpenAI-style function call, a
``<tool_call>`` block, or a free-form zoom box."""

Fallback = Literal[None, "full_image", "truncated"]
"""The policy the parser applied to make the request usable, if any."""

PixelBox = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels of the original image, as ``PIL.Image.crop`` takes it."""


class CropRequest(BaseModel):
    """The model asked for high-resolution crops.

    Exactly one of ``regions`` and ``boxes`` is non-empty: named regions of the crop set to cut,
    or (for ``form="bbox"`` in ``bbox_mode="crop"``) pixel boxes to cut as they are.

    Attributes:
        regions: Valid region names, deduplicated, in request order. ``["all"]`` after a
            ``full_image`` fallback.
        invalid: Names the crop set does not have, as the model wrote them.
        form: How the request was written.
        raw: The exact request text (or the JSON of the call) that was matched.
        fallback: The policy applied, if any: ``"full_image"`` (request replaced by the whole
            image) or ``"truncated"`` (only the first ``max_crops`` kept).
        boxes: For ``form="bbox"`` in crop mode: pixel boxes in the original image.
        preamble: Text the model wrote before the request (or the message ``content`` beside a
            structured tool call), stripped.
    """

    model_config = ConfigDict(frozen=True)

    regions: list[str]
    invalid: list[str] = Field(default_factory=list)
    form: RequestForm
    raw: str
    fallback: Fallback = None
    boxes: list[PixelBox] = Field(default_factory=list)
    preamble: str = ""


class FinalAnswer(BaseModel):
    """The model answered: no request of any form was found in the reply.

    Attributes:
        text: The reply, whitespace-stripped and otherwise untouched (an ``Answer:`` prefix is
            kept: stripping it is the scorer's job, not the protocol's).
    """

    model_config = ConfigDict(frozen=True)

    text: str


ParsedReply = Union[CropRequest, FinalAnswer]
