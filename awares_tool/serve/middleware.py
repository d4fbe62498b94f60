"""ASGI middleware of the gateway: the request-body cap (413) and the per-response counter of ``/metrics``.

Both sit outside the web framework, so they also see what it never handles: a body too large to parse, and the
401/403 answers of the token guard.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["BodyLimit", "CountResponses"]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, in OpenAI's error JSON, before the app reads them.

    A declared ``Content-Length`` over the cap is refused without reading; a chunked body is read up to the cap
    and refused as soon as it passes it. A body within the cap is handed to the app unchanged.
    """

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send, None)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would report it

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, declared: int | None) -> None:
        size = f"{declared:,} bytes" if declared is not None else "more than that"
        mib = self.max_bytes / 2**20
        body = json.dumps({"error": {
            "message": f"the request body is {size}, over this gateway's limit of {self.max_bytes:,} bytes "
                       f"({mib:.0f} MiB); send a smaller image (or start the gateway with a larger --max-body-mb)",
            "type": "invalid_request_error", "param": None, "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class CountResponses:
    """Call ``count(path, status)`` for every HTTP response the wrapped app starts."""

    def __init__(self, app: Any, *, count: Callable[[str, int], None]) -> None:
        self.app = app
        self.count = count

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.count(scope.get("path", ""), int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)
