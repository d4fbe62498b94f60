"""The gateway's work for one request, apart from HTTP: read it, open its image, queue its crop loop, report.

:class:`Gateway` owns the backend (resolved once, at start), the admission queue and the metrics; the web app
(:mod:`awares_tool.serve.app`) only routes requests to it and writes its answers out. Nothing here keeps state
between requests beyond counters, so any number of gateways can sit behind a load balancer.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from awares_tool.backends import resolve_backend
from awares_tool.episode import CropResult, crop_on_demand
from awares_tool.errors import ImageError
from awares_tool.images import SourceImage, open_image
from awares_tool.serve.admission import Admission, Job
from awares_tool.serve.config import GatewayConfig
from awares_tool.serve.errors import ApiError, api_error_for
from awares_tool.serve.inbound import Question, read_request
from awares_tool.serve.metrics import GatewayMetrics
from awares_tool.serve.outbound import completion
from awares_tool.serve.schema import ChatCompletion, ChatCompletionRequest

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """One served model behind the OpenAI API.

    Args:
        config: Limits and loop defaults.
        backend: A backend object or spec string (None: the embedded model), resolved here once, so the first
            request does not pay for loading the model.
    """

    def __init__(self, config: GatewayConfig, backend: Any = None) -> None:
        self.config = config
        self.backend = resolve_backend(backend)
        self.admission = Admission(config.concurrency, config.queue)
        self.metrics = GatewayMetrics(queue_depth=lambda: self.admission.waiting,
                                      in_flight=lambda: self.admission.running)

    @property
    def backend_name(self) -> str:
        return str(getattr(self.backend, "name", type(self.backend).__name__))

    def question(self, req: ChatCompletionRequest) -> Question:
        """The crop-loop question of a request. Raises :class:`ApiError` (400)."""
        return read_request(req, self.config.crop, max_tokens_limit=self.config.max_tokens_limit)

    async def open(self, question: Question) -> SourceImage:
        """The request's image, its header read (a URL downloaded) in a worker thread.

        Only ``data:`` URIs, and http(s) URLs where allowed, are accepted: a path or ``file:`` URL would let a
        client read the gateway's disk.

        Raises:
            ApiError: 400 for any other kind of string, a refused URL, or an image that cannot be used.
        """
        import anyio

        url = question.image.strip()
        scheme = url.partition(":")[0].lower() if ":" in url[:12] else ""
        if scheme in ("http", "https") and not self.config.image_limits.allow_urls:
            raise ApiError(400, "image URLs are off on this gateway: send the image as a data:image/...;base64 URI "
                                "(or start the gateway with --allow-urls)", code="image_url_not_allowed",
                           param="messages")
        if scheme not in ("data", "http", "https"):
            shown = url[:60] + ("..." if len(url) > 60 else "")
            raise ApiError(400, f"image_url.url must be a data:image/...;base64 URI or an http(s) URL, got {shown!r}",
                           code="invalid_image_url", param="messages")
        try:
            return await anyio.to_thread.run_sync(partial(open_image, url, limits=self.config.image_limits))
        except ImageError as e:
            raise api_error_for(e) from e

    def submit(self, question: Question, image: SourceImage) -> Job[CropResult]:
        """Queue the crop loop. Raises :class:`~awares_tool.serve.admission.QueueFull`."""
        return self.admission.submit(partial(crop_on_demand, image, question.text, backend=self.backend,
                                             options=question.options))

    def respond(self, question: Question, job: Job[CropResult], result: CropResult, t0: float) -> ChatCompletion:
        """The completion of a finished loop, recorded in the metrics."""
        done = completion(result, question, model=self.config.model_name, queue_s=job.queue_s, loop_s=job.run_s)
        self.metrics.observe_answer(done.awares, seconds=time.perf_counter() - t0)
        if not result.answered:
            log.info("the model gave no final answer (regions %s)", result.regions)
        return done

    def health(self) -> dict[str, Any]:
        a = self.admission
        return {"status": "ok", "model": self.config.model_name, "backend": self.backend_name,
                "in_flight": a.running, "queued": a.waiting, "concurrency": a.concurrency, "queue": a.queue}
