"""The AwaRes loop: low-res view + question -> the model answers or requests crops -> crops -> answer.

:func:`crop_on_demand` is a short driver: a :class:`~awares_tool.episode.episode.CropEpisode` holds the protocol
(first view, request parsing, crops, costs) and a :class:`~awares_tool.backends.base.VLMBackend` the model; this
module only turns one into the other's messages. Every baseline the benchmarks need runs through the same code
path (``mode``), so their costs are measured the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from pydantic import ValidationError

from awares_tool.backends import resolve_backend
from awares_tool.backends.base import Generation, ImagePart, Message, ModelCard, TextPart, VLMBackend
from awares_tool.episode.episode import CropEpisode, CropsTurn, model_costs
from awares_tool.episode.options import CropOptions
from awares_tool.episode.result import CropResult, CropRound, TokenLedger, TurnTiming
from awares_tool.errors import AwaresError
from awares_tool.images import ImageSource
from awares_tool.protocol import FORCE_ANSWER_TEXT, CropRequest, FinalAnswer, build_system_prompt, get_crops_tool

__all__ = ["crop_on_demand", "acrop_on_demand", "crop_on_demand_batch", "CropOptions"]

log = logging.getLogger(__name__)

def crop_on_demand(image: ImageSource, question: str, *, backend: VLMBackend | str | None = None,
                   options: CropOptions | None = None, **overrides: Any) -> CropResult:
    """Answer ``question`` about ``image``, fetching high-res crops only where the model asks for them.

    Args:
        image: Path, bytes, base64/data URI, PIL image, numpy array or :class:`~awares_tool.images.SourceImage`.
        question: The question about the image.
        backend: A backend object or a spec string (``"transformers:PATH"``, ``"llamacpp:MODEL.gguf"``,
            ``"openai:URL#MODEL"``); None uses the embedded default model.
        options: How to run it (:class:`~awares_tool.episode.options.CropOptions`): mode, crop set, low-res
            policy, limits for runaway models, fallbacks.
        **overrides: Any field of :class:`CropOptions` as a keyword (``mode="lowres"``, ``max_crops=2``, ...),
            applied over ``options``. ``mode``: ``"awares"`` (the method), ``"lowres"`` (never crops),
            ``"fullres"`` (the full image, one turn), ``"all_crops"`` (every crop of the set) or
            ``"full_on_request"`` (any request gets the whole image: the dynamic-resolution baseline). A model
            that still requests after its last round is told once to answer; ``forced_answer`` is then True,
            and if it requests again the result has ``answered=False``.

    Returns:
        A :class:`CropResult` with the answer, regions fetched, token ledger, timings and message trace.

    Raises:
        TypeError: An unknown keyword.
        ValueError: An invalid option value.
        ImageError: The image cannot be used.
        BackendError: The backend failed.
        RequestError: Only when ``on_unknown``/``on_malformed`` is ``"error"``.
    """
    opts = _options(options, overrides)
    t_start = time.perf_counter()
    be = resolve_backend(backend)
    card: ModelCard | None = getattr(be, "model_card", None)
    counter, native, cap = model_costs(be)
    episode = CropEpisode(
        image, crop_set=opts.crop_set if opts.crop_set is not None else (card.crop_set if card else None),
        lowres=opts.lowres if opts.lowres is not None else (card.lowres if card else None), mode=opts.mode,
        max_rounds=opts.max_rounds if opts.mode in _CROPPING else 0, max_crops=opts.max_crops,
        max_image_pixels=opts.crop_max_pixels, model_max_pixels=opts.model_max_pixels or cap, counter=counter,
        native_counter=native,
        crops_template=card.crops_turn_text if card else None, limits=opts.image_limits)
    return _Driver(episode, be, card, opts).run(question, t_start)


_CROPPING = ("awares", "all_crops", "full_on_request")


def _options(options: CropOptions | None, overrides: dict[str, Any]) -> CropOptions:
    if not overrides:
        return options or CropOptions()
    known = set(CropOptions.model_fields) | {"settings"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"crop_on_demand() got unexpected keyword argument(s) {unknown}; the options are "
                        f"{sorted(known)}")
    base = dict(options) if options is not None else {}
    if "settings" in overrides:
        base.pop("generation", None)
    try:
        return CropOptions.model_validate({**base, **overrides})
    except ValidationError as e:
        raise ValueError(f"invalid crop_on_demand option: {e}") from e


class _Driver:
    """One conversation: the episode's views and crops as messages, the backend's replies as requests."""

    def __init__(self, episode: CropEpisode, backend: Any, card: ModelCard | None, opts: CropOptions) -> None:
        self.episode, self.backend, self.card, self.opts = episode, backend, card, opts
        self.use_tools = opts.use_tools if opts.use_tools is not None else bool(card and card.request_format == "tool")
        self.messages: list[Message] = []
        self.rounds: list[CropRound] = []
        self.timings: list[TurnTiming] = []
        self.last_gen: Generation | None = None
        self.state: Any = None

    def run(self, question: str, t_start: float) -> CropResult:
        ep, opts = self.episode, self.opts
        uses_protocol = opts.mode in _CROPPING
        first = ep.first_view()
        if uses_protocol:
            prompt = opts.system_prompt or (self.card.system_prompt if self.card and self.card.system_prompt else
                                            build_system_prompt(ep.crop_set, style="tool" if self.use_tools else "full"))
            self.messages.append(Message.text("system", prompt))
        label = "full image" if opts.mode == "fullres" else "low-res view"
        self.messages.append(Message(role="user", content=[ImagePart(image=first, label=label),
                                                           TextPart(text=question)]))
        tools = [get_crops_tool(ep.crop_set)] if self.use_tools and uses_protocol else None
        forced, answered, answer, reasoning = False, True, "", ""
        while True:
            if opts.mode == "all_crops" and not ep.turns:
                gen, request = None, ep.all_regions()
                reply_text = request.raw
            else:
                gen = self._generate(tools)
                reply_text = gen.text if not gen.tool_calls else json.dumps(gen.tool_calls)
                reply: Any = {"content": gen.text, "tool_calls": gen.tool_calls} if gen.tool_calls else gen.text
                request = ep.parse(reply, on_unknown=opts.on_unknown, on_too_many="truncate",
                                   on_malformed=opts.on_malformed, bbox_units=opts.bbox_units)
            if isinstance(request, FinalAnswer) and not request.empty:
                answer, reasoning = request.text, request.reasoning
                break
            if forced:  # told to answer, and still no answer
                answered, answer = False, "" if isinstance(request, FinalAnswer) else reply_text
                reasoning = request.reasoning if isinstance(request, FinalAnswer) else ""
                log.warning("the model gave no answer after being told to answer")
                break
            assistant = _assistant_turn(gen, reply_text)
            if isinstance(request, FinalAnswer) or not ep.rounds_left:  # an empty reply, or no crop round left
                forced = True
                self.messages += [assistant, *_tool_ack(assistant, "No crops available."),
                                  Message.text("user", FORCE_ANSWER_TEXT)]
                continue
            self._deliver(assistant, request, ep.fetch(request), reply_text)
        self.messages.append(Message.text("assistant", f"<think>{reasoning}</think>\n{answer}" if reasoning else answer))
        return CropResult(
            answer=answer, reasoning=reasoning, mode=opts.mode, question=question, rounds=len(self.rounds), requests=self.rounds,
            forced_answer=forced, answered=answered, tokens=self._ledger(), timings=self.timings,
            wall_s=time.perf_counter() - t_start, image_size=ep.size, first_view_size=first.size,
            crop_set=ep.crop_set.name, backend=getattr(self.backend, "name", type(self.backend).__name__),
            trace=[m.summary() for m in self.messages])

    def _generate(self, tools: list[dict[str, Any]] | None) -> Generation:
        gen = self.backend.generate(self.messages, self.opts.decoding(),
                                    state=self.state if self.opts.reuse_cache else None, tools=tools)
        self.last_gen, self.state = gen, gen.state
        u = gen.usage
        self.timings.append(TurnTiming(
            turn=len(self.timings) + 1, prefill_s=gen.timings.prefill_s, decode_s=gen.timings.decode_s,
            prompt_tokens=u.prompt_tokens, prefilled_tokens=u.prefilled_tokens, cached_tokens=u.cached_tokens,
            completion_tokens=u.completion_tokens))
        return gen

    def _deliver(self, assistant: Message, request: CropRequest, turn: CropsTurn, reply_text: str) -> None:
        self.rounds.append(CropRound(
            round=turn.round, request_text=reply_text, requested=list(request.regions), fetched=list(turn.names),
            invalid=list(request.invalid), boxes=dict(zip(turn.names, turn.boxes)), fallback=request.fallback,
            form=request.form))
        parts: list[Any] = [ImagePart(image=c, label=f"crop {n}") for n, c in zip(turn.names, turn.images)]
        delivery = [*parts, TextPart(text=turn.text)] if turn.text else parts
        mode = self.opts.crop_delivery
        in_tool = mode == "tool" or (mode == "auto" and getattr(self.backend, "supports_tool_images", False))
        if request.form in ("tool_call", "function") and in_tool:
            # The backend renders images inside a tool turn (as TRL's tool loop trains them): answer the call there.
            call_id = str((assistant.tool_calls or [{}])[0].get("id", "")) or None
            self.messages += [assistant, Message(role="tool", content=delivery, tool_call_id=call_id)]
        else:
            self.messages += [assistant, *_tool_ack(assistant, "Crops attached below."),
                              Message(role="user", content=delivery)]

    def _ledger(self) -> TokenLedger:
        measured = list(self.last_gen.usage.image_tokens) if self.last_gen is not None else None
        full = measured[0] if measured and self.opts.mode == "fullres" else None
        try:
            return self.episode.ledger.token_ledger(measured or None, measured_full=full)
        except AwaresError as e:  # a size the counter cannot count: report pixels only
            log.warning("cannot count visual tokens: %s", e)
            return TokenLedger(pixel_ratio=self.episode.ledger.pixel_ratio, source="unknown")


def _assistant_turn(gen: Generation | None, reply_text: str) -> Message:
    if gen is not None and gen.tool_calls:
        return Message(role="assistant", content=[TextPart(text=gen.text)] if gen.text else [], tool_calls=gen.tool_calls)
    return Message.text("assistant", reply_text)


def _tool_ack(assistant: Message, text: str) -> list[Message]:
    """Native tool calls need a tool turn per call id; the images then follow in a user turn."""
    return [
        Message(role="tool", content=[TextPart(text=text)], tool_call_id=str(call.get("id", "")))
        for call in (assistant.tool_calls or [])
    ]


async def acrop_on_demand(image: ImageSource, question: str, **kwargs: Any) -> CropResult:
    """Async twin of :func:`crop_on_demand` (runs it in a worker thread; backends block)."""
    return await asyncio.to_thread(crop_on_demand, image, question, **kwargs)


def crop_on_demand_batch(
    items: Iterable[tuple[ImageSource, str]],
    *,
    backend: VLMBackend | str | None = None,
    concurrency: int = 1,
    progress: bool = True,
    **kwargs: Any,
) -> list[CropResult]:
    """Run :func:`crop_on_demand` over ``(image, question)`` pairs, keeping order.

    A failing item never ends the batch: its result has ``answered=False`` and the error text in
    ``error``. ``concurrency > 1`` runs items in threads (useful for remote backends; a local model
    backend serialises its own calls).
    """
    pairs = list(items)
    be = resolve_backend(backend)
    opts = _options(kwargs.pop("options", None), kwargs)  # a bad option is the caller's mistake: fail at once

    def one(pair: tuple[ImageSource, str]) -> CropResult:
        image, question = pair
        try:
            return crop_on_demand(image, question, backend=be, options=opts)
        except Exception as e:  # noqa: BLE001 - one bad item must not end the batch; the error is kept
            log.warning("question %r failed: %s", question[:80], e)
            return _failed(question, opts.mode, be, e)

    bar = _progress(len(pairs)) if progress else None
    results: list[CropResult] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for res in pool.map(one, pairs):
            results.append(res)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _failed(question: str, mode: str, be: Any, err: Exception) -> CropResult:
    return CropResult(
        answer="",
        mode=mode,  # type: ignore[arg-type]
        question=question,
        answered=False,
        error=f"{type(err).__name__}: {err}",
        tokens=TokenLedger(pixel_ratio=0.0),
        image_size=(0, 0),
        first_view_size=(0, 0),
        crop_set="",
        backend=getattr(be, "name", type(be).__name__),
    )


def _progress(total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: fall back to no bar
        return None
    return tqdm(total=total, desc="questions", unit="q")
