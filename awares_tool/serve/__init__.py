"""``awares serve``: an OpenAI-compatible gateway that answers chat completions with the AwaRes crop loop.

Applications that already speak the OpenAI chat API send full-resolution images as they always do; the gateway
shows the model a low-res view, fetches high-res crops where the model asks, and answers with a standard
``chat.completion`` whose ``usage`` counts the visual tokens really spent, plus an ``awares`` object (regions, RTR,
tokens saved, timings). Needs the ``serve`` extra (fastapi, uvicorn, prometheus-client).

Modules, each importing only those above it:

* :mod:`.schema`: the OpenAI wire format (requests, completions, chunks, errors) and the ``awares`` report;
* :mod:`.errors`: which failure becomes which HTTP status;
* :mod:`.inbound`: a request as one crop-loop question (image, question text, loop options);
* :mod:`.outbound`: a loop result as a completion or a stream of chunks, with ``usage``;
* :mod:`.admission`: loops in flight, the bounded queue, ``Retry-After``;
* :mod:`.metrics`: the Prometheus metrics;
* :mod:`.config`: :class:`GatewayConfig`, the settings of one gateway;
* :mod:`.middleware`: the body cap (413) and the response counter;
* :mod:`.gateway`: :class:`Gateway`, a request's work apart from HTTP;
* :mod:`.app`: :func:`build_app`, the HTTP routes;
* :mod:`.server`: running it (``awares serve``, or :class:`GatewayServer` in a thread).
"""

from awares_tool.serve.config import GatewayConfig

__all__ = ["GatewayConfig", "build_app", "GatewayServer"]


def __getattr__(name: str):  # the web stack is imported only when an app is built
    if name == "build_app":
        from awares_tool.serve.app import build_app

        return build_app
    if name == "GatewayServer":
        from awares_tool.serve.server import GatewayServer

        return GatewayServer
    raise AttributeError(name)
