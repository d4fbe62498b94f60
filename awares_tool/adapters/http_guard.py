"""What every HTTP server of the package puts in front of its app: who may call it, and for how long.

The MCP server (``awares-mcp --transport http``) and the gateway (``awares serve``) face the same callers: a
browser page that tries to reach a local server (DNS rebinding: the ``Origin`` is foreign), a client without the
token, and clients that open connections and never finish their headers (each would hold a slot forever). So:

* :class:`RequestGuard`, plain ASGI middleware: the bearer token (constant-time), an ``Origin`` allow-list (a
  request carrying any other Origin is refused; non-browser clients send none), an optional ``Host`` allow-list;
* :func:`run_http`: uvicorn with a connection cap (``limit_concurrency``: 503 beyond it) and a header-read
  timeout that closes a connection whose request headers are not complete in time (uvicorn 0.55 has none of its
  own: its keep-alive timer is cancelled by the first byte of a request);
* :func:`read_token`: the secret from an environment variable or a file, so it need not sit on a command line
  (visible to every user in ``ps``).
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["RequestGuard", "http_config", "run_http", "read_token", "LOOPBACK", "is_loopback"]

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    return host in LOOPBACK or host.startswith("127.")


def read_token(value: str | None, *, env: str, file: str | os.PathLike[str] | None = None) -> str | None:
    """The bearer token: ``file``'s first line, else the command line's ``value``, else ``$env``.

    Raises:
        ValueError: The file cannot be read or is empty.
    """
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read a token from {str(file)!r}: {e}") from e
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"the token file {str(file)!r} is empty")
        return token
    if value:
        logger.warning("a token given on the command line is visible to every user of this machine (ps); prefer "
                       "$%s or a token file", env)
        return value
    return os.environ.get(env) or None


class RequestGuard:
    """ASGI middleware checking the token, the ``Origin`` and the ``Host`` of every HTTP request.

    Args:
        app: The ASGI app behind it.
        token: Every request must carry ``Authorization: Bearer <token>`` (None: no token check).
        allowed_origins: Origins a browser page may call from (exact, or ``scheme://host:*`` for any port); a
            request with any other ``Origin`` header is refused (403). Requests without one (non-browser clients)
            pass.
        allowed_hosts: ``Host`` header values accepted (exact or ``host:*``); empty: any.
        open_paths: Paths served without the token (health checks).
    """

    def __init__(self, app: Any, *, token: str | None = None, allowed_origins: tuple[str, ...] = (),
                 allowed_hosts: tuple[str, ...] = (), open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode() if token else None
        self.allowed_origins = tuple(allowed_origins)
        self.allowed_hosts = tuple(allowed_hosts)
        self.open_paths = tuple(open_paths)

    @staticmethod
    def _allowed(value: str, allowed: tuple[str, ...]) -> bool:
        return any(value == a or (a.endswith(":*") and value.startswith(a[:-1])) for a in allowed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin and not self._allowed(origin, self.allowed_origins):
                logger.warning("refused a request from origin %r", origin)
                return await _reply(send, 403, "this origin may not call the server (see --allowed-origin)")
            if self.allowed_hosts and not self._allowed(host, self.allowed_hosts):
                return await _reply(send, 421, "unexpected Host header (see --allowed-host)")
            if self._expected is not None and scope.get("path") not in self.open_paths:
                got = headers.get(b"authorization", b"")
                if not hmac.compare_digest(got, self._expected):
                    return await _reply(send, 401, "missing or wrong bearer token",
                                        extra=[(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


async def _reply(send: Any, status: int, message: str, *, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    import json

    body = json.dumps({"error": {"message": message, "type": "access_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


def _header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection that has not finished a request's headers in ``seconds``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):  # type: ignore[misc, valid-type]
        def _arm(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_deadline)

        def _header_deadline(self) -> None:
            busy = self.cycle is not None and not self.cycle.response_complete
            if not busy and not self.transport.is_closing():  # no request in flight: headers never came
                logger.info("closing a connection that sent no complete request headers in %.0f s", seconds)
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutH11


def http_config(app: Any, *, host: str, port: int, log_level: str = "info", max_connections: int = 64,
                header_timeout_s: float = 10.0) -> Any:
    """uvicorn's ``Config`` for ``app``: at most ``max_connections`` at once, headers due within ``header_timeout_s``.

    For callers that run the server themselves (in a thread: the gateway's tests and benchmark); ``port=0`` binds
    a free port.
    """
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=max_connections,
                          http=_header_timeout_protocol(header_timeout_s), timeout_keep_alive=5)


def run_http(app: Any, *, host: str, port: int, log_level: str = "info", max_connections: int = 64,
             header_timeout_s: float = 10.0) -> None:
    """Serve ``app`` with uvicorn, at most ``max_connections`` at once, headers due within ``header_timeout_s``."""
    import uvicorn

    uvicorn.Server(http_config(app, host=host, port=port, log_level=log_level, max_connections=max_connections,
                               header_timeout_s=header_timeout_s)).run()
