"""LangChain tools for AwaRes (extra ``langchain``): ``view_image``, ``get_crops``, ``ask_image``.

A multimodal agent looks at the cheap low-res view from ``view_image`` and calls ``get_crops`` for
the regions it needs; the crops come back as standard image content blocks in the ``ToolMessage``
(``response_format="content_and_artifact"``), and the boxes, sizes and token costs travel as the
artifact, which the application sees and the model does not. A text-only agent calls ``ask_image``
instead, which runs the whole AwaRes loop with a vision backend and returns the answer and its cost.

A failing call (a path outside the roots, an unknown region, bad arguments) becomes an error
``ToolMessage`` with the reason, so the model can correct itself and the agent keeps running.

Example::

    from awares_tool.adapters.langchain import AwaresToolkit
    tools = AwaresToolkit(roots=["./images"]).get_tools()
    agent = create_agent(ChatOpenAI(model="gpt-4o"), tools=tools)

Note: providers differ in whether they accept images inside tool results (OpenAI-style APIs do;
llama.cpp's chat handlers read images from user turns only).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from awares_tool.adapters.common import (
    AdapterConfig,
    AskImageInput,
    EncodedImage,
    GetCropsInput,
    ImageService,
    ViewImageInput,
)
from awares_tool.errors import AwaresError, require_extra
from awares_tool.images.store import ImageStore

require_extra("langchain_core", "langchain", package="langchain-core")

import base64  # noqa: E402

from langchain_core.messages.content import create_image_block, create_text_block  # noqa: E402
from langchain_core.tools import BaseTool, BaseToolkit, StructuredTool, ToolException  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["AwaresToolkit", "make_view_image_tool", "make_get_crops_tool", "make_ask_image_tool",
           "move_tool_images_to_user_turn", "ToolImagesToUserTurn"]

Content = list[dict[str, Any]]


def _blocks(images: list[EncodedImage]) -> Content:
    blocks: Content = []
    for img in images:
        blocks.append(create_text_block(img.caption))
        blocks.append(create_image_block(base64=base64.b64encode(img.data).decode("ascii"), mime_type=img.mime_type))
    return blocks


def _validation_message(name: str) -> Callable[[ValidationError], str]:
    def handle(err: ValidationError) -> str:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
        return f"Error: invalid arguments for {name}: {problems}. Fix the arguments and call {name} again."

    return handle


def _tool(name: str, description: str, schema: type, fn: Callable[..., tuple[Any, Any]]) -> StructuredTool:
    """A content-and-artifact tool whose AwaresErrors reach the model as error ToolMessages."""

    def call(**kwargs: Any) -> tuple[Any, Any]:
        try:
            return fn(**kwargs)
        except AwaresError as e:
            raise ToolException(f"Error: {e}") from e
        except Exception as e:  # an unforeseen failure still reaches the model as an error, and the agent goes on
            logger.exception("%s failed unexpectedly", name)
            raise ToolException(f"Error: {name} failed ({type(e).__name__}: {e})") from e

    async def acall(**kwargs: Any) -> tuple[Any, Any]:
        return await asyncio.to_thread(call, **kwargs)  # image decoding and models block

    return StructuredTool.from_function(
        func=call, coroutine=acall, name=name, description=description, args_schema=schema,
        response_format="content_and_artifact", handle_tool_error=True,
        handle_validation_error=_validation_message(name),
    )


def make_view_image_tool(service: ImageService) -> StructuredTool:
    """``view_image(image)`` -> the low-res view and image id; artifact: the ``ViewResult`` as a dict."""

    def view_image(image: str) -> tuple[Content, dict[str, Any]]:
        out = service.view(image)
        text = (f"{out.image.caption} Use image_id={out.result.image_id} with get_crops; regions: "
                f"{', '.join(out.result.regions)}.")
        return [create_text_block(text), *_blocks([out.image])[1:]], out.result.model_dump(mode="json")

    return _tool("view_image", service.describe("view_image"), ViewImageInput, view_image)


def make_get_crops_tool(service: ImageService) -> StructuredTool:
    """``get_crops(image, regions)`` -> one caption and image block per crop; artifact: ``CropsResult``."""

    def get_crops(image: str, regions: list[str]) -> tuple[Content, dict[str, Any]]:
        out = service.crops(image, regions)
        return _blocks(out.images), out.result.model_dump(mode="json")

    return _tool("get_crops", service.describe("get_crops"), GetCropsInput, get_crops)


def make_ask_image_tool(service: ImageService) -> StructuredTool:
    """``ask_image(image, question)`` -> the answer with its cost; artifact: ``AskResult``."""

    def ask_image(image: str, question: str) -> tuple[str, dict[str, Any]]:
        res = service.ask(image, question)
        cost = f"visual tokens {res.tokens_spent} of {res.full_tokens} at full resolution" if res.tokens_spent else ""
        if res.rtr is not None:
            cost += f" (RTR {res.rtr:.2f})"
        fetched = ", ".join(res.regions) or "none"
        status = "" if res.answered else " [the model did not give a final answer]"
        return f"{res.answer}{status}\n(cost: {cost or 'unknown'}; high-res regions fetched: {fetched})", \
            res.model_dump(mode="json")

    return _tool("ask_image", service.describe("ask_image"), AskImageInput, ask_image)


class AwaresToolkit(BaseToolkit):
    """The AwaRes tools over one image store and set of allowed folders.

    Args:
        store: Image store shared with the application (put images in it and hand the model their
            ids); a new bounded store when omitted.
        roots: Folders whose files the tools may open; nothing outside them is readable.
        backend: Backend object or spec string for ``ask_image``. ``ask_image`` is offered only when
            this is set (``"default"`` selects the embedded model), since a multimodal agent usually
            looks at the crops itself.
        config: Limits and output settings; its ``roots`` are used when ``roots`` is empty.
        image_delivery: How the model gets the images: ``inline`` (inside the ToolMessage, for providers that
            accept images in tool results), ``follow_up`` (the same tools, plus :meth:`middleware` to pass to
            ``create_agent``: it moves every tool image into a user turn after the tool results, for providers and
            servers that drop them, llama.cpp's among them) or ``text`` (no image tools: ``ask_image`` answers with
            the configured vision backend, for text-only agents).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: ImageStore | None = None
    roots: list[Path] = Field(default_factory=list)
    backend: Any = None
    config: AdapterConfig | None = None
    image_delivery: Literal["inline", "follow_up", "text"] = "inline"
    _service: ImageService = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        config = self.config or AdapterConfig()
        if self.roots:
            config = config.model_copy(update={"roots": tuple(self.roots)})
        self._service = ImageService(config, store=self.store, backend=self.backend)
        self.store = self._service.store

    @property
    def service(self) -> ImageService:
        """The shared :class:`ImageService` (roots, limits, store)."""
        return self._service

    def get_tools(self) -> list[BaseTool]:
        """``view_image`` and ``get_crops``, plus ``ask_image`` when a backend is configured (only ``ask_image`` in
        ``text`` delivery).

        Raises:
            ValueError: ``text`` delivery without a backend (no tool could answer).
        """
        if self.image_delivery == "text":
            if self.backend is None:
                raise ValueError("image_delivery='text' offers only ask_image, which needs backend=... (a vision "
                                 "model that answers); pass one, or use 'inline' / 'follow_up'")
            return [make_ask_image_tool(self._service)]
        tools: list[BaseTool] = [make_view_image_tool(self._service), make_get_crops_tool(self._service)]
        if self.backend is not None:
            tools.append(make_ask_image_tool(self._service))
        return tools

    def middleware(self) -> list[Any]:
        """What ``create_agent(middleware=...)`` needs for this delivery: the image mover for ``follow_up``."""
        return [ToolImagesToUserTurn()] if self.image_delivery == "follow_up" else []


