"""Real servers for tests and benchmarks: a child process on 127.0.0.1, ready when a URL answers, always stopped.

The house rule is that a real server (llama.cpp's, the MCP server, the gateway) is started by the test and
stopped by it. Doing that well has a few traps written once here: the child's stderr goes to a file (a pipe
that nobody reads fills up and blocks a chatty server such as llama.cpp's), a child that dies while starting
is reported with the end of its log instead of a wait until the deadline, and a child that ignores SIGTERM is
killed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["ServerStartError", "free_port", "llama_server_cmd", "running_server"]


class ServerStartError(RuntimeError):
    """The child exited or did not answer its ready URL in time; the message ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the child binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_server_cmd(model: str | os.PathLike, mmproj: str | os.PathLike, port: int, *, alias: str,
                     chat_format: str = "mtmd", n_ctx: int = 4096, threads: int | None = None) -> list[str]:
    """The command line of llama-cpp-python's OpenAI-compatible server for a GGUF VLM on 127.0.0.1:``port``."""
    import sys

    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--clip_model_path", str(mmproj),
           "--chat_format", chat_format, "--n_ctx", str(n_ctx), "--host", "127.0.0.1", "--port", str(port),
           "--model_alias", alias]
    return cmd + (["--n_threads", str(threads)] if threads else [])


@contextmanager
def running_server(cmd: Sequence[str], ready_url: str, what: str, *, timeout_s: float = 120.0,
                   env: dict[str, str] | None = None, stop_timeout_s: float = 15.0) -> Iterator[subprocess.Popen]:
    """Start ``cmd``, wait until ``GET ready_url`` answers 200, yield the process, then stop it.

    Args:
        cmd: The command line of the server.
        ready_url: A URL that answers 200 once the server serves (e.g. ``.../v1/models``, ``/healthz``).
        what: How errors name the server.
        timeout_s: How long starting may take.
        env: Variables added to this process's environment for the child.
        stop_timeout_s: How long the child may take to exit after SIGTERM before it is killed.

    Raises:
        ServerStartError: The child exited while starting or did not answer within ``timeout_s``.
    """
    import httpx

    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=log, text=True,
                                env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise ServerStartError(f"{what} exited with {proc.returncode} while starting:\n{_tail(log)}")
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{what} did not answer {ready_url} within {timeout_s:g} s:\n{_tail(log)}")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log, n: int = 3000) -> str:  # noqa: ANN001 - a text file object
    log.flush()
    log.seek(0)
    return log.read()[-n:]
