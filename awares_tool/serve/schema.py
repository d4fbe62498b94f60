"""The OpenAI chat-completions wire format, as the gateway reads and writes it.

Requests accept every field real clients send (the official SDKs, LangChain, LiteLLM, chat UIs): the ones the
gateway acts on are declared, the rest are ignored (``extra="ignore"``), as OpenAI-compatible servers do.
Responses are the standard ``chat.completion`` / ``chat.completion.chunk`` objects plus one extension object,
``awares`` (:class:`AwaresReport`), that clients which do not know it simply ignore.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "TextContent",
    "ImageURL",
    "ImageContent",
    "ChatMessageIn",
    "StreamOptions",
    "AwaresRequestOptions",
    "ChatCompletionRequest",
    "PromptTokensDetails",
    "CompletionUsage",
    "AssistantMessage",
    "Choice",
    "RoundReport",
    "VisualTokens",
    "TurnReport",
    "AwaresReport",
    "ChatCompletion",
    "Delta",
    "ChunkChoice",
    "ChatCompletionChunk",
    "ModelInfo",
    "ModelList",
    "ErrorBody",
    "ErrorResponse",
    "completion_id",
]


class _Lenient(BaseModel):
    """Unknown fields are ignored: clients send many we do not use (``logprobs``, ``store``, ``metadata``...)."""

    model_config = ConfigDict(extra="ignore")


# -- request ---------------------------------------------------------------------------------------------
class TextContent(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(description="A data:image/...;base64 URI, or an http(s) URL when the gateway allows URLs.")
    detail: str | None = Field(None, description="Ignored: the crop loop decides what resolution the model sees.")


class ImageContent(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v  # some clients send the URL as a plain string


class OtherContent(_Lenient):
    """A content part the gateway cannot use (audio, files, refusals): refused with a 400 naming its type."""

    model_config = ConfigDict(extra="allow")
    type: str


ContentPart = TextContent | ImageContent | OtherContent


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _typed_parts(cls, v: Any) -> Any:
        # a list part picks its model by "type" (a union would try ImageContent on text parts and vice versa)
        if not isinstance(v, list):
            return v
        out = []
        for part in v:
            kind = part.get("type") if isinstance(part, dict) else None
            model = {"text": TextContent, "image_url": ImageContent}.get(kind, OtherContent)  # type: ignore[arg-type]
            out.append(model.model_validate(part) if isinstance(part, dict) else part)
        return out


class StreamOptions(_Lenient):
    include_usage: bool = False


class AwaresRequestOptions(BaseModel):
    """Per-request options of the crop loop (the ``awares`` field of the request body; ``extra_body`` in SDKs)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["awares", "lowres", "fullres"] | None = Field(
        None, description="awares (the method), lowres (never crop) or fullres (the full image at once).")
    max_crops: int | None = Field(None, ge=1, le=9, description="Most regions one request may fetch.")


class ChatCompletionRequest(_Lenient):
    """``POST /v1/chat/completions``: the fields the gateway uses; any other field is accepted and ignored."""

    model: str | None = Field(None, description="Any name: the gateway serves one model and answers as it.")
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens; wins over it.")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    awares: AwaresRequestOptions | None = None


# -- response ----------------------------------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(0, description="Prompt tokens reused from the previous turn's KV cache.")
    image_tokens: int | None = Field(None, description="Visual tokens of the images shown (low-res view + crops, "
                                                       "each counted once); None when the backend cannot count.")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class RoundReport(BaseModel):
    """One crop round: what the model asked for and what it was sent."""

    round: int
    requested: list[str] = Field(description="Valid region names the model asked for.")
    fetched: list[str] = Field(description="Regions sent to the model (differs under fallbacks).")
    invalid: list[str] = Field(default_factory=list, description="Names the crop set does not have (dropped).")
    boxes: dict[str, tuple[int, int, int, int]] = Field(default_factory=dict,
                                                         description="Pixel boxes in the original image.")
    form: str = Field(description="How the model asked: text, function, tool_call or bbox.")
    fallback: str | None = None


class VisualTokens(BaseModel):
    """Visual tokens of this answer against the full image (see the README's "usage" section)."""

    spent: int | None = Field(None, description="Low-res view + every crop sent, each counted once.")
    first_view: int | None = None
    crops: list[int] = Field(default_factory=list)
    full: int | None = Field(None, description="The full image as the model sees it (under its pixel cap).")
    full_native: int | None = Field(None, description="The full image at native resolution (no pixel cap).")
    saved: int | None = Field(None, description="full - spent.")
    saved_native: int | None = Field(None, description="full_native - spent.")
    source: Literal["backend", "estimate", "unknown"] = Field(
        description="backend: counted by the model's own processor; estimate: from the model family's resize rule.")


class TurnReport(BaseModel):
    turn: int
    prefill_s: float
    decode_s: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


class AwaresReport(BaseModel):
    """The ``awares`` extension object of every completion: where the model looked and what it cost."""

    answered: bool = Field(description="False when the model gave no final answer (it kept asking for crops).")
    forced_answer: bool = Field(description="The model was told once to answer after its last crop round.")
    mode: str
    regions: list[str] = Field(description="Every region fetched, over all rounds ([]: answered from the low-res "
                                           "view).")
    rounds: list[RoundReport]
    rtr: float | None = Field(None, description="Retained token ratio: visual tokens spent / full (capped) view.")
    rtr_native: float | None = Field(None, description="Visual tokens spent / full image at native resolution.")
    pixel_ratio: float
    visual_tokens: VisualTokens
    image_size: tuple[int, int]
    first_view_size: tuple[int, int]
    crop_set: str
    backend: str
    turns: list[TurnReport] = Field(description="Per model call: prefill/decode time and token counts.")
    queue_s: float = Field(description="Time spent waiting for a free loop slot.")
    loop_s: float = Field(description="Wall time of the crop loop (image decode, every model call, crops).")


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    awares: AwaresReport


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    awares: AwaresReport | None = None


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "awares"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
