"""LangChain adapter: standard tool tests, content blocks, errors, and a real agent loop."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_tests.integration_tests import ToolsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ToolsUnitTests  # noqa: E402
from PIL import Image  # noqa: E402

from awares_tool.adapters.langchain import AwaresToolkit  # noqa: E402
from awares_tool.backends.scripted import ScriptedBackend  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"
IMAGE = "code_and_shapes.png"


def _scripted_model(messages: list[Any]) -> str:
    """First turn: request the bottom-right crop; once crops arrived: answer."""
    return "a blue square" if len(messages) > 2 else "GET_CROPS: ['3']"


def _tools() -> dict[str, Any]:
    toolkit = AwaresToolkit(roots=[EXAMPLES], backend=ScriptedBackend(_scripted_model))
    return {t.name: t for t in toolkit.get_tools()}


_TOOLS = _tools()


_EXAMPLE_ARGS = {
    "view_image": {"image": IMAGE},
    "get_crops": {"image": IMAGE, "regions": ["3", "4"]},
    "ask_image": {"image": IMAGE, "question": "What is in the bottom-right corner?"},
}


class _Params:
    """Which tool a standard-test class checks; its subclasses name it."""

    name = ""

    @property
    def tool_constructor(self) -> Any:
        return _TOOLS[self.name]

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return _EXAMPLE_ARGS[self.name]


# langchain-tests' async checks are plain `async def` tests: mark them for pytest-asyncio (strict mode)
# without overriding them, which the suite's own test_no_overrides_DO_NOT_OVERRIDE forbids.
# The mark reaches the suite's sync tests too, where pytest-asyncio only warns; that warning is silenced.
_ASYNC = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio'")]


class TestViewImageUnit(_Params, ToolsUnitTests):
    name = "view_image"


class TestViewImageIntegration(_Params, ToolsIntegrationTests):
    name = "view_image"
    pytestmark = _ASYNC


class TestGetCropsUnit(_Params, ToolsUnitTests):
    name = "get_crops"


class TestGetCropsIntegration(_Params, ToolsIntegrationTests):
    name = "get_crops"
    pytestmark = _ASYNC


class TestAskImageUnit(_Params, ToolsUnitTests):
    name = "ask_image"


class TestAskImageIntegration(_Params, ToolsIntegrationTests):
    name = "ask_image"
    pytestmark = _ASYNC


def _call(tool: Any, args: dict[str, Any]) -> ToolMessage:
    return tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})


def test_toolkit_offers_ask_image_only_with_a_backend() -> None:
    assert [t.name for t in AwaresToolkit(roots=[EXAMPLES]).get_tools()] == ["view_image", "get_crops"]
    assert set(_TOOLS) == {"view_image", "get_crops", "ask_image"}
    schema = _TOOLS["get_crops"].tool_call_schema.model_json_schema()
    assert schema["required"] == ["regions", "image"] or set(schema["required"]) == {"regions", "image"}
    assert "bottom-right quarter" in _TOOLS["get_crops"].description


def test_get_crops_returns_image_blocks_and_artifact() -> None:
    msg = _call(_TOOLS["get_crops"], {"image": IMAGE, "regions": ["0", "3"]})
    assert msg.status == "success"
    assert [b["type"] for b in msg.content] == ["text", "image", "text", "image"]
    original = Image.open(EXAMPLES / IMAGE).convert("RGB")
    for crop in msg.artifact["crops"]:
        block = msg.content[2 * msg.artifact["crops"].index(crop) + 1]
        sent = Image.open(io.BytesIO(base64.b64decode(block["base64"]))).convert("RGB")
        assert block["mime_type"] == "image/png"
        assert sent.tobytes() == original.crop(tuple(crop["box"])).tobytes()  # native pixels, uncapped
    assert msg.artifact["tokens"] == sum(c["tokens"] for c in msg.artifact["crops"])


def test_view_image_returns_id_and_low_res_view() -> None:
    msg = _call(_TOOLS["view_image"], {"image": IMAGE})
    image_id = msg.artifact["image_id"]
    assert image_id in msg.content[0]["text"] and msg.content[1]["type"] == "image"
    view = Image.open(io.BytesIO(base64.b64decode(msg.content[1]["base64"])))
    assert view.size == tuple(msg.artifact["view_size"]) == (224, 224)
    assert _call(_TOOLS["get_crops"], {"image": image_id, "regions": ["all"]}).status == "success"


def test_ask_image_returns_answer_and_cost() -> None:
    msg = _call(_TOOLS["ask_image"], {"image": IMAGE, "question": "What is bottom-right?"})
    assert msg.content.startswith("a blue square") and "RTR" in msg.content
    assert msg.artifact["regions"] == ["3"] and 0 < msg.artifact["rtr"] < 1


@pytest.mark.parametrize("args, words", [
    ({"image": "../../etc/passwd", "regions": ["3"]}, "contains '..'"),
    ({"image": "/etc/passwd", "regions": ["3"]}, "outside the allowed roots"),
    ({"image": IMAGE, "regions": ["nine"]}, "unknown region 'nine'"),
    ({"image": IMAGE, "regions": [str(i) for i in range(1000)]}, "at most 4"),
    ({"image": 42, "regions": "3"}, "invalid arguments for get_crops"),
    ({"bogus": True}, "invalid arguments for get_crops"),
    ({"image": "n" * 300 + ".png", "regions": ["3"]}, "File name too long"),  # an OSError before (#17)
])
def test_errors_become_error_tool_messages(args: dict[str, Any], words: str) -> None:
    msg = _call(_TOOLS["get_crops"], args)
    assert msg.status == "error" and words in msg.content
    assert _call(_TOOLS["get_crops"], {"image": IMAGE, "regions": ["3"]}).status == "success"


def _agent_run(toolkit: AwaresToolkit) -> tuple[Any, Any]:
    """Drive ``create_agent`` with a scripted chat model: view_image, get_crops ['3'], then an answer."""
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class ToolCallingFake(GenericFakeChatModel):
        """A scripted chat model that accepts tools (GenericFakeChatModel has no bind_tools)."""

        seen: list = []

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
            self.seen.append(list(messages))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    image_id = toolkit.service.view(IMAGE).result.image_id  # ids are content hashes: known in advance
    model = ToolCallingFake(seen=[], messages=iter([
        AIMessage(content="", tool_calls=[{"name": "view_image", "args": {"image": IMAGE}, "id": "c1",
                                           "type": "tool_call"}]),
        AIMessage(content="", tool_calls=[{"name": "get_crops", "args": {"image": image_id, "regions": ["3"]},
                                           "id": "c2", "type": "tool_call"}]),
        AIMessage(content="The bottom-right shows a shape."),
    ]))
    agent = create_agent(model, tools=toolkit.get_tools(), system_prompt="Look at images with the tools.",
                         middleware=toolkit.middleware())
    out = agent.invoke({"messages": [HumanMessage(content=f"What is at the bottom-right of {IMAGE}?")]})
    return out, model


def _decoded(block: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block["base64"]))).convert("RGB")


def test_agent_loop_sends_crops_to_the_model() -> None:
    out, model = _agent_run(AwaresToolkit(roots=[EXAMPLES]))
    assert out["messages"][-1].content == "The bottom-right shows a shape."
    assert len(model.seen) == 3
    last_input = model.seen[2]
    crops_msg = last_input[-1]
    assert isinstance(crops_msg, ToolMessage) and crops_msg.tool_call_id == "c2"
    assert [b["type"] for b in crops_msg.content] == ["text", "image"]
    original = Image.open(EXAMPLES / IMAGE).convert("RGB")
    assert _decoded(crops_msg.content[1]).tobytes() == original.crop((224, 224, 448, 448)).tobytes()
    view_msg = [m for m in model.seen[1] if isinstance(m, ToolMessage)][0]
    assert view_msg.content[1]["type"] == "image"  # the low-res view reached the second turn too


def test_follow_up_delivery_moves_tool_images_into_a_user_turn() -> None:
    """#20: for providers that drop images in tool results, the crops follow in a user turn."""
    out, model = _agent_run(AwaresToolkit(roots=[EXAMPLES], image_delivery="follow_up"))
    assert out["messages"][-1].content == "The bottom-right shows a shape."
    tool_msg, user_msg = model.seen[2][-2], model.seen[2][-1]
    assert isinstance(tool_msg, ToolMessage) and all(b["type"] == "text" for b in tool_msg.content)
    assert isinstance(user_msg, HumanMessage) and [b["type"] for b in user_msg.content] == ["text", "image"]
    original = Image.open(EXAMPLES / IMAGE).convert("RGB")
    assert _decoded(user_msg.content[1]).tobytes() == original.crop((224, 224, 448, 448)).tobytes()
    assert isinstance(out["messages"][-2], ToolMessage)  # the agent's own history is left as the tools returned it


def test_text_delivery_offers_only_the_answering_tool() -> None:
    tools = AwaresToolkit(roots=[EXAMPLES], backend=ScriptedBackend(_scripted_model), image_delivery="text").get_tools()
    assert [t.name for t in tools] == ["ask_image"]
    with pytest.raises(ValueError, match="needs backend"):
        AwaresToolkit(roots=[EXAMPLES], image_delivery="text").get_tools()


def test_an_unexpected_failure_is_an_error_message_not_a_crash(monkeypatch) -> None:
    """#17: only AwaresError became a ToolException; anything else ended the agent run."""
    from awares_tool.adapters.common import ImageService

    def broken(self: Any, ref: str) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(ImageService, "view", broken)  # a bug inside the service, not the tool under test
    msg = _call(_TOOLS["view_image"], {"image": IMAGE})
    assert msg.status == "error" and "KeyError" in msg.content and "boom" in msg.content
