"""Typed results of parsing one model reply: a crop request or a final answer.

Every request form the parser understands (the ``GET_CROPS: [...]`` text, an OpenAI function
call, a Qwen/Hermes ``<tool_call>`` block, a free-form zoom box) becomes the same
:class:`CropRequest`, so the inference loop, the rewards and the adapters handle one type only.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CropRequest", "FinalAnswer", "ParsedReply", "RequestForm", "Fallback", "PixelBox", "split_reasoning"]

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
        token_budget: A zoom call's token budget: the crops are downscaled to cost at most this together.
    """

    model_config = ConfigDict(frozen=True)

    regions: list[str]
    invalid: list[str] = Field(default_factory=list)
    form: RequestForm
    raw: str
    fallback: Fallback = None
    boxes: list[PixelBox] = Field(default_factory=list)
    preamble: str = ""
    token_budget: int | None = Field(None, ge=1, description="Most visual tokens the crops may cost together, when "
                                                            "the call asked for a budget (zoom calls).")


class FinalAnswer(BaseModel):
    """The model answered: no request of any form was found in the reply.

    Attributes:
        text: The answer: the reply stripped, with any ``<think>...</think>`` reasoning taken out (an
            ``Answer:`` prefix is kept: stripping it is the scorer's job, not the protocol's). May be empty:
            a reply of nothing but whitespace or reasoning is no answer (see :attr:`empty`).
        reasoning: The reasoning the model wrote inside ``<think>`` (also an unclosed one, as left when
            decoding stopped), for the trace.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    reasoning: str = ""

    @property
    def empty(self) -> bool:
        """Whether the reply holds no answer at all (empty, whitespace, or only reasoning)."""
        return not self.text.strip()

    @classmethod
    def from_reply(cls, reply: str) -> "FinalAnswer":
        """Split ``reply`` into reasoning and answer (see :func:`split_reasoning`)."""
        reasoning, answer = split_reasoning(reply)
        return cls(text=answer, reasoning=reasoning)


_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def split_reasoning(reply: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a reply: what is inside ``<think>`` tags, and what follows the last one.

    An unclosed ``<think>`` (decoding stopped mid-thought) leaves no answer after it.

    >>> split_reasoning("<think>the sign is red</think> red")
    ('the sign is red', 'red')
    >>> split_reasoning("<think>still thinking")
    ('still thinking', '')
    >>> split_reasoning("  blue ")
    ('', 'blue')
    """
    close = reply.rfind(_THINK_CLOSE)
    if close >= 0:
        head, answer = reply[:close], reply[close + len(_THINK_CLOSE):]
        return head.replace(_THINK_OPEN, "").strip(), answer.strip()
    start = reply.find(_THINK_OPEN)
    if start >= 0:
        return reply[start + len(_THINK_OPEN):].strip(), reply[:start].strip()
    return "", reply.strip()


ParsedReply = Union[CropRequest, FinalAnswer]
