"""llama.cpp backend (llama-cpp-python): a GGUF model plus its ``mmproj`` projector, on CPU.

Why we drive libmtmd ourselves instead of calling ``Llama.create_chat_completion``: the multimodal chat
handlers of llama-cpp-python 0.3.36 clear the KV cache on every call, so the second AwaRes turn would
re-encode the low-res view. We render the prompt with the same template the handler would use, tokenize it
with ``mtmd_tokenize`` into text and image chunks, keep every chunk whose tokens (or image) and position
match what the KV cache already holds from the previous turn, and evaluate only the rest; sampling is then
left to ``Llama.create_completion``, exactly as the handlers do.

Other choices, each pinned to the llama-cpp-python 0.3.36 behaviour that forced it
(``shared/notes/edge-and-adapters.md`` section 1):

* Chat handler: ``"mtmd"`` renders the GGUF's own ``tokenizer.chat_template`` (tools, ``<tool_response>``)
  and lets libmtmd pick the projector; ``"qwen2.5-vl"`` uses ``Qwen25VLChatHandler``'s hard-coded template
  (no tools: calls are rendered as ``<tool_call>`` text). ``"auto"`` prefers MTMD when the GGUF has a template.
* Images in tool turns: with ``"mtmd"`` and a template that renders a tool turn's content parts (Qwen-VL
  templates, TRL's among them), the crops stay inside the tool turn, where TRL's tool loop trained the model
  (``supports_tool_images``); a model trained that way answers garbage when they arrive in a user turn.
  Otherwise a tool turn with images becomes a text ack + user turn
  (:func:`~awares_tool.backends.openai.move_tool_images`). Tool-call text is returned as text and parsed by
  our protocol parser (the library does not parse ``<tool_call>`` with ``tool_choice="auto"``).
* Token counts: the library's ``prompt_tokens`` counts M-RoPE *positions* (an image of 256 tokens adds
  about 16), so we count KV entries from the chunks ourselves; the context check uses the real count and
  names ``n_ctx`` when an image does not fit.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ..errors import BackendError, BackendTimeoutError, BackendUnavailableError, require_extra
from .base import Generation, GenerationSettings, ImagePart, Message, ModelCard, Timings, Usage
from .openai import _calls_as_text, move_tool_images

#: Token family -> (grid, min_pixels) of the image processor its real checkpoints ship: pixels per merged
#: visual token side (patch x merge), to which image sides are rounded, and the area smaller images are scaled
#: up to (Qwen2/2.5-VL ``min_pixels`` 56*56; Qwen3-VL patch 16, ``size.shortest_edge`` 65536). GGUF files do
#: not carry these, and libmtmd applies neither the minimum nor transformers' resampler.
QWEN_GRIDS: dict[str, tuple[int, int]] = {"qwen2-vl": (28, 56 * 56), "qwen2.5-vl": (28, 56 * 56),
                                          "qwen3-vl": (32, 65_536)}

__all__ = ["LlamaCppBackend", "ARCH_TO_FAMILY"]

log = logging.getLogger(__name__)

#: GGUF ``general.architecture`` -> token-accounting family (Qwen2-VL and 2.5-VL share "qwen2vl").
ARCH_TO_FAMILY = {"qwen2vl": "qwen2.5-vl", "qwen3vl": "qwen3-vl", "gemma3": "gemma3"}
Handler = Literal["auto", "mtmd", "qwen2.5-vl"]


@dataclass
class _Unit:
    """One KV-cache element in position order: a text token, or a whole image."""

    key: tuple[Any, ...]
    cells: int  # KV entries it occupies
    n_pos: int  # positions it advances (fewer than cells for M-RoPE images)
    chunk: int = -1  # index of its chunk in the current tokenization (images only)


@dataclass
class _KVState:
    """Handed back as ``Generation.state``: lets the next turn reuse this backend's cache."""

    owner: Any
    units: list[_Unit] = field(default_factory=list)


