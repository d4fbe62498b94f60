"""Running a gateway: in the foreground (``awares serve``) or in a background thread (tests, benchmarks, notebooks).

Both use the HTTP settings of the MCP server (:func:`~awares_tool.adapters.http_guard.http_config`): a cap on open
connections (503 beyond it, from the server itself) and a deadline for request headers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from awares_tool.adapters.http_guard import http_config
from awares_tool.serve.app import GatewayApp

__all__ = ["GatewayServer", "max_connections", "run_gateway"]


def max_connections(app: GatewayApp) -> int:
    """Open connections allowed: every slot and queue place, with room for health checks and metrics scrapes."""
    a = app.gateway.admission
    return max(64, 2 * (a.concurrency + a.queue) + 16)


def run_gateway(app: GatewayApp, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted (Ctrl+C)."""
    import uvicorn

    uvicorn.Server(http_config(app, host=host, port=port, log_level=log_level,
                               max_connections=max_connections(app))).run()


class GatewayServer:
    """``app`` served by uvicorn in a daemon thread on ``host``; ``port=0`` (the default) picks a free port::

        with GatewayServer(build_app(GatewayConfig())) as srv:
            client = OpenAI(base_url=srv.url + "/v1", api_key="unused")
    """

    def __init__(self, app: GatewayApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.app = app
        self.host = host
        self._server = uvicorn.Server(http_config(app, host=host, port=port, log_level=log_level,
                                                  max_connections=max_connections(app)))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port`` (the OpenAI base URL is this plus ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "GatewayServer":
        self._thread = threading.Thread(target=self._server.run, name="awares-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> "GatewayServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
