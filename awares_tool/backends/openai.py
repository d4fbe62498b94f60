"""OpenAI-compatible chat backend: vLLM, llama.cpp's server, Ollama's ``/v1`` endpoint and hosted APIs.

Speaks ``POST {base_url}/chat/completions`` with httpx. Images travel as ``data:`` URIs. Both request forms
of the protocol work: the plain-text ``GET_CROPS: [...]`` reply, and native function calling (the loop's
``tools`` are forwarded; the assistant's ``tool_calls`` come back in :attr:`Generation.tool_calls`).

By default crops go in a **user** turn: the OpenAI schema allows only text in ``tool`` messages, and
llama-cpp-python's server refuses images there (a validation error, HTTP 500), so a tool message that
carries images is sent as a text acknowledgement plus a user message with the images (:func:`move_tool_images`).
A model trained with tool calls (``request_format: tool``, e.g. by ``awares-train grpo``, whose tool loop
returns the crops inside the tool turn) answers best when they stay there: ``tool_images=True`` sends them
in the tool message, for servers that accept images in any turn (vLLM parses image parts in every role;
the model's chat template must render them, as Qwen3-VL's and ``awares_train``'s templates do).

Token usage comes from the server's ``usage`` block. Servers do not report visual tokens per image, so
``Usage.image_tokens`` stays empty and the loop estimates them from ``token_family`` (its ledger then says
``source="estimate"``).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from typing import Any, Sequence

from ..errors import BackendError, BackendTimeoutError, BackendUnavailableError, require_extra
from awares_tool.images import to_data_uri
from .cards import card_for_model, load_card
from .base import Generation, GenerationSettings, ImagePart, Message, ModelCard, TextPart, Timings, Usage

__all__ = ["OpenAIBackend", "to_openai_messages", "move_tool_images", "guess_family"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def guess_family(model: str | None) -> str | None:
    """Token-accounting family from a served model name (``Qwen2.5-VL-7B`` -> ``qwen2.5-vl``), or None."""
    if not model:
        return None
    name = model.lower().replace("_", "-")
    for key, family in (("qwen3-vl", "qwen3-vl"), ("qwen2.5-vl", "qwen2.5-vl"), ("qwen25vl", "qwen2.5-vl"),
                        ("qwen2.5vl", "qwen2.5-vl"), ("qwen2-vl", "qwen2-vl"), ("qwen2vl", "qwen2-vl"),
                        ("awares", "qwen2.5-vl"), ("llava-v1.6", "llava-next"), ("llava-next", "llava-next"),
                        ("llava", "llava-1.5"), ("smolvlm", "smolvlm"), ("idefics3", "idefics3")):
        if key in name:
            return family
    return None


def move_tool_images(messages: Sequence[Message], ack: str = "Result attached below.") -> list[Message]:
    """Rewrite every ``tool`` message that carries images into a text-only tool message + a user message.

    Several runtimes read images only from user turns (llama-cpp-python 0.3.36 crashes or inlines the
    base64 text otherwise; the OpenAI schema forbids them), so the images move to the following user turn.
    """
    out: list[Message] = []
    for m in messages:
        if m.role == "tool" and m.images:
            text = m.text_content or ack
            out.append(Message(role="tool", content=[TextPart(text=text)], tool_call_id=m.tool_call_id))
            out.append(Message(role="user", content=[p for p in m.content if isinstance(p, ImagePart)]))
        else:
            out.append(m)
    return out


def _calls_as_text(calls: list[dict[str, Any]]) -> str:
    """Hermes/Qwen ``<tool_call>`` text for servers without native function calling."""
    parts = []
    for c in calls:
        fn = c.get("function", c)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        parts.append("<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}) + "\n</tool_call>")
    return "\n".join(parts)


def to_openai_messages(
    messages: Sequence[Message], *, image_format: str = "PNG", native_tools: bool = True,
    tool_images: bool = False,
) -> list[dict[str, Any]]:
    """Our messages as OpenAI chat messages (images as data URIs; tool images moved to a user turn).

    With ``native_tools=False`` assistant ``tool_calls`` become ``<tool_call>`` text and tool turns become
    user turns, for servers that reject the ``tools`` fields. With ``tool_images=True`` (and native tools)
    images stay inside their tool message.
    """
    out: list[dict[str, Any]] = []
    for m in messages if tool_images and native_tools else move_tool_images(messages):
        role = m.role
        if role == "tool" and not native_tools:
            role = "user"
        if m.images or role == "user":
            content: Any = []
            for p in m.content:
                if isinstance(p, ImagePart):
                    content.append({"type": "image_url", "image_url": {"url": to_data_uri(p.image, image_format)}})
                else:
                    content.append({"type": "text", "text": p.text})
        else:
            content = m.text_content
        msg: dict[str, Any] = {"role": role, "content": content}
        if m.role == "assistant" and m.tool_calls:
            if native_tools:
                msg["tool_calls"] = [_wire_call(c, i) for i, c in enumerate(m.tool_calls)]
            else:
                msg["content"] = "\n".join(t for t in (m.text_content, _calls_as_text(m.tool_calls)) if t)
        if m.role == "tool" and native_tools:
            msg["tool_call_id"] = m.tool_call_id or ""
        out.append(msg)
    return out


def _wire_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    return {
        "id": str(call.get("id") or f"call_{index}"),
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


class OpenAIBackend:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1`` (vLLM), ``http://127.0.0.1:11434/v1``
            (Ollama) or ``http://127.0.0.1:8080/v1`` (llama.cpp).
        model: Served model name; None asks ``GET {base_url}/models`` on first use and takes the first.
        api_key: Bearer token (local servers usually need none).
        timeout_s: Read timeout per request (``GenerationSettings.timeout_s`` overrides it per call).
        connect_timeout_s: Connect timeout.
        max_retries: Retries after a 429/5xx reply or a connection error (not after a timeout: a model
            that is too slow does not get faster, and retrying would multiply the wait).
        backoff_s: First retry delay; doubles each retry (with jitter), capped by ``max_backoff_s``. A
            ``Retry-After`` header wins when present (also capped).
        concurrency: Most requests in flight at once from this object (batches run items in threads).
        use_tools: Send ``tools`` and native ``tool_calls``/``tool`` messages. False: strip them and send
            the calls as ``<tool_call>`` text, for servers without function calling.
        token_family: Family for visual-token estimates (default: guessed from the model name).
        image_format: ``PNG`` (lossless, default) or ``JPEG`` (smaller requests).
        extra_body: Extra JSON fields for every request (e.g. ``{"top_k": 1}`` for vLLM).
        model_card: The model's ``awares.json`` card if known (servers cannot tell us): a
            :class:`ModelCard`, or the path of the card or of the folder holding it.
        tool_images: Answer a native tool call with the crops inside the tool message instead of a
            following user turn, for servers that accept images there (vLLM; not llama-cpp-python's server).
            Use it for models trained with tool calls.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        concurrency: int = 4,
        use_tools: bool = True,
        token_family: str | None = None,
        image_format: str = "PNG",
        extra_body: dict[str, Any] | None = None,
        model_card: ModelCard | str | os.PathLike[str] | None = None,
        tool_images: bool = False,
    ) -> None:
        httpx = require_extra("httpx", "openai")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.use_tools = use_tools
        self.image_format = image_format
        self.extra_body = dict(extra_body or {})
        if model_card is None and model:
            model_card = card_for_model(model)  # a published checkpoint served under its hub id
        self.model_card = model_card if model_card is None or isinstance(model_card, ModelCard) else (
            load_card(model_card))
        self.tool_images = tool_images
        self._family_override = token_family
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))
        self._slots = threading.Semaphore(concurrency)
        self._model_lock = threading.Lock()

    @property
    def supports_tool_images(self) -> bool:
        """Whether the loop may answer a tool call with images in the tool turn (see ``tool_images``)."""
        return self.tool_images and self.use_tools

    # -- identity ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"openai:{self.base_url}#{self.model or '?'}"

    @property
    def token_family(self) -> str | None:
        return self._family_override or guess_family(self.model)

    def count_image_tokens(self, width: int, height: int) -> int:
        """Estimated visual tokens (from :attr:`token_family`; servers do not report them per image)."""
        family = self.token_family
        if family is None:
            raise BackendError(
                f"cannot estimate visual tokens for model {self.model!r}: pass token_family= to OpenAIBackend"
            )
        from awares_tool.tokens import get_family

        return get_family(family).count(width, height)

    def resolve_model(self) -> str:
        """The served model name (asks ``GET /models`` once when none was given)."""
        with self._model_lock:
            if self.model is None:
                data = self._request("GET", "/models", None, self.timeout_s)
                try:
                    self.model = str(data["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as e:
                    raise BackendUnavailableError(
                        f"{self.base_url}/models lists no model ({str(data)[:200]}); pass the model name "
                        "as openai:URL#MODEL"
                    ) from e
                log.info("using model %r served at %s", self.model, self.base_url)
            return self.model

    # -- chat -------------------------------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        *,
        state: Any = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """One chat completion. ``state`` is ignored: servers manage their own prefix caches."""
        native = self.use_tools
        body: dict[str, Any] = {
            "model": self.resolve_model(),
            "messages": to_openai_messages(messages, image_format=self.image_format, native_tools=native,
                                           tool_images=self.tool_images),
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stream": False,
        }
        if settings.seed is not None:
            body["seed"] = settings.seed
        if tools and native:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        body.update(self.extra_body)
        t0 = time.perf_counter()
        data = self._request("POST", "/chat/completions", body, settings.timeout_s or self.timeout_s)
        elapsed = time.perf_counter() - t0
        return self._parse(data, elapsed)

    def _parse(self, data: Any, elapsed: float) -> Generation:
        try:
            choice = data["choices"][0]
            msg = choice.get("message") or {}
        except (KeyError, IndexError, TypeError) as e:
            raise BackendError(f"{self.base_url} returned a reply without choices: {str(data)[:300]}") from e
        text = msg.get("content") or ""
        if isinstance(text, list):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        calls = [c for c in (msg.get("tool_calls") or []) if isinstance(c, dict)]
        finish = _FINISH.get(str(choice.get("finish_reason")), "stop")
        if calls:
            finish = "tool_calls"
        usage = data.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        # Servers report one latency; split it by token share only when timings are present (llama.cpp).
        timings = data.get("timings") or {}
        if "prompt_ms" in timings:
            tm = Timings(prefill_s=timings["prompt_ms"] / 1000, decode_s=timings.get("predicted_ms", 0) / 1000)
        else:
            tm = Timings(prefill_s=elapsed, decode_s=0.0)
        return Generation(
            text=str(text).strip(),
            finish_reason=finish,  # type: ignore[arg-type]
            tool_calls=calls,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, prefilled_tokens=prompt - cached,
                        cached_tokens=cached),
            timings=tm,
        )

    # -- transport --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any, timeout_s: float) -> Any:
        httpx = require_extra("httpx", "openai")
        url = self.base_url + path
        timeout = httpx.Timeout(timeout_s, connect=min(self.connect_timeout_s, timeout_s))
        attempt = 0
        while True:
            with self._slots:
                try:
                    resp = self._client.request(method, url, json=body, timeout=timeout)
                except httpx.TimeoutException as e:
                    if isinstance(e, httpx.ConnectTimeout) and attempt < self.max_retries:
                        attempt += 1
                        self._sleep(attempt, None)
                        continue
                    raise BackendTimeoutError(
                        f"{url} did not answer within {timeout_s:g} s; raise timeout_s (OpenAIBackend(timeout_s=...) "
                        "or GenerationSettings.timeout_s) or use a smaller model"
                    ) from e
                except httpx.TransportError as e:
                    if attempt < self.max_retries:
                        attempt += 1
                        self._sleep(attempt, None)
                        continue
                    raise BackendUnavailableError(
                        f"cannot reach {url} after {attempt + 1} attempts ({type(e).__name__}: {e}); "
                        "is the server running and the URL right?"
                    ) from e
            if resp.status_code in _RETRY_STATUS and attempt < self.max_retries:
                attempt += 1
                log.info("%s answered %d; retry %d/%d", url, resp.status_code, attempt, self.max_retries)
                self._sleep(attempt, resp.headers.get("retry-after"))
                continue
            if resp.status_code >= 400:
                err = BackendUnavailableError if resp.status_code in (401, 403, 404) else BackendError
                raise err(f"{method} {url} failed with HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                return resp.json()
            except ValueError as e:
                raise BackendError(f"{url} returned a body that is not JSON: {resp.text[:200]!r}") from e

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
        if retry_after:
            parsed = _parse_retry_after(retry_after)
            if parsed is not None:
                delay = parsed
        time.sleep(min(max(delay, 0.0), self.max_backoff_s))

    @property
    def closed(self) -> bool:
        """True after :meth:`close`; the backend cache then builds a new client when asked."""
        return bool(self._client.is_closed)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse_retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