class LlamaCppBackend:
    """Run a GGUF VLM with llama-cpp-python.

    Args:
        model_path: The language-model GGUF.
        mmproj: The projector GGUF; None looks for a single ``mmproj*.gguf`` next to the model.
        chat_handler: ``"auto"``, ``"mtmd"`` (GGUF template, any projector) or ``"qwen2.5-vl"``.
        n_ctx: Context size in tokens; images of Qwen2.5-VL cost ceil(W/28)*ceil(H/28) each.
        n_threads: CPU threads (None: llama.cpp's default).
        n_batch: Prompt batch size.
        reuse_cache: Reuse the KV cache of the previous turn when the loop passes its state.
        token_family: Override the token family (default: from ``general.architecture``).
        verbose: llama.cpp logging.
        completion_kwargs: Extra arguments for ``Llama.create_completion`` (e.g. ``logit_bias``, ``stop``).
        **llama_kwargs: Passed to ``llama_cpp.Llama`` (e.g. ``n_gpu_layers``).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        mmproj: str | Path | None = None,
        chat_handler: Handler = "auto",
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 512,
        reuse_cache: bool = True,
        token_family: str | None = None,
        verbose: bool = False,
        completion_kwargs: dict[str, Any] | None = None,
        **llama_kwargs: Any,
    ) -> None:
        llama_cpp = require_extra("llama_cpp", "llamacpp", package="llama-cpp-python")
        from llama_cpp import llama_chat_format as fmt

        model = Path(model_path).expanduser()
        if not model.is_file():
            raise BackendUnavailableError(f"GGUF model not found: {model}")
        proj = Path(mmproj).expanduser() if mmproj else _find_mmproj(model)
        if not proj.is_file():
            raise BackendUnavailableError(f"mmproj (projector) GGUF not found: {proj}; pass mmproj=PATH (--mmproj)")
        if chat_handler not in ("auto", "mtmd", "qwen2.5-vl"):
            raise ValueError(f"chat_handler must be 'auto', 'mtmd' or 'qwen2.5-vl', got {chat_handler!r}")
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(model), n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, verbose=verbose,
                **llama_kwargs,
            )
        except (ValueError, RuntimeError) as e:
            raise BackendUnavailableError(f"llama.cpp cannot load {model}: {e}") from e
        meta = dict(self._llm.metadata)
        arch = meta.get("general.architecture", "")
        template = meta.get("tokenizer.chat_template") or ""
        if chat_handler == "auto":
            chat_handler = "mtmd" if template else "qwen2.5-vl"
        if chat_handler == "mtmd":
            if not template:
                self._llm.close()
                raise BackendUnavailableError(f"{model} has no tokenizer.chat_template; use chat_handler='qwen2.5-vl'")
            self._handler = fmt.MTMDChatHandler(clip_model_path=str(proj), verbose=verbose)
        else:
            self._handler = fmt.Qwen25VLChatHandler(clip_model_path=str(proj), verbose=verbose)
            template = fmt.Qwen25VLChatHandler.CHAT_FORMAT
        self._llm.chat_handler = self._handler
        if not verbose:
            _quiet_mtmd()
        self.handler_kind: str = chat_handler
        self._template = _compile(fmt, template)
        self.supports_tool_images: bool = chat_handler == "mtmd" and _renders_tool_parts(self._template)
        self._mtmd = self._handler._mtmd_cpp
        self.n_ctx = n_ctx
        self.reuse_cache = reuse_cache
        self.completion_kwargs = dict(completion_kwargs or {})
        self.token_family = token_family or ARCH_TO_FAMILY.get(arch)
        self.model_card = ModelCard.from_folder(model.parent)
        self.name = f"llamacpp:{model}"
        self.model_path, self.mmproj_path = model, proj
        self._kv: list[_Unit] = []
        self._count_cache: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        # Free the model before interpreter teardown: a Llama freed during teardown prints
        # "ValueError: I/O operation on closed file" from mtmd_free (llama-cpp-python 0.3.36).
        self._finalizer = weakref.finalize(self, self._llm.close)

    # -- public API -------------------------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        *,
        state: Any = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        llm = self._require_open()
        msgs = list(messages) if self.supports_tool_images else move_tool_images(messages)
        with self._lock:
            self._ensure_mtmd(llm)
            t0 = time.perf_counter()
            deadline = t0 + settings.timeout_s if settings.timeout_s else None
            images = [im for m in msgs for im in m.images]
            text = self._render(msgs, tools)
            chunks = self._tokenize(text, images)
            try:
                units, image_tokens = self._units(chunks, images)
                total = sum(u.cells for u in units)
                if total >= self.n_ctx:
                    raise BackendError(_too_long(total, self.n_ctx, images, image_tokens))
                reuse = self.reuse_cache and isinstance(state, _KVState) and state.owner is self
                cached = self._prefill(chunks, units, reuse)
            finally:
                self._mtmd.mtmd_input_chunks_free(chunks)
            t1 = time.perf_counter()
            if deadline and t1 > deadline:
                raise BackendTimeoutError(f"prefill took {t1 - t0:.1f} s, over timeout_s={settings.timeout_s:g}")
            prompt_pos = llm.n_tokens
            out = self._decode(settings, min(settings.max_new_tokens, self.n_ctx - total), deadline)
            t2 = time.perf_counter()
            gen_ids = [int(t) for t in llm.input_ids[prompt_pos:llm.n_tokens]]
            self._kv = units + [_Unit(("t", t), 1, 1) for t in gen_ids]  # generated tokens are in the cache too
        choice = out["choices"][0]
        return Generation(
            text=choice["text"].strip(),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(
                prompt_tokens=total,
                completion_tokens=int(out["usage"]["completion_tokens"]),
                prefilled_tokens=total - cached,
                cached_tokens=cached,
                image_tokens=image_tokens,
            ),
            timings=Timings(prefill_s=t1 - t0, decode_s=t2 - t1),
            state=_KVState(owner=self, units=list(self._kv)) if self.reuse_cache else None,
        )

    def count_image_tokens(self, width: int, height: int) -> int:
        """Visual tokens (KV entries) libmtmd gives an image of this size: exact, from its own preprocessing."""
        key = (width, height)
        if key not in self._count_cache:
            from PIL import Image

            llm = self._require_open()
            with self._lock:
                self._ensure_mtmd(llm)
                chunks = self._tokenize(self._marker(), [Image.new("RGB", key)])
                try:
                    counts = [self._mtmd.mtmd_input_chunk_get_n_tokens(self._mtmd.mtmd_input_chunks_get(chunks, i))
                              for i in range(self._mtmd.mtmd_input_chunks_size(chunks)) if self._is_image(chunks, i)]
                finally:
                    self._mtmd.mtmd_input_chunks_free(chunks)
            self._count_cache[key] = int(sum(counts))
        return self._count_cache[key]

    @property
    def max_pixels(self) -> int | None:
        """The pixel cap the model was trained with (its card's ``max_pixels``): the loop scales larger images
        under it before the model sees them, as the transformers backend's processor does."""
        return self.model_card.max_pixels if self.model_card else None

    @property
    def closed(self) -> bool:
        """True after :meth:`close`; the backend cache then loads the model anew when asked."""
        return getattr(self, "_llm", None) is None

    def close(self) -> None:
        """Free the model, the context and the projector now (idempotent)."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            self._finalizer.detach()
            llm.close()  # also runs the handler's mtmd_free callback
        self._kv = []

    def __enter__(self) -> "LlamaCppBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- prompt -----------------------------------------------------------------------------------------
    def _require_open(self) -> Any:
        if self._llm is None:
            raise BackendError(f"{self.name} is closed; create a new LlamaCppBackend")
        return self._llm

    def _ensure_mtmd(self, llm: Any) -> None:
        """Load the projector on first use (as the library does; +seconds for a real-size mmproj)."""
        try:
            self._handler._init_mtmd_context(llm)
        except ValueError as e:
            raise BackendUnavailableError(f"cannot load the projector {self.mmproj_path}: {e}") from e

    def _marker(self) -> str:
        return self._mtmd.mtmd_default_marker().decode("utf-8")

    def _render(self, msgs: Sequence[Message], tools: list[dict[str, Any]] | None) -> str:
        marker = self._marker()
        native = self.handler_kind == "mtmd"
        conv: list[dict[str, Any]] = []
        for m in msgs:
            if m.images and m.role not in (("user", "tool") if self.supports_tool_images else ("user",)):
                raise BackendError(f"this chat template takes images only in user turns, got one in a {m.role} turn")
            parts = [{"type": "text", "text": marker} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                     for p in m.content]
            content: Any = parts if m.images else m.text_content
            msg: dict[str, Any] = {"role": m.role, "content": content}
            if m.tool_calls:
                if native:
                    msg["tool_calls"] = [
                        {"type": "function", "id": c.get("id"), "function": c.get("function", c)} for c in m.tool_calls
                    ]
                else:
                    msg["content"] = "\n".join(t for t in (m.text_content, _calls_as_text(m.tool_calls)) if t)
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
            conv.append(msg)
        llm = self._llm
        try:
            return self._template.render(
                messages=conv, add_generation_prompt=True, tools=tools if native else None,
                eos_token=_piece(llm.detokenize([llm.token_eos()])), bos_token=_piece(llm.detokenize([llm.token_bos()])),
                raise_exception=_raise,
            )
        except Exception as e:  # jinja2 errors of a model's own template
            raise BackendError(f"the chat template of {self.model_path.name} failed to render: {e}") from e

    def _tokenize(self, text: str, images: Sequence[Any]) -> Any:
        mt = self._mtmd
        bitmaps = []
        try:
            for im in images:
                rgb = self._on_grid(im.convert("RGB"))
                data = rgb.tobytes()
                bmp = mt.mtmd_bitmap_init(rgb.width, rgb.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
                if bmp is None:
                    raise BackendError(f"libmtmd could not take an image of {rgb.width}x{rgb.height}")
                bitmaps.append(bmp)
            inp = mt.mtmd_input_text()
            raw = text.encode("utf-8")
            inp.text, inp.text_len, inp.add_special, inp.parse_special = raw, len(raw), True, True
            chunks = mt.mtmd_input_chunks_init()
            arr = (mt.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = mt.mtmd_tokenize(self._handler.mtmd_ctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
            if rc != 0:
                mt.mtmd_input_chunks_free(chunks)
                raise BackendError(f"libmtmd failed to tokenize the prompt (code {rc}; {len(bitmaps)} images)")
            return chunks
        finally:
            for bmp in bitmaps:
                mt.mtmd_bitmap_free(bmp)

    def _on_grid(self, image: Any) -> Any:
        """``image`` resized as transformers' Qwen-VL processor resizes it (grid, pixel cap; PIL bicubic).

        libmtmd rounds a side that is not a multiple of the grid with its own resampler, whose pixels differ
        from transformers': a small model read a half-page crop (195x505) as "109" on llama.cpp and "181" (right)
        on transformers. It also ignores the pixel cap the model was trained with (the card's ``max_pixels``):
        a 728x728 scene cost 338 visual tokens there against 233. Resizing here first makes both stacks see
        the same pixels (the grid and minimum of :data:`QWEN_GRIDS`); other families pass through.
        """
        if self.token_family not in QWEN_GRIDS:
            return image
        from PIL import Image

        from ..tokens.rules import smart_resize

        grid, min_pixels = QWEN_GRIDS[self.token_family]
        w, h = image.size
        cap = self.max_pixels
        no_shrink = (w + grid) * (h + grid)
        h_bar, w_bar = smart_resize(h, w, grid, min_pixels=min_pixels,
                                    max_pixels=min(cap, no_shrink) if cap else no_shrink)
        return image if (w_bar, h_bar) == (w, h) else image.resize((w_bar, h_bar), Image.BICUBIC)

    def _is_image(self, chunks: Any, i: int) -> bool:
        chunk = self._mtmd.mtmd_input_chunks_get(chunks, i)
        return self._mtmd.mtmd_input_chunk_get_type(chunk) == self._mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE

    def _units(self, chunks: Any, images: Sequence[Any]) -> tuple[list[_Unit], list[int]]:
        mt = self._mtmd
        units: list[_Unit] = []
        image_tokens: list[int] = []
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(chunk) == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                units += [_Unit(("t", int(ptr[j])), 1, 1) for j in range(n.value)]
            else:
                im = images[len(image_tokens)]
                digest = hashlib.sha1(im.tobytes()).hexdigest()
                cells = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
                units.append(_Unit(("i", digest, im.size, cells), cells, int(mt.mtmd_input_chunk_get_n_pos(chunk)), i))
                image_tokens.append(cells)
        return units, image_tokens

    # -- evaluation -------------------------------------------------------------------------------------
    def _prefill(self, chunks: Any, units: list[_Unit], reuse: bool) -> int:
        """Evaluate what the KV cache does not hold yet; returns the KV entries reused."""
        llm, mt = self._llm, self._mtmd
        held, self._kv = self._kv, []  # unknown until this prefill completes
        keep = 0
        if reuse:
            for old, new in zip(held, units):
                if old.key != new.key:
                    break
                keep += 1
            keep = min(keep, len(units) - 1)  # at least one token must be evaluated to get fresh logits
        pos = sum(u.n_pos for u in units[:keep])
        if keep and not llm._ctx.kv_cache_seq_rm(-1, pos, -1):
            keep, pos = 0, 0
        if not keep:
            llm.reset()
            llm._ctx.kv_cache_clear()
        llm.n_tokens = pos
        i = keep
        while i < len(units):
            if units[i].key[0] == "t":
                j = i
                while j < len(units) and units[j].key[0] == "t":
                    j += 1
                try:
                    llm.eval([u.key[1] for u in units[i:j]])
                except RuntimeError as e:
                    raise BackendError(f"llama.cpp failed to evaluate the prompt: {e}") from e
                i = j
                continue
            new_pos = self._llm_pos(llm.n_tokens)
            rc = mt.mtmd_helper_eval_chunk_single(
                self._handler.mtmd_ctx, llm._ctx.ctx, mt.mtmd_input_chunks_get(chunks, units[i].chunk),
                llm.n_tokens, 0, llm.n_batch, False, ctypes.byref(new_pos),
            )
            if rc != 0:
                raise BackendError(f"libmtmd failed to encode/decode image chunk {units[i].chunk} (code {rc})")
            llm.input_ids[llm.n_tokens:new_pos.value] = 0  # image positions hold no token id (0 is a valid one)
            llm.n_tokens = new_pos.value
            i += 1
        self._kv = list(units)
        return sum(u.cells for u in units[:keep])

    @staticmethod
    def _llm_pos(value: int) -> Any:
        import llama_cpp

        return llama_cpp.llama_pos(value)

    def _decode(self, settings: GenerationSettings, max_tokens: int, deadline: float | None) -> dict[str, Any]:
        import llama_cpp

        llm = self._llm
        timed_out = False

        def past_deadline(_ids: Any, _logits: Any) -> bool:
            nonlocal timed_out
            timed_out = deadline is not None and time.perf_counter() > deadline
            return timed_out

        kwargs: dict[str, Any] = dict(
            max_tokens=max(1, max_tokens), temperature=settings.temperature, top_p=settings.top_p,
            top_k=0 if settings.temperature else 1, min_p=0.0, repeat_penalty=1.0, seed=settings.seed,
            stop=["<|im_end|>", "<|endoftext|>"],
            stopping_criteria=llama_cpp.StoppingCriteriaList([past_deadline]) if deadline else None,
        )
        kwargs.update(self.completion_kwargs)
        try:
            out = llm.create_completion(prompt=llm.input_ids[: llm.n_tokens].tolist(), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"llama.cpp generation failed: {e}") from e
        if timed_out:
            raise BackendTimeoutError(f"{self.name} did not finish within timeout_s={settings.timeout_s:g} s")
        return out  # type: ignore[return-value]


def _too_long(total: int, n_ctx: int, images: Sequence[Any], image_tokens: list[int]) -> str:
    if image_tokens:
        k = max(range(len(image_tokens)), key=image_tokens.__getitem__)
        w, h = images[k].size
        what = f"; image {k + 1} ({w}x{h} px) alone takes {image_tokens[k]} tokens"
    else:
        what = ""
    return (f"the prompt needs {total} context tokens but n_ctx is {n_ctx}{what}; raise n_ctx "
            "(LlamaCppBackend(n_ctx=...)) or send smaller images (crop_max_pixels / a smaller low-res view)")


def _quiet_mtmd() -> None:
    """Route the multimodal library's logs through llama-cpp-python's logger, which honours ``verbose``
    (0.3.36 leaves mtmd on its default logger: every image prints a dozen lines to stderr)."""
    import ctypes

    try:
        from llama_cpp import _logger, mtmd_cpp
    except ImportError:  # pragma: no cover - another llama-cpp-python layout
        return
    for setter in ("mtmd_log_set", "mtmd_helper_log_set"):
        if hasattr(mtmd_cpp, setter):
            getattr(mtmd_cpp, setter)(_logger.llama_log_callback, ctypes.c_void_p(0))


def _find_mmproj(model: Path) -> Path:
    found = sorted(p for p in model.parent.glob("*mmproj*.gguf") if p != model)
    if len(found) == 1:
        return found[0]
    raise BackendUnavailableError(
        f"pass mmproj=PATH (--mmproj): found {len(found)} mmproj*.gguf files next to {model}"
    )


def _compile(fmt: Any, template: str) -> Any:
    """The template environment llama-cpp-python's MTMD handler uses (loop controls, ``tojson``)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[fmt.Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = fmt.Jinja2ChatFormatter.tojson
    env.globals["strftime_now"] = fmt.Jinja2ChatFormatter.strftime_now
    return env.from_string(template)


def _renders_tool_parts(template: Any) -> bool:
    """Does ``template`` render the text parts of a tool turn's content list as text (images can go there)?"""
    probe = "awares-probe-7f3a"
    conv = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "id": "c", "function": {"name": "get_crops", "arguments": {"regions": ["0"]}}}]},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": probe}]}]
    try:
        out = template.render(messages=conv, add_generation_prompt=True, tools=None, eos_token="", bos_token="",
                              raise_exception=_raise)
    except Exception:  # a template without tool turns
        return False
    return out.count(probe) == 1 and "'text'" not in out and '"text"' not in out


def _piece(piece: Any) -> str:
    return piece.decode("utf-8", errors="ignore") if isinstance(piece, bytes) else str(piece)


def _raise(message: str) -> None:
    raise ValueError(message)
