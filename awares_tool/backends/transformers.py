"""Hugging Face transformers backend: any image-text-to-text model, with KV-cache reuse across turns.

Loads ``AutoModelForImageTextToText`` + ``AutoProcessor`` from a local folder or a hub id. The second turn of
the AwaRes loop (assistant request + crops) extends the first turn's prompt, so for Qwen-VL families we keep
the first turn's cache, crop it to the longest common token prefix, prefill only the new tokens (the request
and the crop images) and decode from there. The official README promises this reuse; its evaluation code
re-runs the whole prompt. Other families re-prefill the whole conversation (``cached_tokens`` stays 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, cast

from ..errors import BackendError, BackendUnavailableError, require_extra
from .base import Generation, GenerationSettings, ImagePart, Message, ModelCard, Timings, Usage
from .cards import card_for_model, load_card
from .templates import apply_named_template, template_support

__all__ = ["TransformersBackend", "MODEL_TYPE_TO_FAMILY"]

log = logging.getLogger(__name__)

#: transformers ``config.model_type`` -> token-accounting family of :mod:`awares_tool.tokens`.
MODEL_TYPE_TO_FAMILY = {
    "qwen2_vl": "qwen2-vl",
    "qwen2_5_vl": "qwen2.5-vl",
    "qwen3_vl": "qwen3-vl",
    "llava": "llava-1.5",
    "llava_next": "llava-next",
    "idefics3": "idefics3",
    "smolvlm": "smolvlm",
}
#: Families whose cache we know how to extend with new images (3-D M-RoPE positions via ``get_rope_index``).
_REUSABLE = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


@dataclass
class _TurnState:
    """The KV cache after one turn and the token ids it holds."""

    cache: Any
    ids: Any  # 1-D LongTensor of the tokens whose keys/values are in ``cache``
    # Fingerprint of each image in ``ids``, in order: every image expands to the same placeholder ids, so equal
    # ids do not prove equal keys/values (a state from another conversation with a same-size image would match).
    images: tuple[str, ...] = ()


class TransformersBackend:
    """Run a Hugging Face VLM locally.

    Device, dtype and attention default to what suits this machine (see
    :func:`~awares_tool.backends.placement.choose_placement`: a GPU in bfloat16 where there is one, else CPU);
    :attr:`placement` says what was chosen and why. Options are checked by
    :class:`~awares_tool.backends.spec.TransformersOptions`, as in a ``transformers:PATH?...`` spec.

    Args:
        model: Local folder or hub id (the hub needs network access).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` (the checkpoint's own) or None (choose).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` (``device_map="auto"``: spread
            over every GPU) or None (choose; a model too large for one GPU is spread).
        threads: torch intra-op threads (None: leave torch's default).
        min_pixels: Override the image processor's minimum pixels (Qwen-VL families).
        max_pixels: Override the image processor's maximum pixels (Qwen-VL families).
        attn_implementation: ``"sdpa"`` (None: the default), ``"eager"``, ``"flash_attention_2"``, ...
        reuse_cache: Allow KV-cache reuse when the loop passes the previous turn's state.
        model_card: The protocol to speak (a :class:`ModelCard`, a built-in card name such as
            ``"awares-official"`` or a card path); default: the folder's ``awares.json``, else the built-in card
            of a published checkpoint's hub id. Its pixel limits apply unless given explicitly.

    Raises:
        BackendSpecError: A bad option value (it names the option and the valid values).
        BackendUnavailableError: The model cannot be loaded, or the device is not on this machine.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        attn_implementation: str | None = None,
        reuse_cache: bool = True,
        model_card: ModelCard | str | None = None,
    ) -> None:
        torch = require_extra("torch", "hf")
        transformers = require_extra("transformers", "hf")
        from .hf_processors import load_processor
        from .placement import checkpoint_info, choose_placement, detect_capabilities
        from .spec import TransformersOptions, validate_options

        options = cast(TransformersOptions, validate_options(TransformersOptions, {k: v for k, v in dict(
            dtype=dtype, device=device, threads=threads, min_pixels=min_pixels, max_pixels=max_pixels,
            attn=attn_implementation, reuse_cache=reuse_cache).items() if v is not None}, f" for {model}"))
        if options.threads:
            torch.set_num_threads(options.threads)
        path = Path(model)
        if not path.exists() and (str(model).startswith((".", "/", "~")) or path.suffix):
            raise BackendUnavailableError(f"model folder not found: {model}")
        caps = detect_capabilities()
        self.placement = choose_placement(options, caps, checkpoint_info(model, need_size=bool(caps.cuda)))
        log.info("loading %s on %s (%s)", model, self.placement.describe(), "; ".join(self.placement.reasons))
        try:
            self.processor = load_processor(str(model))
            kwargs: dict[str, Any] = {"attn_implementation": self.placement.attn}
            dt = self.placement.dtype
            kwargs["dtype"] = dt if dt == "auto" else getattr(torch, dt)
            if self.placement.device_map is not None:
                kwargs["device_map"] = self.placement.device_map
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(str(model), **kwargs)
        except (OSError, ValueError, ImportError) as e:
            raise BackendUnavailableError(f"cannot load model {model!r} ({self.placement.describe()}): {e}") from e
        if self.placement.device_map is None:
            self.model.to(self.placement.device)
        self.model.eval()
        # The card of a published checkpoint carries the pixel limits it was trained with; explicit ones win.
        if isinstance(model_card, str):
            model_card = load_card(model_card)
        self.model_card = model_card or card_for_model(model)
        card = self.model_card
        min_pixels = options.min_pixels or (card.min_pixels if card else None)
        max_pixels = options.max_pixels or (card.max_pixels if card else None)
        ip = getattr(self.processor, "image_processor", None)
        if ip is not None and (min_pixels or max_pixels):
            size = dict(getattr(ip, "size", {}) or {})
            if min_pixels:
                size["shortest_edge"] = min_pixels
            if max_pixels:
                size["longest_edge"] = max_pixels
            ip.size = size
        # With device_map="auto" inputs go where the first layers are; accelerate's hooks move them onward.
        self.device = str(self.model.device) if self.placement.device_map == "auto" else self.placement.device
        self.reuse_cache = options.reuse_cache
        self.model_type: str = self.model.config.model_type
        self.token_family: str | None = MODEL_TYPE_TO_FAMILY.get(self.model_type)
        self.name = f"transformers:{model}"
        # A template that renders images inside tool turns (as TRL's tool loop trains models) gets the crops there;
        # others (Qwen2.5-VL-Instruct's own, Idefics3...) get them in a user turn.
        if self.model_card is not None and self.model_card.chat_template:  # the template training used
            apply_named_template(self.processor, self.model_card.chat_template)
        self.supports_tool_images = template_support(self.processor).tool_images
        self._image_token_id = getattr(self.model.config, "image_token_id", None) or getattr(
            self.model.config, "image_token_index", None
        )
        self._count_cache: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()  # one generate at a time per model

    @property
    def dtype(self) -> str:
        """The dtype the weights really have (``"bfloat16"``, ...), read from the loaded model."""
        return str(self._require_model().dtype).removeprefix("torch.")

    @property
    def closed(self) -> bool:
        """True after :meth:`close`; the backend cache then loads the model anew when asked."""
        return self.model is None

    # -- public API -------------------------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        *,
        state: Any = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        torch = require_extra("torch", "hf")
        self._require_model()
        inputs = self._encode(messages, tools)
        ids = inputs["input_ids"][0]
        with self._lock, torch.inference_mode():
            reusable = (
                self.reuse_cache
                and isinstance(state, _TurnState)
                and self.model_type in _REUSABLE
                and callable(getattr(state.cache, "get_seq_length", None))
            )
            t0 = time.perf_counter()
            if reusable:
                out, cached, clock = self._generate_reusing(inputs, state, settings)
            else:
                out, clock = self._generate(inputs, settings, cache=None)
                cached = 0
            t_end = time.perf_counter()
        seq = out.sequences[0]
        new = seq[len(ids):]
        eos = self._eos_ids()
        stopped = len(new) > 0 and int(new[-1]) in eos
        text = self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()
        t_first = clock.first or t_end
        # The cache now holds every token fed to the model: the prompt and all generated tokens but the last.
        # transformers 5 names the cache ``cache``; ``past_key_values`` still works there but warns.
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        next_state = (
            _TurnState(cache=cache, ids=seq[:-1].clone(), images=_image_fingerprints(inputs))
            if self.reuse_cache
            else None
        )
        return Generation(
            text=text,
            finish_reason="stop" if stopped else "length",
            usage=Usage(
                prompt_tokens=len(ids),
                completion_tokens=len(new),
                prefilled_tokens=len(ids) - cached,
                cached_tokens=cached,
                image_tokens=self._image_tokens(inputs, messages),
            ),
            timings=Timings(prefill_s=t_first - t0, decode_s=t_end - t_first),
            state=next_state,
        )

    @property
    def max_pixels(self) -> int | None:
        """The processor's pixel cap (``size["longest_edge"]`` of Qwen-VL processors): larger images are
        downscaled to it, so it bounds what "full resolution" means for this model."""
        size = getattr(getattr(self.processor, "image_processor", None), "size", None)
        value = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
        return int(value) if isinstance(value, int) and self.model_type in _REUSABLE else None

    def count_image_tokens(self, width: int, height: int) -> int:
        """Visual tokens this model's processor gives an image of this size (exact, from the processor)."""
        key = (width, height)
        if key not in self._count_cache:
            from PIL import Image

            img = Image.new("RGB", (width, height), "white")
            msgs = [Message(role="user", content=[ImagePart(image=img)])]
            inputs = self._encode(msgs, None)
            self._count_cache[key] = int((inputs["input_ids"] == self._image_token_id).sum())
        return self._count_cache[key]

    def close(self) -> None:
        """Drop the model so its memory can be freed (GPU memory is handed back to the driver at once)."""
        on_gpu = self.model is not None and self.device.startswith("cuda")
        self.model = None  # type: ignore[assignment]
        self._count_cache.clear()
        if on_gpu:
            import gc

            gc.collect()
            require_extra("torch", "hf").cuda.empty_cache()

    def _require_model(self) -> Any:
        if self.model is None:
            raise BackendError(f"{self.name} is closed; resolve the spec again (or build a new backend) to reload")
        return self.model

    def __enter__(self) -> "TransformersBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------------
    def _encode(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None) -> Any:
        conv = [_to_hf(m) for m in messages]
        add_prompt = messages[-1].role != "assistant"
        try:
            inputs = self.processor.apply_chat_template(
                conv, tools=tools, add_generation_prompt=add_prompt, tokenize=True, return_dict=True,
                return_tensors="pt",
            )
        except (ValueError, TypeError, KeyError) as e:
            raise BackendError(f"the processor could not encode the conversation: {e}") from e
        return inputs.to(self.device)

    def _gen_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "return_dict_in_generate": True,
            "use_cache": True,
            "eos_token_id": sorted(self._eos_ids()),
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }
        if settings.temperature > 0:
            kw.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
            if settings.seed is not None:
                require_extra("torch", "hf").manual_seed(settings.seed)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.timeout_s:
            kw["max_time"] = settings.timeout_s
        return kw

    def _generate(self, inputs: Any, settings: GenerationSettings, cache: Any) -> tuple[Any, "_FirstTokenClock"]:
        clock = _FirstTokenClock()
        kw = self._gen_kwargs(settings)
        kw["logits_processor"] = [clock]
        if cache is not None:
            kw["cache"] = cache
        try:
            out = self.model.generate(**inputs, **kw)
        except RuntimeError as e:
            raise BackendError(f"generation failed: {e}") from e
        return out, clock

    def _generate_reusing(self, inputs: Any, state: _TurnState, settings: GenerationSettings):
        """Prefill only the tokens after the shared prefix, then decode with the extended cache."""
        torch = require_extra("torch", "hf")
        ids = inputs["input_ids"]
        n = min(len(state.ids), ids.shape[1] - 1)
        same = (state.ids[:n] == ids[0, :n]).to(torch.int64)
        common = int(same.cumprod(0).sum()) if n else 0
        common = min(common, self._first_changed_image_start(ids[0], state.images, _image_fingerprints(inputs)))
        if common == 0:
            out, clock = self._generate(inputs, settings, cache=None)
            return out, 0, clock
        cache = state.cache
        # transformers 5 crops by a negative count of tokens to drop (a positive absolute length raises). Measure
        # the cache itself: it may have grown past ``state.ids`` if this state was already extended once.
        surplus = cache.get_seq_length() - common
        if surplus > 0:
            cache.crop(-surplus)
        base = self.model.model
        types = inputs["mm_token_type_ids"]
        grid = inputs.get("image_grid_thw")
        positions, deltas = base.get_rope_index(
            ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=inputs["attention_mask"]
        )
        end = ids.shape[1] - 1  # leave the last token to generate(), which needs at least one new token
        clock = _FirstTokenClock()
        if end > common:
            chunk: dict[str, Any] = {
                "input_ids": ids[:, common:end],
                "attention_mask": inputs["attention_mask"][:, :end],
                "position_ids": positions[..., common:end],
                "mm_token_type_ids": types[:, common:end],
                "cache": cache,
                "use_cache": True,
            }
            if grid is not None:
                new_images = self._images_in_span(ids[0], common, end, grid)
                if new_images:
                    first, count = new_images
                    rows = grid.prod(-1)
                    start_row = int(rows[:first].sum())
                    stop_row = start_row + int(rows[first:first + count].sum())
                    chunk["pixel_values"] = inputs["pixel_values"][start_row:stop_row]
                    chunk["image_grid_thw"] = grid[first:first + count]
            try:
                self.model(**chunk)
            except RuntimeError as e:
                raise BackendError(f"prefill of the follow-up turn failed: {e}") from e
        base.rope_deltas = deltas
        kw = self._gen_kwargs(settings)
        kw["logits_processor"] = [clock]
        try:
            out = self.model.generate(
                input_ids=ids, attention_mask=inputs["attention_mask"], mm_token_type_ids=types, cache=cache, **kw
            )
        except RuntimeError as e:
            raise BackendError(f"generation failed: {e}") from e
        return out, common, clock

    def _images_in_span(self, ids: Any, start: int, end: int, grid: Any) -> tuple[int, int] | None:
        """Index of the first image whose tokens lie in ``ids[start:end]`` and how many images do."""
        merge = self._merge_size()
        per_image = [int(g.prod()) // (merge * merge) for g in grid]
        is_img = (ids == self._image_token_id).tolist()
        first = None
        count = 0
        i = 0
        img_index = 0
        while i < len(is_img) and img_index < len(per_image):
            if is_img[i]:
                if start <= i < end:
                    if first is None:
                        first = img_index
                    count += 1
                elif i < start and i + per_image[img_index] > start:
                    raise BackendError("cannot reuse the cache: it ends inside an image")
                i += per_image[img_index]
                img_index += 1
            else:
                i += 1
        return (first, count) if first is not None else None

    def _first_changed_image_start(self, ids: Any, old: tuple[str, ...], new: tuple[str, ...]) -> int:
        """Position of the first image token whose image differs from the cached turn's (or ``len(ids)``)."""
        k = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        if k >= len(old):  # every cached image is unchanged; later images are new tokens anyway
            return len(ids)
        positions = (ids == self._image_token_id).nonzero().flatten().tolist()
        merge = self._merge_size()
        before = sum(int(fp.split(":", 1)[0]) // (merge * merge) for fp in new[:k])
        return positions[before] if before < len(positions) else len(ids)

    def _merge_size(self) -> int:
        vc = getattr(self.model.config, "vision_config", None)
        return int(getattr(vc, "spatial_merge_size", 2) or 2)

    def _image_tokens(self, inputs: Any, messages: Sequence[Message]) -> list[int]:
        grid = inputs.get("image_grid_thw")
        if grid is not None:
            merge = self._merge_size()
            return [int(g.prod()) // (merge * merge) for g in grid]
        images = [im for m in messages for im in m.images]
        return [self.count_image_tokens(*im.size) for im in images]

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (self.model.generation_config.eos_token_id, self.processor.tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(i) for i in src)
        return ids


def _image_fingerprints(inputs: Any) -> tuple[str, ...]:
    """``"<patches>:<sha1>"`` per image of a Qwen-VL batch (grid and pixels), in prompt order."""
    grid = inputs.get("image_grid_thw")
    if grid is None:
        return ()
    pixels = inputs["pixel_values"]
    out: list[str] = []
    start = 0
    for g in grid:
        rows = int(g.prod())
        digest = hashlib.sha1(str(g.tolist()).encode())
        digest.update(pixels[start:start + rows].detach().float().cpu().contiguous().numpy().tobytes())
        out.append(f"{rows}:{digest.hexdigest()}")
        start += rows
    return tuple(out)


class _FirstTokenClock:
    """A logits processor that notes when the first decoding step starts (i.e. prefill ended)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.first is None:
            self.first = time.perf_counter()
        return scores


def _to_hf(m: Message) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, ImagePart):
            content.append({"type": "image", "image": p.image})
        else:
            content.append({"type": "text", "text": p.text})
    out: dict[str, Any] = {"role": m.role, "content": content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "type": "function",
                "function": {
                    "name": c.get("function", c).get("name"),
                    "arguments": _as_dict(c.get("function", c).get("arguments", {})),
                },
            }
            for c in m.tool_calls
        ]
    return out


def _as_dict(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args
