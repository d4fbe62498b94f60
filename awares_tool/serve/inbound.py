"""A chat-completions request as one crop-loop question: the image, the question text, the loop's options.

What a request may carry, and what becomes of it (the README's gateway section says the same):

* **One image per request**, as an ``image_url`` part (a ``data:`` URI, or an http(s) URL when the gateway runs
  with ``--allow-urls``) in a user message: usually the last one, but an image sent in an earlier user turn of
  a chat serves the follow-up questions too. No image, or more than one, is a 400: the crop loop answers about
  one image.
* **The question** is the text of the last message, which must be the user's.
* **System / developer messages and earlier turns** are kept as context: they are written, as text, before
  the question in the user's turn. The model's own system prompt stays the one it was trained with (its model
  card's crop protocol): replacing it would stop it from asking for crops.
* ``max_completion_tokens`` (or ``max_tokens``) caps each model call of the loop; ``temperature``, ``top_p`` and
  ``seed`` go to every call (unset: greedy decoding); ``stop`` cuts the final answer at the first stop string.
* ``n`` above 1, a ``tool_choice`` that forces a call of the client's own tools and a ``response_format`` other
  than text are refused (400): the gateway answers with the model's text and cannot honour them. ``tools``
  offered with ``tool_choice`` ``auto``/``none`` are ignored. Every other field is ignored.
* ``awares`` (an extension field: ``extra_body={"awares": {...}}`` in the SDKs) picks the loop's ``mode``
  (``awares``, ``lowres``, ``fullres``) and ``max_crops`` for one request.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

from awares_tool.backends.base import GenerationSettings
from awares_tool.episode import CropOptions
from awares_tool.serve.errors import ApiError
from awares_tool.serve.schema import ChatCompletionRequest, ChatMessageIn, ImageContent, OtherContent, TextContent

__all__ = ["Question", "read_request"]

_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool", "function": "Tool"}


class Question(BaseModel):
    """What the crop loop needs from one request."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    image: str
    text: str
    options: CropOptions
    stop: tuple[str, ...] = ()


def read_request(req: ChatCompletionRequest, base: CropOptions, *, max_tokens_limit: int) -> Question:
    """The question a request asks (see the module docstring for the rules).

    Args:
        req: The parsed request body.
        base: The gateway's loop options (``awares serve`` flags); the request's settings go over them.
        max_tokens_limit: Largest ``max_tokens`` accepted per model call.

    Raises:
        ApiError: 400, naming the field (``param``) that cannot be used.
    """
    _refuse_unsupported(req)
    image = _the_image(req.messages)
    last = req.messages[-1]
    if last.role != "user":
        raise ApiError(400, f"the last message must be the user's question, got a {last.role!r} message",
                       param=f"messages[{len(req.messages) - 1}]")
    question = _text(last)
    if not question.strip():
        raise ApiError(400, "the last user message has no question text; send a text part beside the image",
                       code="no_question", param=f"messages[{len(req.messages) - 1}].content")
    text = _with_context(req.messages[:-1], question)
    return Question(image=image, text=text, options=_options(req, base, max_tokens_limit),
                    stop=tuple([req.stop] if isinstance(req.stop, str) else req.stop or ()))


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    if req.n is not None and req.n > 1:
        raise ApiError(400, f"n={req.n} is not supported: the gateway returns one choice (n=1)", param="n")
    choice = req.tool_choice
    if choice == "required" or isinstance(choice, dict):
        raise ApiError(400, "this gateway answers with the model's text and cannot call the client's tools; drop "
                            "tool_choice (or use 'auto'/'none')", param="tool_choice")
    kind = (req.response_format or {}).get("type", "text")
    if kind != "text":
        raise ApiError(400, f"response_format {kind!r} is not supported: the answer is the model's plain text",
                       param="response_format")


def _the_image(messages: list[ChatMessageIn]) -> str:
    found: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m.content, list):
            continue
        for j, part in enumerate(m.content):
            where = f"messages[{i}].content[{j}]"
            if isinstance(part, OtherContent):
                raise ApiError(400, f"content parts of type {part.type!r} are not supported; send text and one "
                                    "image_url", param=where)
            if isinstance(part, ImageContent):
                if m.role != "user":
                    raise ApiError(400, f"images are accepted in user messages only, found one in a {m.role!r} "
                                        "message", param=where)
                found.append((where, part.image_url.url))
    if not found:
        raise ApiError(400, "the request has no image: add an image_url part (a data:image/...;base64 URI"
                            " or an http(s) URL where the gateway allows URLs) to the user message",
                       code="no_image", param="messages")
    if len(found) > 1:
        raise ApiError(400, f"the request has {len(found)} images ({', '.join(w for w, _ in found)}); the crop loop "
                            "answers about one image per request: send one request per image",
                       code="too_many_images", param=found[1][0])
    return found[0][1]


def _text(m: ChatMessageIn) -> str:
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    return "\n".join(p.text for p in m.content if isinstance(p, TextContent))


def _with_context(earlier: list[ChatMessageIn], question: str) -> str:
    instructions = [t for m in earlier if m.role in ("system", "developer") and (t := _text(m).strip())]
    turns = [f"{_ROLE_NAMES[m.role]}: {t}" for m in earlier if m.role in _ROLE_NAMES and (t := _text(m).strip())]
    blocks = list(instructions)
    if turns:
        blocks.append("Earlier in this conversation:\n" + "\n".join(turns))
    return "\n\n".join([*blocks, question]) if blocks else question


def _options(req: ChatCompletionRequest, base: CropOptions, max_tokens_limit: int) -> CropOptions:
    max_new = req.max_completion_tokens or req.max_tokens or base.decoding().max_new_tokens
    if max_new > max_tokens_limit:
        field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise ApiError(400, f"{field}={max_new} is over this gateway's limit of {max_tokens_limit} tokens per model "
                            "call", param=field)
    timeout = base.generation.timeout_s if base.generation else None
    generation = GenerationSettings(max_new_tokens=max_new, temperature=req.temperature or 0.0,
                                    top_p=req.top_p if req.top_p is not None else 1.0, seed=req.seed,
                                    timeout_s=timeout)
    extra = req.awares.model_dump(exclude_none=True) if req.awares else {}
    try:
        return CropOptions.model_validate({**dict(base), "max_new_tokens": max_new, "generation": generation, **extra})
    except ValidationError as e:  # the request's fields were checked above: this is the gateway's own config
        raise ValueError(f"cannot build the loop's options: {e}") from e
