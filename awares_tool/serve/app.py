"""The gateway's HTTP surface: OpenAI's chat-completions and models endpoints, health and metrics.

``build_app`` wraps the FastAPI routes in three layers of plain ASGI middleware, outermost first: the response
counter of ``/metrics``, the token/Origin guard shared with the MCP server (every path but ``/healthz`` needs
the bearer token when one is set), and the body cap (413). Streamed completions are Server-Sent Events in
OpenAI's chunk format; while the loop runs they carry an SSE comment every ``keepalive_s`` seconds, and a
failure after the stream began arrives as one ``data: {"error": ...}`` event (what OpenAI's SDKs raise from).
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from awares_tool.adapters.http_guard import RequestGuard
from awares_tool.errors import require_extra
from awares_tool.serve.admission import Job, QueueFull
from awares_tool.serve.config import GatewayConfig
from awares_tool.serve.errors import ApiError, api_error_for
from awares_tool.serve.gateway import Gateway
from awares_tool.serve.inbound import Question
from awares_tool.serve.middleware import BodyLimit, CountResponses
from awares_tool.serve.outbound import first_chunk, last_chunks
from awares_tool.serve.schema import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ModelInfo,
    ModelList,
    completion_id,
)

__all__ = ["GatewayApp", "build_app"]

OPEN_PATHS = ("/healthz",)
_DISCONNECT_POLL_S = 0.5  # how often a queued request checks that its client is still there


class GatewayApp:
    """The ASGI app of one gateway; ``gateway`` is its :class:`~awares_tool.serve.gateway.Gateway`."""

    def __init__(self, asgi: Any, gateway: Gateway) -> None:
        self.asgi = asgi
        self.gateway = gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.asgi(scope, receive, send)


def build_app(config: GatewayConfig, backend: Any = None) -> GatewayApp:
    """The gateway for ``backend`` (object or spec string; None: the embedded model) under ``config``.

    The backend is resolved (loaded) here, before the app serves anything.

    Raises:
        MissingExtraError: fastapi or prometheus-client is not installed (``pip install 'awares[serve]'``).
    """
    require_extra("fastapi", "serve")
    gateway = Gateway(config, backend)
    api = _routes(gateway)
    guarded = RequestGuard(BodyLimit(api, max_bytes=config.max_body_bytes), token=config.token,
                           allowed_origins=config.allowed_origins, open_paths=OPEN_PATHS)
    return GatewayApp(CountResponses(guarded, count=gateway.metrics.count_response), gateway)


def _routes(gw: Gateway) -> Any:
    # (no `from __future__ import annotations` in this module: FastAPI reads the handlers' annotations, and
    # these names exist only in this function)
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    api = FastAPI(title="awares gateway", summary="OpenAI-compatible chat completions answered by the AwaRes loop",
                  docs_url=None, redoc_url=None)

    def error_response(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body().model_dump(mode="json"), status_code=err.status, headers=err.headers)

    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = _param(first.get("loc", ()))
        return error_response(ApiError(400, f"{param or 'body'}: {first.get('msg')}", param=param))

    @api.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else None
        return error_response(ApiError(exc.status_code, str(exc.detail), code=kind, headers=dict(exc.headers or {})))

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return gw.health()

    @api.get("/metrics")
    async def metrics() -> Response:
        body, content_type = gw.metrics.exposition()
        return Response(body, media_type=content_type)

    @api.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelInfo(id=gw.config.model_name)])

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> ModelInfo:
        if model_id != gw.config.model_name:
            raise ApiError(404, f"no model {model_id!r} here; this gateway serves {gw.config.model_name!r}",
                           code="model_not_found", param="model")
        return ModelInfo(id=model_id)

    @api.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        t0 = time.perf_counter()
        question = gw.question(body)
        image = await gw.open(question)
        try:
            job = gw.submit(question, image)
        except QueueFull as e:
            raise ApiError(429, str(e), type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(e.retry_after_s)}) from e
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_events(gw, question, job, t0, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            while not job.task.done():
                await asyncio.wait({job.task}, timeout=_DISCONNECT_POLL_S)
                if not job.started and not job.task.done() and await request.is_disconnected():
                    gw.admission.abandon(job)  # its client left while it waited: free the queue place
                    return Response(status_code=499)  # nginx's "client closed request", for the metrics
            result = job.task.result()
        except asyncio.CancelledError:
            gw.admission.abandon(job)
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes an OpenAI error response
            raise api_error_for(e) from e
        return JSONResponse(gw.respond(question, job, result, t0).model_dump(mode="json"))

    return api


async def _events(gw: Gateway, question: Question, job: Job[Any], t0: float,
                  include_usage: bool) -> AsyncIterator[bytes]:
    cid, created = completion_id(), int(time.time())
    yield _sse(first_chunk(cid, created, gw.config.model_name), include_usage)
    try:
        while not job.task.done():
            done, _ = await asyncio.wait({job.task}, timeout=gw.config.keepalive_s)
            if not done:
                yield b": keep-alive\n\n"
        result = job.task.result()
    except asyncio.CancelledError:  # the client went away
        gw.admission.abandon(job)
        raise
    except Exception as e:  # noqa: BLE001 - the status line is sent: the error travels as an event
        err = api_error_for(e)
        yield b"data: " + err.body().model_dump_json().encode() + b"\n\n"
        return
    answer = gw.respond(question, job, result, t0).model_copy(update={"id": cid, "created": created})
    for chunk in last_chunks(answer, include_usage=include_usage):
        yield _sse(chunk, include_usage)
    yield b"data: [DONE]\n\n"


def _sse(chunk: ChatCompletionChunk, include_usage: bool) -> bytes:
    """One ``data:`` event in OpenAI's chunk shape: ``usage`` only when asked for (null until the last chunk),
    ``awares`` only on the chunk with the finish reason, and deltas without unset keys."""
    data = chunk.model_dump(mode="json")
    if not include_usage:
        data.pop("usage")
    if data["awares"] is None:
        data.pop("awares")
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _param(loc: Any) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``"messages[0].content"``."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or None
