"""The gateway's Prometheus metrics (``GET /metrics``, text exposition format).

Each gateway owns its registry (several gateways in one process, as in tests, do not share counters):

* ``awares_requests_total{path, status}``: every HTTP response, refused ones (401, 413, 429) included;
* ``awares_request_seconds``: latency of answered chat completions, queue time included;
* ``awares_queue_seconds``: time a completion waited for a loop slot;
* ``awares_rtr``: retained token ratio of each answer (visual tokens spent / the full image's);
* ``awares_visual_tokens_total{kind="spent"|"full"}``: visual tokens spent and what full images would have cost;
* ``awares_crop_rounds_total``: crop rounds performed (answers from the low-res view add none);
* ``awares_unanswered_total``: completions whose model gave no final answer;
* ``awares_queue_depth`` and ``awares_in_flight``: requests waiting for a slot and loops running, right now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from awares_tool.errors import require_extra

__all__ = ["GatewayMetrics", "KNOWN_PATHS"]

#: Paths reported by name; anything else is counted as "other" (a scanner must not grow the label set).
KNOWN_PATHS = ("/v1/chat/completions", "/v1/models", "/healthz", "/metrics")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_RTR_BUCKETS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.5, 2.5)


class GatewayMetrics:
    """Counters, histograms and gauges of one gateway.

    Args:
        queue_depth: Returns the number of requests waiting now.
        in_flight: Returns the number of loops running now.
    """

    def __init__(self, *, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        prom = require_extra("prometheus_client", "serve", package="prometheus-client")
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter("awares_requests", "HTTP responses by path and status code.",
                                     ["path", "status"], registry=r)
        self.latency = prom.Histogram("awares_request_seconds", "Latency of answered chat completions (queue "
                                      "included).", buckets=_LATENCY_BUCKETS, registry=r)
        self.queue = prom.Histogram("awares_queue_seconds", "Time a chat completion waited for a loop slot.",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.rtr = prom.Histogram("awares_rtr", "Retained token ratio of each answer (visual tokens spent / full "
                                  "image's).", buckets=_RTR_BUCKETS, registry=r)
        self.visual_tokens = prom.Counter("awares_visual_tokens", "Visual tokens spent, and what the full images "
                                          "would have cost.", ["kind"], registry=r)
        self.crop_rounds = prom.Counter("awares_crop_rounds", "Crop rounds performed.", registry=r)
        self.unanswered = prom.Counter("awares_unanswered", "Completions whose model gave no final answer.",
                                       registry=r)
        prom.Gauge("awares_queue_depth", "Requests waiting for a loop slot.", registry=r).set_function(queue_depth)
        prom.Gauge("awares_in_flight", "Crop loops running.", registry=r).set_function(in_flight)

    def count_response(self, path: str, status: int) -> None:
        self.requests.labels(path=path if path in KNOWN_PATHS else "other", status=str(status)).inc()

    def observe_answer(self, report: Any, *, seconds: float) -> None:
        """Record one answered completion (``report``: its :class:`~awares_tool.serve.schema.AwaresReport`)."""
        self.latency.observe(seconds)
        self.queue.observe(report.queue_s)
        if report.rtr is not None:
            self.rtr.observe(report.rtr)
        vt = report.visual_tokens
        if vt.spent is not None and vt.full is not None:
            self.visual_tokens.labels(kind="spent").inc(vt.spent)
            self.visual_tokens.labels(kind="full").inc(vt.full)
        self.crop_rounds.inc(len(report.rounds))
        if not report.answered:
            self.unanswered.inc()

    def exposition(self) -> tuple[bytes, str]:
        """``(body, content_type)`` of ``GET /metrics``."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
