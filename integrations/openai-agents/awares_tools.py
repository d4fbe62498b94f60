"""OpenAI Agents SDK wrappers for the AwaRes tools (sketch: not run in CI).

    from agents import Agent, Runner
    from awares_tools import make_tools
    agent = Agent(name="viewer", instructions="Call view_image, then get_crops for detail.",
                  tools=make_tools(roots=["./images"]))
    print(Runner.run_sync(agent, "What is the total on images/invoice.png?").final_output)

Images go back as ``ToolOutputImage`` data URIs (openai-agents >= 0.3); for text-only models use ``ask_image``.
"""

from __future__ import annotations

import base64

from agents import ToolOutputImage, ToolOutputText, function_tool

from awares_tool.adapters.common import AdapterConfig, ImageService
from awares_tool.errors import AwaresError


def make_tools(roots: list[str], backend: str | None = None) -> list:
    service = ImageService(AdapterConfig(roots=tuple(roots)), backend=backend)

    def images(encoded: list) -> list:
        out: list = []
        for img in encoded:
            out.append(ToolOutputText(text=img.caption))
            out.append(ToolOutputImage(image_url=f"data:{img.mime_type};base64,{base64.b64encode(img.data).decode()}"))
        return out

    @function_tool
    def view_image(image: str) -> list:
        """Open an image (a path under an allowed folder) and return its low-res view and image id."""
        try:
            out = service.view(image)
        except AwaresError as e:
            return [ToolOutputText(text=f"Error: {e}")]
        return images([out.image])

    @function_tool
    def get_crops(image: str, regions: list[str]) -> list:
        """High-resolution crops of named regions: 0-3 quarters (TL, TR, BL, BR), 4 center, 5-8 halves, all."""
        try:
            return images(service.crops(image, regions).images)
        except AwaresError as e:
            return [ToolOutputText(text=f"Error: {e}")]

    @function_tool
    def ask_image(image: str, question: str) -> str:
        """Answer a question about an image with a vision model that zooms in only where needed."""
        try:
            res = service.ask(image, question)
        except AwaresError as e:
            return f"Error: {e}"
        return f"{res.answer} (visual tokens {res.tokens_spent} of {res.full_tokens})"

    return [view_image, get_crops] + ([ask_image] if backend else [])
