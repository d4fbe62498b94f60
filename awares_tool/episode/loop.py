"""The AwaRes loop: low-res view + question -> the model answers or requests crops -> crops -> answer.

This module knows the protocol and the crop engine, and talks to models only through
:class:`~awares_tool.backends.base.VLMBackend`. Every baseline the benchmarks need runs through the same
code path (``mode``), so their costs are measured the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Literal, Sequence

from PIL import Image

from awares_tool.backends import resolve_backend
from awares_tool.backends.base import Generation, GenerationSettings, ImagePart, Message, ModelCard, TextPart, VLMBackend
from awares_tool.crops import FULL_IMAGE, CropSet, get_crop_set
from awares_tool.errors import AwaresError, MalformedRequestError
from awares_tool.images import ImageLimits, ImageSource, SourceImage, open_image
from awares_tool.images.lowres import cap_pixels, make_lowres_view, parse_lowres
from awares_tool.protocol import (
    FORCE_ANSWER_TEXT,
    CropRequest,
    FinalAnswer,
    build_system_prompt,
    crops_turn_text,
    get_crops_tool,
    parse_reply,
)
from awares_tool.episode.result import CropResult, CropRound, Mode, TokenLedger, TurnTiming

__all__ = ["crop_on_demand", "acrop_on_demand", "crop_on_demand_batch"]

log = logging.getLogger(__name__)

_MODES: tuple[str, ...] = ("awares", "lowres", "fullres", "all_crops", "full_on_request")


def crop_on_demand(
    image: ImageSource,
    question: str,
    *,
    backend: VLMBackend | str | None = None,
    crop_set: str | CropSet | None = None,
    lowres: Any = None,
    mode: Mode = "awares",
    max_rounds: int = 1,
    max_crops: int = 4,
    max_new_tokens: int = 128,
    settings: GenerationSettings | None = None,
    system_prompt: str | None = None,
    use_tools: bool | None = None,
    reuse_cache: bool = True,
    crop_max_pixels: int | None = None,
    image_limits: ImageLimits | None = None,
    on_unknown: Literal["error", "drop", "full_image"] = "drop",
    on_malformed: Literal["error", "full_image"] = "full_image",
    bbox_units: Literal["pixels", "norm1000", "norm1"] | None = None,
) -> CropResult:
    """Answer ``question`` about ``image``, fetching high-res crops only where the model asks for them.

    Args:
        image: Path, bytes, base64/data URI, PIL image, numpy array or :class:`SourceImage`.
        question: The question about the image.
        backend: A backend object or a spec string (``"transformers:PATH"``, ``"llamacpp:MODEL.gguf"``,
            ``"openai:URL#MODEL"``); None uses the embedded default model.
        crop_set: Crop set name/spec/object; defaults to the model card's, else ``awares9``.
        lowres: Low-res policy spec (``0.5``, ``"512px"``, ``"tokens:qwen2.5-vl:256"``); defaults to the
            model card's, else half of each side (the official setting).
        mode: ``"awares"`` (the method), ``"lowres"`` (never crops), ``"fullres"`` (native resolution, one
            turn), ``"all_crops"`` (every crop of the set, whatever the model wants) or
            ``"full_on_request"`` (any request gets the whole high-res image: the dynamic-resolution baseline).
        max_rounds: Crop rounds allowed (the paper uses one). A model that still requests after the last
            round is sent one more user turn telling it to answer; ``forced_answer`` is then True, and if it
            requests again the result has ``answered=False`` and the request text as ``answer``.
        max_crops: Most regions honoured per request; extra names are dropped (recorded as a fallback).
        max_new_tokens: Decoding limit per turn (ignored when ``settings`` is given).
        settings: Full decoding settings (temperature, timeout, ...).
        system_prompt: Override the protocol prompt (default: the model card's, else the full prompt).
        use_tools: Declare ``get_crops`` as a native tool (for backends with function calling). Defaults to
            True for models whose card says they were trained with tool calls (``request_format: tool``).
        reuse_cache: Let the backend reuse the first turn's KV cache in the second turn.
        crop_max_pixels: Downscale crops (and the full image in ``fullres``) above this many pixels.
        image_limits: Pixel/byte/URL limits applied when opening ``image``.
        on_unknown: What to do with region names the crop set lacks (see :func:`parse_reply`).
        on_malformed: ``"full_image"`` (documented fallback, as the official code does) or ``"error"``.
        bbox_units: Accept free-form ``bbox_2d`` zoom calls in these units (pixels / 0-1000 / 0-1).

    Returns:
        A :class:`CropResult` with the answer, regions fetched, token ledger, timings and message trace.

    Raises:
        ImageError: The image cannot be used.
        BackendError: The backend failed.
        RequestError: Only when ``on_unknown``/``on_malformed`` is ``"error"``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if max_rounds < 0 or max_crops < 1:
        raise ValueError("max_rounds must be >= 0 and max_crops >= 1")
    t_start = time.perf_counter()
    src = open_image(image, limits=image_limits)
    be = resolve_backend(backend)
    card: ModelCard | None = getattr(be, "model_card", None)
    cs = get_crop_set(crop_set if crop_set is not None else (card.crop_set if card else None))
    policy = parse_lowres(lowres if lowres is not None else (card.lowres if card else None))
    settings = settings or GenerationSettings(max_new_tokens=max_new_tokens)
    if use_tools is None:
        use_tools = bool(card and card.request_format == "tool")
    width, height = src.size

    def fit(img: Image.Image) -> Image.Image:
        return cap_pixels(img, max_pixels=crop_max_pixels) if crop_max_pixels else img

    uses_protocol = mode in ("awares", "all_crops", "full_on_request")
    first_view = fit(src.image) if mode == "fullres" else make_lowres_view(src, policy)
    messages: list[Message] = []
    if uses_protocol:
        prompt = system_prompt
        if prompt is None:
            prompt = card.system_prompt if card and card.system_prompt else build_system_prompt(
                cs, style="tool" if use_tools else "full"
            )
        messages.append(Message.text("system", prompt))
    label = "full image" if mode == "fullres" else "low-res view"
    messages.append(Message(role="user", content=[ImagePart(image=first_view, label=label), TextPart(text=question)]))
    tools = [get_crops_tool(cs)] if use_tools and uses_protocol else None

    rounds: list[CropRound] = []
    timings: list[TurnTiming] = []
    sent: list[Image.Image] = [first_view]
    state: Any = None
    forced = False
    answered = True
    answer = ""
    last_gen: Generation | None = None

    while True:
        if mode == "all_crops" and not rounds:
            names = [n for n in cs.region_names() if n != FULL_IMAGE]
            request: FinalAnswer | CropRequest = CropRequest(
                regions=names, form="text", raw=f"GET_CROPS: {names}", fallback=None
            )
            reply_text = request.raw
            gen = None
        else:
            gen = be.generate(messages, settings, state=state if reuse_cache else None, tools=tools)
            last_gen = gen
            state = gen.state
            timings.append(
                TurnTiming(
                    turn=len(timings) + 1,
                    prefill_s=gen.timings.prefill_s,
                    decode_s=gen.timings.decode_s,
                    prompt_tokens=gen.usage.prompt_tokens,
                    prefilled_tokens=gen.usage.prefilled_tokens,
                    cached_tokens=gen.usage.cached_tokens,
                    completion_tokens=gen.usage.completion_tokens,
                )
            )
            reply_text = gen.text if not gen.tool_calls else json.dumps(gen.tool_calls)
            request = _parse(gen, cs, max_crops, on_unknown, on_malformed, bbox_units, (width, height))
        if isinstance(request, FinalAnswer):
            answer = request.text
            break
        if forced:  # asked again after being told to answer
            answered, answer = False, reply_text
            log.warning("model kept requesting crops after the last round; no answer")
            break
        assistant = _assistant_turn(gen, reply_text)
        if mode in ("lowres", "fullres") or len(rounds) >= max_rounds:
            forced = True
            messages += [assistant, *_tool_ack(assistant, "No crops available."), Message.text("user", FORCE_ANSWER_TEXT)]
            continue
        names, boxes = _fetch_plan(request, mode, cs, width, height)
        crops = [fit(src.crop(box)) for box in boxes.values()] if names else []
        rounds.append(
            CropRound(
                round=len(rounds) + 1,
                request_text=reply_text,
                requested=list(request.regions),
                fetched=names,
                invalid=list(request.invalid),
                boxes=boxes,
                fallback=request.fallback,
                form=request.form,
            )
        )
        sent += crops
        turn_text = crops_turn_text(names, cs, card.crops_turn_text if card else None)
        parts: list[Any] = [ImagePart(image=c, label=f"crop {n}") for n, c in zip(names, crops)]
        delivery = [*parts, TextPart(text=turn_text)]
        if request.form in ("tool_call", "function") and getattr(be, "supports_tool_images", False):
            # The backend renders images inside a tool turn (as TRL's tool loop trains them): answer the call there.
            call_id = str((assistant.tool_calls or [{}])[0].get("id", "")) or None
            messages += [assistant, Message(role="tool", content=delivery, tool_call_id=call_id)]
        else:
            messages += [assistant, *_tool_ack(assistant, "Crops attached below."), Message(role="user", content=delivery)]

    messages.append(Message.text("assistant", answer))
    ledger = _ledger(be, last_gen, sent, src, mode)
    return CropResult(
        answer=answer,
        mode=mode,
        question=question,
        rounds=len(rounds),
        requests=rounds,
        forced_answer=forced,
        answered=answered,
        tokens=ledger,
        timings=timings,
        wall_s=time.perf_counter() - t_start,
        image_size=(width, height),
        first_view_size=first_view.size,
        crop_set=cs.name,
        backend=getattr(be, "name", type(be).__name__),
        trace=[m.summary() for m in messages],
    )


def _parse(gen: Generation, cs: CropSet, max_crops: int, on_unknown, on_malformed, bbox_units, size):
    reply: str | dict = {"content": gen.text, "tool_calls": gen.tool_calls} if gen.tool_calls else gen.text
    try:
        return parse_reply(
            reply, cs, max_crops=max_crops, on_unknown=on_unknown, on_too_many="truncate",
            bbox_units=bbox_units, image_size=size, bbox_mode="crop",
        )
    except MalformedRequestError:
        if on_malformed == "error":
            raise
        log.warning("malformed crop request %r; falling back to the full image", gen.text[:200])
        raw = gen.text if not gen.tool_calls else json.dumps(gen.tool_calls)
        return CropRequest(regions=[FULL_IMAGE], form="text", raw=raw, fallback="full_image")


def _fetch_plan(request: CropRequest, mode: str, cs: CropSet, width: int, height: int):
    """Which regions to send, with their pixel boxes in the original image."""
    if mode == "full_on_request":
        return [FULL_IMAGE], {FULL_IMAGE: (0, 0, width, height)}
    if request.form == "bbox":
        boxes = {f"box{i}": tuple(b) for i, b in enumerate(request.boxes)}
        return list(boxes), boxes
    boxes = {}
    for name in request.regions:
        boxes[name] = (0, 0, width, height) if name == FULL_IMAGE and not cs.has(name) else cs.box(name, width, height)
    return list(boxes), boxes


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


def _ledger(be: Any, gen: Generation | None, sent: Sequence[Image.Image], src: SourceImage, mode: str) -> TokenLedger:
    width, height = src.size
    pixel_ratio = sum(im.width * im.height for im in sent) / float(width * height)
    counts: list[int] | None = None
    source = "unknown"
    if gen is not None and len(gen.usage.image_tokens) == len(sent):
        counts, source = list(gen.usage.image_tokens), "backend"
    full = _count(be, width, height)
    if counts is None and full is not None:
        est = [_count(be, im.width, im.height) for im in sent]
        if all(c is not None for c in est):
            counts, source = est, "estimate"  # type: ignore[assignment]
    if mode == "fullres" and counts:
        full = counts[0]
    if counts is None:
        return TokenLedger(full=full, pixel_ratio=pixel_ratio, source="unknown")
    spent = sum(counts)
    return TokenLedger(
        full=full,
        first_view=counts[0],
        crops=counts[1:],
        spent=spent,
        rtr=(spent / full) if full else None,
        pixel_ratio=pixel_ratio,
        source=source,  # type: ignore[arg-type]
    )


def _count(be: Any, width: int, height: int) -> int | None:
    """Visual tokens of one image of this size for the backend's model (its own count, else an estimate)."""
    counter = getattr(be, "count_image_tokens", None)
    try:
        if callable(counter):
            return int(counter(width, height))
        family = getattr(be, "token_family", None)
        if family:
            from awares_tool.tokens import get_family

            return get_family(family).count(width, height)
    except AwaresError as e:
        log.warning("cannot count visual tokens for %dx%d: %s", width, height, e)
    return None


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

    def one(pair: tuple[ImageSource, str]) -> CropResult:
        image, question = pair
        try:
            return crop_on_demand(image, question, backend=be, **kwargs)
        except Exception as e:  # noqa: BLE001 - one bad item must not end the batch; the error is kept
            log.warning("question %r failed: %s", question[:80], e)
            return _failed(question, kwargs.get("mode", "awares"), be, e)

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
