"""smolagents tools for AwaRes: ``view_image``, ``get_crops`` and ``ask_image`` over one ``ImageService``.

A multimodal agent looks at the cheap low-res view from ``view_image`` and calls ``get_crops`` for
the regions it cannot read. smolagents does not put images a tool returns into the model's next
input (a ``ToolCallingAgent`` stores an ``AgentImage`` in ``agent.state``; a ``CodeAgent`` only gets
it as a Python object), so the tools return text (image id, boxes, token costs) and queue the images
in an :class:`ImageInbox`; registering the inbox as a step callback attaches them to the step's
``observations_images``, which smolagents sends to the model as a user turn of images. This is the
mechanism smolagents' own vision browser example uses for its screenshots.

    from smolagents import ToolCallingAgent, InferenceClientModel
    from awares_tools import AwaresSmolTools

    kit = AwaresSmolTools(roots=["./images"])
    agent = ToolCallingAgent(tools=kit.tools, model=InferenceClientModel(), step_callbacks=[kit.inbox])
    agent.run("Open invoice.png and read the total in the bottom-right corner.")

A text-only agent uses ``ask_image`` instead (offered when a backend is given), which runs the whole
AwaRes loop and returns the answer with its visual-token cost. Every tool is a thin conversion of
:class:`~awares_tool.adapters.common.ImageService`, so allowed roots, URL policy and limits are the
same as in the MCP server and the LangChain tools. A failing call raises the ``AwaresError`` whose
message names the problem and the fix; smolagents turns it into an error observation for the model.

Tested against smolagents 1.26 (``tests/test_integrations.py``).
"""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel
from smolagents import Tool

from awares_tool.adapters.common import (
    AdapterConfig,
    AskImageInput,
    EncodedImage,
    GetCropsInput,
    ImageService,
    ViewImageInput,
)

__all__ = ["AwaresSmolTools", "ImageInbox", "ViewImageTool", "GetCropsTool", "AskImageTool"]

logger = logging.getLogger(__name__)


def _inputs(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """smolagents ``inputs`` from the shared pydantic argument model (one schema for every adapter)."""
    props = model.model_json_schema()["properties"]
    keep = ("type", "description", "items")
    return {name: {k: v for k, v in p.items() if k in keep} for name, p in props.items()}


def _decode(img: EncodedImage) -> Image.Image:
    out = Image.open(io.BytesIO(img.data))
    out.load()
    return out


class ImageInbox:
    """Images the tools produced, waiting to be shown to the model in its next turn.

    Pass the inbox itself as a smolagents step callback: after each action step it moves the queued
    images into ``memory_step.observations_images``. It keeps at most ``max_images`` (oldest dropped,
    with a warning), so an agent that never registers it cannot grow memory without bound.
    """

    def __init__(self, max_images: int = 16) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.max_images = max_images
        self._images: list[Image.Image] = []
        self._lock = threading.Lock()

    def put(self, images: list[Image.Image]) -> None:
        with self._lock:
            self._images.extend(images)
            dropped = len(self._images) - self.max_images
            if dropped > 0:
                logger.warning("dropping %d queued image(s): register the ImageInbox as a step callback",
                               dropped)
                del self._images[:dropped]

    def drain(self) -> list[Image.Image]:
        """Take every queued image (the queue is left empty)."""
        with self._lock:
            images, self._images = self._images, []
        return images

    def __len__(self) -> int:
        return len(self._images)

    def __call__(self, memory_step: Any, agent: Any = None) -> None:
        """Step callback: attach the queued images to the step just taken."""
        images = self.drain()
        if images and hasattr(memory_step, "observations_images"):
            memory_step.observations_images = [*(memory_step.observations_images or []), *images]


class ViewImageTool(Tool):
    """``view_image(image)``: the low-res view (queued for the model) and the image id (returned)."""

    name = "view_image"
    inputs = _inputs(ViewImageInput)
    output_type = "string"

    def __init__(self, service: ImageService, inbox: ImageInbox) -> None:
        self.description = service.describe("view_image")
        super().__init__()
        self.service, self.inbox = service, inbox

    def forward(self, image: str) -> str:
        out = self.service.view(image)
        self.inbox.put([_decode(out.image)])
        r = out.result
        return (f"{out.image.caption} image_id={r.image_id}; regions for get_crops: {', '.join(r.regions)}; "
                f"view tokens {r.view_tokens} of {r.full_tokens} at full resolution. The view is attached to "
                "your next input.")


class GetCropsTool(Tool):
    """``get_crops(image, regions)``: high-res crops (queued for the model) and their boxes and costs."""

    name = "get_crops"
    inputs = _inputs(GetCropsInput)
    output_type = "string"

    def __init__(self, service: ImageService, inbox: ImageInbox) -> None:
        self.description = service.describe("get_crops")
        super().__init__()
        self.service, self.inbox = service, inbox

    def forward(self, regions: list[str], image: str) -> str:
        out = self.service.crops(image, regions)
        self.inbox.put([_decode(img) for img in out.images])
        captions = " ".join(img.caption for img in out.images)
        return (f"{captions} Total {out.result.tokens} visual tokens. The crops are attached to your next "
                "input.")


class AskImageTool(Tool):
    """``ask_image(image, question)``: the whole AwaRes loop; returns the answer and its cost."""

    name = "ask_image"
    inputs = _inputs(AskImageInput)
    output_type = "string"

    def __init__(self, service: ImageService) -> None:
        self.description = service.describe("ask_image")
        super().__init__()
        self.service = service

    def forward(self, image: str, question: str) -> str:
        res = self.service.ask(image, question)
        cost = {"regions": res.regions, "tokens_spent": res.tokens_spent, "full_tokens": res.full_tokens,
                "rtr": None if res.rtr is None else round(res.rtr, 4)}
        status = "" if res.answered else " [the model did not give a final answer]"
        return f"{res.answer}{status}\n(cost: {json.dumps(cost)})"


class AwaresSmolTools:
    """The AwaRes tools for one set of allowed folders, plus the inbox that shows their images.

    Args:
        roots: Folders whose files the tools may open; nothing outside them is readable.
        backend: Backend object or spec string for ``ask_image``; the tool is offered only when set
            (``"default"`` selects the embedded model), since a multimodal agent looks itself.
        config: Limits and output settings; its ``roots`` are used when ``roots`` is empty.
        service: An existing service to share (then ``roots``/``config``/``backend`` are ignored).
        ask_image: Offer ``ask_image``; by default only when ``backend`` is set.
        max_queued_images: Bound of the inbox.
    """

    def __init__(self, roots: list[str | Path] | None = None, *, backend: Any = None,
                 config: AdapterConfig | None = None, service: ImageService | None = None,
                 ask_image: bool | None = None, max_queued_images: int = 16) -> None:
        if service is None:
            config = config or AdapterConfig()
            if roots:
                config = config.model_copy(update={"roots": tuple(Path(r) for r in roots)})
            service = ImageService(config, backend=backend)
        self.service = service
        self.inbox = ImageInbox(max_queued_images)
        self.tools: list[Tool] = [ViewImageTool(service, self.inbox), GetCropsTool(service, self.inbox)]
        if ask_image if ask_image is not None else backend is not None:
            self.tools.append(AskImageTool(service))
