"""A backend that replies from a script: for tests, docs and replaying fixed crop decisions.

It is a real :class:`~awares_tool.backends.base.VLMBackend` (the loop cannot tell it from a model), which
makes it the right tool to exercise the loop's handling of malformed requests, endless requests and
timeouts without a model, and to replay recorded decisions in benchmarks.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Sequence

from ..errors import BackendError
from .base import Generation, GenerationSettings, Message, ModelCard, Timings, Usage

__all__ = ["ScriptedBackend", "ReplayBackend"]

Reply = str | Exception
ReplyFn = Callable[[Sequence[Message]], Reply]


class ScriptedBackend:
    """Replies with the next scripted text (or raises the next scripted exception).

    Args:
        replies: A list of replies used in order (an ``Exception`` instance is raised instead of replied),
            or a function ``messages -> reply`` called on every turn.
        repeat_last: When the list runs out, keep repeating its last item (a model that never stops asking);
            otherwise running out raises :class:`BackendError`.
        token_family: Family used to count visual tokens of the images it is sent (see :mod:`awares_tool.tokens`).
        delay_s: Sleep this long per call (to exercise timeouts).
        model_card: Optional model card to present, like a trained model folder would.
    """

    def __init__(
        self,
        replies: Iterable[Reply] | ReplyFn,
        *,
        repeat_last: bool = False,
        token_family: str | None = "qwen2.5-vl",
        delay_s: float = 0.0,
        model_card: ModelCard | None = None,
        name: str = "scripted",
    ) -> None:
        self._fn: ReplyFn | None = replies if callable(replies) else None
        self._replies: list[Reply] = [] if callable(replies) else list(replies)
        self._next = 0
        self._lock = threading.Lock()
        self.repeat_last = repeat_last
        self.token_family = token_family
        self.delay_s = delay_s
        self.model_card = model_card
        self.name = name
        self.calls: list[list[Message]] = []

    def _take(self, messages: Sequence[Message]) -> Reply:
        if self._fn is not None:
            return self._fn(messages)
        with self._lock:
            if self._next < len(self._replies):
                reply = self._replies[self._next]
                self._next += 1
                return reply
            if self.repeat_last and self._replies:
                return self._replies[-1]
        raise BackendError(f"ScriptedBackend ran out of replies after {len(self._replies)} calls")

    def generate(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        *,
        state: Any = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        t0 = time.perf_counter()
        self.calls.append(list(messages))
        if self.delay_s:
            time.sleep(self.delay_s)
        reply = self._take(messages)
        if isinstance(reply, BaseException):
            raise reply
        image_tokens = self._count_images(messages)
        words = reply.split()
        truncated = len(words) > settings.max_new_tokens
        text = " ".join(words[: settings.max_new_tokens]) if truncated else reply
        usage = Usage(
            prompt_tokens=sum(image_tokens) + sum(len(m.text_content.split()) for m in messages),
            completion_tokens=min(len(words), settings.max_new_tokens),
            image_tokens=image_tokens,
        )
        usage.prefilled_tokens = usage.prompt_tokens
        return Generation(
            text=text,
            finish_reason="length" if truncated else "stop",
            usage=usage,
            timings=Timings(prefill_s=time.perf_counter() - t0),
        )

    def _count_images(self, messages: Sequence[Message]) -> list[int]:
        if not self.token_family:
            return []
        from awares_tool.tokens import count_visual_tokens

        return [count_visual_tokens(img, self.token_family) for m in messages for img in m.images]

    def close(self) -> None:  # nothing to release
        pass


class ReplayBackend:
    """Run a real model but replace its replies with scripted ones: fixed crop decisions, real cost.

    Benchmarks use it to time a backend on a given decision (no crop, one crop, ...) independently of what
    a randomly initialised model would say: every call really prefills and decodes with ``inner``, then
    the reply text is swapped for the next scripted one. The inner backend's ``state`` is passed through, so
    KV-cache reuse works as in real use (the shared prefix is the prompt, which does not depend on the reply).

    Args:
        inner: The real backend.
        replies: Replies used in order, one per call.
    """

    def __init__(self, inner: Any, replies: Sequence[str]) -> None:
        self.inner = inner
        self.replies = list(replies)
        self.name = f"replay:{getattr(inner, 'name', type(inner).__name__)}"
        self.token_family = getattr(inner, "token_family", None)
        self.model_card = getattr(inner, "model_card", None)
        self.max_pixels = getattr(inner, "max_pixels", None)  # the model's pixel cap shapes the first view
        self.supports_tool_images = getattr(inner, "supports_tool_images", False)  # where the crops go
        self._next = 0

    def generate(self, messages, settings, *, state=None, tools=None) -> Generation:
        gen = self.inner.generate(messages, settings, state=state, tools=tools)
        if self._next >= len(self.replies):
            raise BackendError(f"ReplayBackend ran out of replies after {len(self.replies)} calls")
        reply = self.replies[self._next]
        self._next += 1
        return gen.model_copy(update={"text": reply, "tool_calls": [], "state": gen.state})

    def count_image_tokens(self, width: int, height: int) -> int:
        counter = getattr(self.inner, "count_image_tokens", None)
        if callable(counter):
            return int(counter(width, height))
        if not self.token_family:
            raise BackendError(f"{self.name} cannot count visual tokens (no token family)")
        from awares_tool.tokens import get_family

        return get_family(self.token_family).count(width, height)

    def close(self) -> None:  # the inner backend belongs to the caller
        pass
