"""A crop-loop result as a ``chat.completion`` (or its stream of chunks), with ``usage`` and the ``awares`` report.

``usage`` follows OpenAI's definitions, summed over every model call of the loop (one call when the model answers
from the low-res view, two when it asks for crops):

* ``prompt_tokens``: each call's whole prompt (text and images), as an API bills it; tokens a call reused from the
  previous call's KV cache are included and broken out in ``prompt_tokens_details.cached_tokens``;
* ``completion_tokens``: every token the model generated, the crop request included;
* ``prompt_tokens_details.image_tokens``: the visual tokens of the images the model was shown, each counted once:
  the low-res view plus every crop (``awares.visual_tokens.spent``). The model's own processor counts them on
  local backends; for an upstream server they are estimated from the model family (``awares.visual_tokens.source``
  says which).

``awares.visual_tokens.full`` is what the full image would have cost, so ``saved = full - spent`` and
``rtr = spent / full``.
"""

from __future__ import annotations

from collections.abc import Iterator

from awares_tool.episode import CropResult
from awares_tool.serve.inbound import Question
from awares_tool.serve.schema import (
    AssistantMessage,
    AwaresReport,
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Choice,
    CompletionUsage,
    Delta,
    PromptTokensDetails,
    RoundReport,
    TurnReport,
    VisualTokens,
)

__all__ = ["usage_of", "report_of", "answer_of", "completion", "first_chunk", "last_chunks"]


def usage_of(result: CropResult) -> CompletionUsage:
    """OpenAI ``usage`` of a loop (see the module docstring)."""
    prompt = sum(t.prompt_tokens for t in result.timings)
    completion_tokens = sum(t.completion_tokens for t in result.timings)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion_tokens, total_tokens=prompt + completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=sum(t.cached_tokens for t in result.timings),
                                                  image_tokens=result.tokens.spent))


def report_of(result: CropResult, *, queue_s: float, loop_s: float) -> AwaresReport:
    """The ``awares`` extension object of a loop."""
    led = result.tokens
    return AwaresReport(
        answered=result.answered, forced_answer=result.forced_answer, mode=result.mode, regions=result.regions,
        rounds=[RoundReport(round=r.round, requested=r.requested, fetched=r.fetched, invalid=r.invalid,
                            boxes=r.boxes, form=r.form, fallback=r.fallback) for r in result.requests],
        rtr=led.rtr, rtr_native=led.rtr_native, pixel_ratio=led.pixel_ratio,
        visual_tokens=VisualTokens(
            spent=led.spent, first_view=led.first_view, crops=led.crops, full=led.full, full_native=led.full_native,
            saved=_minus(led.full, led.spent), saved_native=_minus(led.full_native, led.spent), source=led.source),
        image_size=result.image_size, first_view_size=result.first_view_size, crop_set=result.crop_set,
        backend=result.backend,
        turns=[TurnReport(turn=t.turn, prefill_s=t.prefill_s, decode_s=t.decode_s, prompt_tokens=t.prompt_tokens,
                          cached_tokens=t.cached_tokens, completion_tokens=t.completion_tokens)
               for t in result.timings],
        queue_s=queue_s, loop_s=loop_s)


def _minus(a: int | None, b: int | None) -> int | None:
    return a - b if a is not None and b is not None else None


def answer_of(result: CropResult, question: Question) -> tuple[str, str]:
    """``(content, finish_reason)``.

    No final answer: empty content and ``length`` (the model ran out of crop rounds, as a model runs out of
    tokens). A stop string cuts the answer there (``stop``). A last call that used its whole token limit: ``length``.
    """
    if not result.answered:
        return "", "length"
    answer = result.answer
    cuts = [answer.find(s) for s in question.stop if s and s in answer]
    if cuts:
        return answer[:min(cuts)], "stop"
    last = result.timings[-1] if result.timings else None
    if last is not None and last.completion_tokens >= question.options.decoding().max_new_tokens:
        return answer, "length"
    return answer, "stop"


def completion(result: CropResult, question: Question, *, model: str, queue_s: float,
               loop_s: float) -> ChatCompletion:
    """The non-streamed response."""
    content, finish = answer_of(result, question)
    return ChatCompletion(model=model,
                          choices=[Choice(message=AssistantMessage(content=content), finish_reason=finish)],
                          usage=usage_of(result), awares=report_of(result, queue_s=queue_s, loop_s=loop_s))


def first_chunk(cid: str, created: int, model: str) -> ChatCompletionChunk:
    """The chunk sent as soon as the request is admitted: the assistant's role, no content yet."""
    return ChatCompletionChunk(id=cid, created=created, model=model,
                               choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])


def last_chunks(done: ChatCompletion, *, include_usage: bool) -> Iterator[ChatCompletionChunk]:
    """The answer, then the finish reason with the ``awares`` report, then (if asked) the usage chunk."""
    head = {"id": done.id, "created": done.created, "model": done.model}
    choice = done.choices[0]
    if choice.message.content:
        yield ChatCompletionChunk(**head, choices=[ChunkChoice(delta=Delta(content=choice.message.content))])
    yield ChatCompletionChunk(**head, choices=[ChunkChoice(delta=Delta(), finish_reason=choice.finish_reason)],
                              awares=done.awares)
    if include_usage:
        yield ChatCompletionChunk(**head, choices=[], usage=done.usage)