def move_tool_images_to_user_turn(messages: list[Any]) -> list[Any]:
    """The conversation with every image of a tool result moved into a user turn after that run of tool results.

    Many providers and servers read images from user turns only (llama.cpp's server refuses them in tool
    messages; others drop them silently). The tool message keeps its text and a note where each image went.
    """
    from langchain_core.messages import HumanMessage, ToolMessage

    out: list[Any] = []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if pending:
            out.append(HumanMessage(content=[create_text_block("The images returned by the tools above:"),
                                             *pending]))
            pending.clear()

    for msg in messages:
        if isinstance(msg, ToolMessage) and isinstance(msg.content, list):
            images = [b for b in msg.content if isinstance(b, dict) and b.get("type") in ("image", "image_url")]
            if images:
                kept = [b for b in msg.content if b not in images]
                kept.append(create_text_block(f"({len(images)} image(s) follow in the next user message)"))
                msg = msg.model_copy(update={"content": kept})
                pending.extend(images)
            out.append(msg)
            continue
        flush()
        out.append(msg)
    flush()
    return out


def _middleware_base() -> type:
    from langchain.agents.middleware import AgentMiddleware

    return AgentMiddleware


class ToolImagesToUserTurn(_middleware_base()):  # type: ignore[misc]
    """LangChain agent middleware: before each model call, tool images move into a user turn
    (:func:`move_tool_images_to_user_turn`)."""

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return handler(request.override(messages=move_tool_images_to_user_turn(list(request.messages))))

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        return await handler(request.override(messages=move_tool_images_to_user_turn(list(request.messages))))
