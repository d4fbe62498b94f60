"""smolagents wrappers for the AwaRes tools (sketch: not run in CI, smolagents is not installed there).

    from smolagents import CodeAgent, InferenceClientModel
    from awares_tools import make_tools
    agent = CodeAgent(tools=make_tools(roots=["./images"]), model=InferenceClientModel())
    agent.run("Open invoice.png and read the total in the bottom-right corner.")

Every tool goes through ``ImageService``, so the allowed roots, URL policy and limits are the same as
in the MCP server and the LangChain tools.
"""

from __future__ import annotations

import io

from PIL import Image
from smolagents import Tool

from awares_tool.adapters.common import AdapterConfig, ImageService

_IMAGE = {"type": "string", "description": "An image id from view_image, or a path under an allowed folder."}


class ViewImageTool(Tool):
    name = "view_image"
    description = "Open an image; returns a low-resolution view. Its id is printed in the agent log."
    inputs = {"image": _IMAGE}
    output_type = "image"

    def __init__(self, service: ImageService) -> None:
        super().__init__()
        self.service = service

    def forward(self, image: str) -> Image.Image:
        out = self.service.view(image)
        print(f"image_id={out.result.image_id} size={out.result.image_size}")  # visible to a CodeAgent
        return Image.open(io.BytesIO(out.image.data))


class GetCropTool(Tool):
    name = "get_crop"
    description = "Return one high-resolution crop of a named region (0-3 quarters, 4 center, 5-8 halves, all)."
    inputs = {"image": _IMAGE, "region": {"type": "string", "description": "Region name, e.g. '3'."}}
    output_type = "image"

    def __init__(self, service: ImageService) -> None:
        super().__init__()
        self.service = service

    def forward(self, image: str, region: str) -> Image.Image:
        out = self.service.crops(image, [region])
        return Image.open(io.BytesIO(out.images[0].data))


class AskImageTool(Tool):
    name = "ask_image"
    description = "Answer a question about an image with a vision model that zooms in only where needed."
    inputs = {"image": _IMAGE, "question": {"type": "string", "description": "The question."}}
    output_type = "string"

    def __init__(self, service: ImageService) -> None:
        super().__init__()
        self.service = service

    def forward(self, image: str, question: str) -> str:
        res = self.service.ask(image, question)
        return f"{res.answer} (visual tokens {res.tokens_spent} of {res.full_tokens})"


def make_tools(roots: list[str], backend: str | None = None) -> list[Tool]:
    service = ImageService(AdapterConfig(roots=tuple(roots)), backend=backend)
    tools: list[Tool] = [ViewImageTool(service), GetCropTool(service)]
    return tools + [AskImageTool(service)] if backend else tools
