"""Failures as OpenAI error responses: which exception becomes which HTTP status, in one table.

OpenAI clients branch on the status code (the official SDK raises ``BadRequestError`` for 400,
``AuthenticationError`` for 401, ``RateLimitError`` for 429 and retries 429 and 5xx by itself), so the mapping is
the gateway's contract:

======  ==========================================================================================
400     the request or its image cannot be used: schema, no image or several, a URL while URLs are off, an
        image that does not decode or is over the pixel limit, an option the gateway does not support
401     missing or wrong bearer token (answered by :class:`~awares_tool.adapters.http_guard.RequestGuard`)
404     unknown path
413     request body over ``--max-body-mb``
429     every loop slot busy and the queue full; ``Retry-After`` says when to come back
502     the model backend failed (an upstream server down or answering garbage, a local model that raised)
504     the model backend did not answer in time
500     anything else (logged with its traceback; the client gets no internals)
======  ==========================================================================================

A model that answers nothing (it keeps requesting crops after being told to answer) is not an error: the
completion comes back with empty ``content``, ``finish_reason: "length"`` and ``awares.answered: false``.
"""

from __future__ import annotations

import logging

from awares_tool.errors import (
    AwaresError,
    BackendError,
    BackendTimeoutError,
    ImageError,
    ImageSourceError,
    ImageTooLargeError,
)
from awares_tool.serve.schema import ErrorBody, ErrorResponse

__all__ = ["ApiError", "api_error_for"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client: status, OpenAI error type and code, and extra headers."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code))


def api_error_for(exc: BaseException) -> ApiError:
    """The client-facing error for an exception raised while answering (see the module's table)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        code = ("image_too_large" if isinstance(exc, ImageTooLargeError) else
                "image_source" if isinstance(exc, ImageSourceError) else "invalid_image")
        return ApiError(400, f"the image cannot be used: {exc}", code=code, param="messages")
    if isinstance(exc, BackendTimeoutError):
        return ApiError(504, f"the model backend did not answer in time: {exc}", type="server_error",
                        code="backend_timeout")
    if isinstance(exc, BackendError):
        return ApiError(502, f"the model backend failed: {exc}", type="server_error", code="backend_error")
    if isinstance(exc, AwaresError):
        log.error("request failed: %s", exc, exc_info=exc)
        return ApiError(500, f"the request failed: {exc}", type="server_error", code="internal_error")
    log.error("unexpected error while answering", exc_info=exc)
    return ApiError(500, "internal server error (see the gateway's log)", type="server_error", code="internal_error")
