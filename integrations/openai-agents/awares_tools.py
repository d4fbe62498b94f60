"""OpenAI Agents SDK tools for AwaRes: ``view_image``, ``get_crops`` and ``ask_image`` as ``FunctionTool``s.

    from agents import Agent, Runner
    from awares_tools import make_tools

    agent = Agent(name="viewer", tools=make_tools(roots=["./images"]),
                  instructions="Call view_image first, then get_crops only for detail you need.")
    print(Runner.run_sync(agent, "What is the total on invoice.png?").final_output)

``view_image`` and ``get_crops`` return ``ToolOutputText`` captions and ``ToolOutputImage`` data URIs, so
a vision model sees the pixels in the tool result; ``ask_image`` (offered only with a backend) runs
the whole AwaRes loop and returns the answer with its visual-token cost, for text-only models.

The argument types are the shared ones of :mod:`awares_tool.adapters.common` (``ImageRef``,
``RegionNames``, ``Question``), so the JSON schema the model reads matches the MCP server's and the
LangChain tools'. All checks live in :class:`~awares_tool.adapters.common.ImageService`. The SDK's
default error handler hides every exception text from the model; ours passes the text of an
``AwaresError`` (it names the bad value and the fix) and of a malformed-arguments error, and keeps
the generic message for anything unexpected (which is logged instead).

Tested against openai-agents 0.24 by invoking the tools with a ``ToolContext`` and through a
``Runner`` with a scripted model (``tests/test_integrations.py``); no network.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from agents import FunctionTool, RunContextWrapper, ToolOutputImage, ToolOutputText, function_tool
from agents.exceptions import ModelBehaviorError
from agents.tool import default_tool_error_function
from pydantic import BaseModel, ValidationError

from awares_tool.adapters.common import (
    AdapterConfig,
    AskImageInput,
    EncodedImage,
    GetCropsInput,
    ImageRef,
    ImageService,
    Question,
    RegionNames,
    ViewImageInput,
)
from awares_tool.errors import AwaresError

__all__ = ["make_tools", "tool_error_message"]

logger = logging.getLogger(__name__)

Output = list[ToolOutputText | ToolOutputImage]


_INPUTS: dict[str, type[BaseModel]] = {"view_image": ViewImageInput, "get_crops": GetCropsInput,
                                       "ask_image": AskImageInput}


def _argument_problems(ctx: RunContextWrapper[Any]) -> str | None:
    """Why the raw arguments are invalid, from the shared input model.

    The SDK drops the validation details from its error unless tool-data logging is enabled
    (openai-agents 0.24, ``DONT_LOG_TOOL_DATA``), so we validate the raw arguments again.
    """
    name, raw = getattr(ctx, "tool_name", None), getattr(ctx, "tool_arguments", None)
    model = _INPUTS.get(name or "")
    if model is None or raw is None:
        return None
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return f"the arguments of {name} are not valid JSON; send one JSON object such as {_EXAMPLES[name]}"
    try:
        model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'arguments'}: {p['msg']}" for p in e.errors())
        return f"invalid arguments for {name}: {problems}. Fix the arguments and call {name} again"
    return None


_EXAMPLES = {"view_image": '{"image": "photo.png"}', "get_crops": '{"image": "photo.png", "regions": ["3"]}',
             "ask_image": '{"image": "photo.png", "question": "What is the total?"}'}


def tool_error_message(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """What the model reads when a tool call fails: our reason and fix, or the SDK's generic text."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, (AwaresError, ModelBehaviorError)):
        cause = cause.__cause__  # the SDK wraps some failures (e.g. UserError around our error)
    if isinstance(cause, ModelBehaviorError):
        return f"Error: {_argument_problems(ctx) or cause}"
    if cause is not None:
        return f"Error: {cause}"
    logger.error("AwaRes tool failed unexpectedly: %r", error)
    return default_tool_error_function(ctx, error)


def _images(encoded: list[EncodedImage]) -> Output:
    out: Output = []
    for img in encoded:
        out.append(ToolOutputText(text=img.caption))
        uri = f"data:{img.mime_type};base64,{base64.b64encode(img.data).decode()}"
        out.append(ToolOutputImage(image_url=uri))
    return out


def make_tools(roots: list[str | Path] | None = None, *, backend: Any = None,
               config: AdapterConfig | None = None, service: ImageService | None = None,
               ask_image: bool | None = None) -> list[FunctionTool]:
    """The AwaRes tools for one set of allowed folders.

    Args:
        roots: Folders whose files the tools may open; nothing outside them is readable.
        backend: Backend object or spec string for ``ask_image`` (``"default"``: the embedded model).
        config: Limits and output settings; its ``roots`` are used when ``roots`` is empty.
        service: An existing service to share (then ``roots``/``config``/``backend`` are ignored).
        ask_image: Offer ``ask_image``; by default only when ``backend`` is set, since a vision agent
            looks at the crops itself.

    Returns:
        ``[view_image, get_crops]`` plus ``ask_image`` when enabled.
    """
    if service is None:
        config = config or AdapterConfig()
        if roots:
            config = config.model_copy(update={"roots": tuple(Path(r) for r in roots)})
        service = ImageService(config, backend=backend)
    svc = service

    def view_image(image: ImageRef) -> Output:
        out = svc.view(image)
        r = out.result
        text = (f"{out.image.caption} Use image_id={r.image_id} with get_crops; regions: "
                f"{', '.join(r.regions)}; view tokens {r.view_tokens} of {r.full_tokens} at full resolution.")
        return [ToolOutputText(text=text), *_images([out.image])[1:]]

    def get_crops(image: ImageRef, regions: RegionNames) -> Output:
        out = svc.crops(image, regions)
        return [*_images(out.images), ToolOutputText(text=f"Total {out.result.tokens} visual tokens.")]

    def ask_image_fn(image: ImageRef, question: Question) -> str:
        res = svc.ask(image, question)
        rtr = "unknown" if res.rtr is None else f"{res.rtr:.2f}"
        status = "" if res.answered else " [the model did not give a final answer]"
        return (f"{res.answer}{status}\n(cost: visual tokens {res.tokens_spent} of {res.full_tokens} at full "
                f"resolution, RTR {rtr}; high-res regions fetched: {', '.join(res.regions) or 'none'})")

    def wrap(fn: Any, name: str) -> FunctionTool:
        # Sync functions: the SDK runs them in a worker thread, so decoding never blocks the event loop.
        return function_tool(fn, name_override=name, description_override=svc.describe(name),
                             use_docstring_info=False, failure_error_function=tool_error_message)

    tools = [wrap(view_image, "view_image"), wrap(get_crops, "get_crops")]
    if ask_image if ask_image is not None else backend is not None:
        tools.append(wrap(ask_image_fn, "ask_image"))
    return tools
