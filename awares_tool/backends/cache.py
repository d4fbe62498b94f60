"""Backends built once per process, keyed by their normalised spec: a model loads once however often it is named.

``crop_on_demand(img, q, backend="transformers:PATH")`` in a loop, the web demo's backend menu, the MCP
server's ``ask_image`` and the CLIs all resolve spec strings through one :class:`BackendCache` (the
process-wide one behind :func:`awares_tool.backends.resolve_backend`), so they share one loaded model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["BackendCache", "is_closed"]

log = logging.getLogger(__name__)


def is_closed(backend: Any) -> bool:
    """Whether ``backend.close()`` has run (backends say so with a ``closed`` attribute)."""
    return bool(getattr(backend, "closed", False))


class BackendCache:
    """A thread-safe map from a spec's key to its loaded backend.

    Two threads asking for the same key wait for one load; different keys load side by side. A failed
    load caches nothing (the next call tries again), and a backend closed by its user is loaded anew.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Any] = {}
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The backend cached under ``key``, or ``load()``'s, cached."""
        with self._lock:
            found = self._live(key)
            if found is not None:
                return found
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._live(key)  # another thread may have loaded it while we waited
                if found is not None:
                    return found
            backend = load()
            with self._lock:
                self._entries[key] = backend
            return backend

    def contains(self, key: Hashable) -> bool:
        """Whether a live backend is cached under ``key`` (never loads)."""
        with self._lock:
            return self._live(key) is not None

    def clear(self, key: Hashable | None = None) -> int:
        """Close and forget the backend under ``key`` (every backend if None); returns how many were closed.

        Anyone still holding a closed backend gets an error from it; asking the cache again loads a new one.
        """
        with self._lock:
            if key is None:
                gone = list(self._entries.values())
                self._entries.clear()
            else:
                gone = [self._entries.pop(key)] if key in self._entries else []
        for backend in gone:
            close = getattr(backend, "close", None)
            if callable(close):
                close()
        if gone:
            log.info("released %d cached backend(s)", len(gone))
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return sum(not is_closed(b) for b in self._entries.values())

    def _live(self, key: Hashable) -> Any:
        backend = self._entries.get(key)
        if backend is not None and is_closed(backend):
            del self._entries[key]
            return None
        return backend
