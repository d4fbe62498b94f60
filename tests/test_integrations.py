"""The integrations/ recipes: smolagents tools, OpenAI Agents SDK tools and the lmms-eval model wrapper.

Each framework's tests skip with a reason when its package is not installed. Everything is offline:
agents run with scripted models, ``ask_image`` and the lmms-eval wrapper with ``ScriptedBackend``.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from awares_tool.adapters.common import GetCropsInput
from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.errors import BackendError, ImageSourceError
from awares_tool.tokens import get_family

INTEGRATIONS = Path(__file__).resolve().parent.parent / "integrations"
W, H = 800, 600
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _load(rel: str, name: str) -> ModuleType:
    """Import a recipe file (its folder names are not importable packages) under a unique name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, INTEGRATIONS / rel)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _require(module: str, attr: str, package: str) -> None:
    mod = pytest.importorskip(module, reason=f"{package} is not installed (pip install {package})")
    if not hasattr(mod, attr):  # e.g. an unrelated top-level "agents" module
        pytest.skip(f"the importable {module!r} is not {package}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder with one 800x600 image: white, with a red bottom-right quarter (region '3')."""
    img = Image.new("RGB", (W, H), "white")
    img.paste(RED, (W // 2, H // 2, W, H))
    img.save(tmp_path / "scene.png")
    return tmp_path


def _mostly(img: Image.Image, color: tuple[int, int, int]) -> bool:
    r, g, b = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return max(abs(r - color[0]), abs(g - color[1]), abs(b - color[2])) < 30


def _tokens(w: int, h: int) -> int:
    return get_family("qwen2.5-vl").count(w, h)


# ============================================================================ smolagents
@pytest.fixture
def smol() -> ModuleType:
    _require("smolagents", "Tool", "smolagents")
    return _load("smolagents/awares_tools.py", "awares_smolagents_tools")


def _smol_model(steps: list[Any]) -> Any:
    """A smolagents Model that replies from a script: (tool, args) tool calls or raw text (CodeAgent)."""
    from smolagents import Model
    from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole

    class Scripted(Model):
        def __init__(self) -> None:
            super().__init__(model_id="scripted")
            self.seen: list[list[Any]] = []

        def generate(self, messages: list[Any], stop_sequences: Any = None, response_format: Any = None,
                     tools_to_call_from: Any = None, **kwargs: Any) -> ChatMessage:
            self.seen.append(list(messages))
            step = steps.pop(0)
            if isinstance(step, str):
                return ChatMessage(role=MessageRole.ASSISTANT, content=step)
            name, args = step
            call = ChatMessageToolCall(id=f"call{len(self.seen)}", type="function",
                                       function=ChatMessageToolCallFunction(name=name, arguments=args))
            return ChatMessage(role=MessageRole.ASSISTANT, content="", tool_calls=[call])

    return Scripted()


def _smol_images(messages: list[Any]) -> list[Image.Image]:
    parts = [c for m in messages if isinstance(m.content, list) for c in m.content]
    return [c["image"] for c in parts if c.get("type") == "image"]


def _smol_texts(messages: list[Any]) -> str:
    return "\n".join(c.get("text", "") for m in messages if isinstance(m.content, list) for c in m.content)


def test_smolagents_tools_share_the_adapter_schema(smol: ModuleType, root: Path) -> None:
    kit = smol.AwaresSmolTools([root])
    tools = {t.name: t for t in kit.tools}
    assert set(tools) == {"view_image", "get_crops"}  # ask_image only with a backend
    props = GetCropsInput.model_json_schema()["properties"]
    assert tools["get_crops"].inputs["regions"] == {"type": "array", "items": {"type": "string"},
                                                    "description": props["regions"]["description"]}
    assert tools["get_crops"].description == kit.service.describe("get_crops")
    with_ask = smol.AwaresSmolTools([root], backend=ScriptedBackend(["x"]))
    assert [t.name for t in with_ask.tools] == ["view_image", "get_crops", "ask_image"]


def test_smolagents_get_crops_queues_the_native_crop(smol: ModuleType, root: Path) -> None:
    kit = smol.AwaresSmolTools([root])
    text = kit.tools[1](image="scene.png", regions=["3"])
    assert "box (400, 300, 800, 600)" in text and f"{_tokens(400, 300)} visual tokens" in text
    (crop,) = kit.inbox.drain()
    assert crop.size == (400, 300) and _mostly(crop, RED)
    assert len(kit.inbox) == 0


def test_smolagents_view_then_crops_by_id(smol: ModuleType, root: Path) -> None:
    kit = smol.AwaresSmolTools([root])
    view, crops = kit.tools
    text = view(image="scene.png")
    image_id = text.split("image_id=")[1].split(";")[0]
    assert len(image_id) == 16
    (low,) = kit.inbox.drain()
    assert low.size == (W // 2, H // 2)
    crops(image=image_id, regions=["0", "3"])
    top_left, bottom_right = kit.inbox.drain()
    assert _mostly(top_left, (255, 255, 255)) and _mostly(bottom_right, RED)


@pytest.mark.parametrize("image", ["../scene.png", "/etc/passwd", "http://127.0.0.1/x.png"])
def test_smolagents_refuses_images_outside_the_roots(smol: ModuleType, root: Path, image: str) -> None:
    kit = smol.AwaresSmolTools([root])
    with pytest.raises(ImageSourceError):
        kit.tools[0](image=image)
    assert len(kit.inbox) == 0


def test_smolagents_inbox_is_bounded(smol: ModuleType) -> None:
    inbox = smol.ImageInbox(max_images=2)
    imgs = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    inbox.put(imgs)
    assert inbox.drain() == imgs[1:]


def test_smolagents_tool_calling_agent_sees_crops_and_errors(smol: ModuleType, root: Path) -> None:
    from smolagents import ToolCallingAgent

    kit = smol.AwaresSmolTools([root])
    model = _smol_model([
        ("view_image", {"image": "scene.png"}),
        ("get_crops", {"image": "scene.png", "regions": ["9"]}),  # invalid: the model reads why
        ("get_crops", {"image": "scene.png", "regions": ["3"]}),
        ("final_answer", {"answer": "red"}),
    ])
    agent = ToolCallingAgent(tools=kit.tools, model=model, step_callbacks=[kit.inbox], max_steps=6,
                             verbosity_level=0)
    assert agent.run("What colour is the bottom-right corner?") == "red"
    assert _smol_images(model.seen[0]) == []
    assert [i.size for i in _smol_images(model.seen[1])] == [(W // 2, H // 2)]  # the view, next turn
    assert "unknown region '9'" in _smol_texts(model.seen[2])
    images = _smol_images(model.seen[3])
    assert len(images) == 2 and _mostly(images[-1], RED)  # view + the crop, in the turn after get_crops


def test_smolagents_code_agent_calls_the_tools(smol: ModuleType, root: Path) -> None:
    from smolagents import CodeAgent

    kit = smol.AwaresSmolTools([root])
    model = _smol_model([
        "Thought: zoom in.\n<code>\nprint(get_crops(image='scene.png', regions=['3']))\n</code>",
        "Thought: done.\n<code>\nfinal_answer('red')\n</code>",
    ])
    agent = CodeAgent(tools=kit.tools, model=model, step_callbacks=[kit.inbox], max_steps=4,
                      verbosity_level=0)
    assert agent.run("What colour is the bottom-right corner?") == "red"
    assert "box (400, 300, 800, 600)" in _smol_texts(model.seen[1])
    (crop,) = _smol_images(model.seen[1])
    assert _mostly(crop, RED)


def test_smolagents_ask_image_runs_the_loop(smol: ModuleType, root: Path) -> None:
    backend = ScriptedBackend(["GET_CROPS: ['3']", "red"])
    kit = smol.AwaresSmolTools([root], backend=backend)
    out = kit.tools[2](image="scene.png", question="What colour is the bottom-right corner?")
    answer, cost = out.split("\n(cost: ")
    assert answer == "red"
    cost = json.loads(cost.rstrip(")"))
    assert cost["regions"] == ["3"] and cost["full_tokens"] == _tokens(W, H)
    assert cost["tokens_spent"] == _tokens(W // 2, H // 2) + _tokens(400, 300)
    assert _mostly(backend.calls[1][-1].images[0], RED)  # the crop the model was sent


# ============================================================================ OpenAI Agents SDK
@pytest.fixture
def oai() -> ModuleType:
    _require("agents", "function_tool", "openai-agents")
    from agents import set_tracing_disabled

    set_tracing_disabled(True)  # nothing may be uploaded
    return _load("openai-agents/awares_tools.py", "awares_openai_agents_tools")


def _invoke(tool: Any, args: dict[str, Any] | str) -> Any:
    from agents.tool_context import ToolContext

    raw = args if isinstance(args, str) else json.dumps(args)
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call1", tool_arguments=raw)
    return asyncio.run(tool.on_invoke_tool(ctx, raw))


def _data_uri_image(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_openai_agents_tools_share_the_adapter_schema(oai: ModuleType, root: Path) -> None:
    tools = {t.name: t for t in oai.make_tools([root])}
    assert set(tools) == {"view_image", "get_crops"}
    schema = tools["get_crops"].params_json_schema
    shared = GetCropsInput.model_json_schema()["properties"]
    assert schema["properties"]["regions"]["minItems"] == 1
    assert schema["properties"]["image"]["description"] == shared["image"]["description"]
    assert schema["additionalProperties"] is False and sorted(schema["required"]) == ["image", "regions"]
    assert len(oai.make_tools([root], backend=ScriptedBackend(["x"]))) == 3


def test_openai_agents_get_crops_returns_images(oai: ModuleType, root: Path) -> None:
    from agents import ToolOutputImage, ToolOutputText

    tools = {t.name: t for t in oai.make_tools([root])}
    out = _invoke(tools["get_crops"], {"image": "scene.png", "regions": ["3", "0"]})
    assert [type(o) for o in out] == [ToolOutputText, ToolOutputImage] * 2 + [ToolOutputText]
    assert "box (400, 300, 800, 600)" in out[0].text
    crop3, crop0 = _data_uri_image(out[1].image_url), _data_uri_image(out[3].image_url)
    assert crop3.size == (400, 300) and _mostly(crop3, RED) and _mostly(crop0, (255, 255, 255))
    assert out[4].text == f"Total {2 * _tokens(400, 300)} visual tokens."
    view = _invoke(tools["view_image"], {"image": "scene.png"})
    assert "image_id=" in view[0].text and _data_uri_image(view[1].image_url).size == (W // 2, H // 2)


@pytest.mark.parametrize(("args", "expected"), [
    ({"image": "scene.png", "regions": ["9"]}, "Error: unknown region '9'"),
    ({"image": "../../etc/passwd", "regions": ["3"]}, "Error: image path '../../etc/passwd' contains '..'"),
    ({"image": "/etc/passwd", "regions": ["3"]}, "is outside the allowed roots"),
    ({"image": "scene.png"}, "Error: invalid arguments for get_crops: regions: Field required"),
    ({"image": "scene.png", "regions": []}, "Error: invalid arguments for get_crops: regions"),
    ("{not json", "Error: the arguments of get_crops are not valid JSON"),
])
def test_openai_agents_errors_reach_the_model(oai: ModuleType, root: Path, args: Any, expected: str) -> None:
    tools = {t.name: t for t in oai.make_tools([root])}
    out = _invoke(tools["get_crops"], args)
    assert isinstance(out, str) and expected in out


def test_openai_agents_unexpected_errors_stay_generic(oai: ModuleType, root: Path, monkeypatch: Any) -> None:
    tools = oai.make_tools([root])
    from awares_tool.adapters.common import ImageService

    monkeypatch.setattr(ImageService, "view", lambda self, ref: (_ for _ in ()).throw(RuntimeError("secret")))
    out = _invoke(tools[0], {"image": "scene.png"})
    assert "secret" not in out and "error occurred" in out.lower()


def test_openai_agents_runner_sends_crops_to_the_next_turn(oai: ModuleType, root: Path) -> None:
    from agents import Agent, Runner, Usage
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    steps: list[Any] = [("view_image", {"image": "scene.png"}),
                        ("get_crops", {"image": "scene.png", "regions": ["3"]}), "red"]

    class Scripted(Model):
        inputs: list[Any] = []

        async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            self.inputs.append(input)
            step = steps.pop(0)
            if isinstance(step, str):
                out: list[Any] = [ResponseOutputMessage(
                    id="msg", type="message", role="assistant", status="completed",
                    content=[ResponseOutputText(type="output_text", text=step, annotations=[])])]
            else:
                out = [ResponseFunctionToolCall(type="function_call", call_id=f"call{len(self.inputs)}",
                                                name=step[0], arguments=json.dumps(step[1]))]
            return ModelResponse(output=out, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    model = Scripted()
    agent = Agent(name="viewer", instructions="Look, then zoom.", tools=oai.make_tools([root]), model=model)
    assert Runner.run_sync(agent, "What colour is the bottom-right corner?").final_output == "red"
    outputs = [i for i in model.inputs[2] if isinstance(i, dict) and i.get("type") == "function_call_output"]
    crop_parts = [p for p in outputs[-1]["output"] if p["type"] == "input_image"]
    assert len(crop_parts) == 1 and _mostly(_data_uri_image(crop_parts[0]["image_url"]), RED)


def test_openai_agents_ask_image(oai: ModuleType, root: Path) -> None:
    tools = {t.name: t for t in oai.make_tools([root], backend=ScriptedBackend(["GET_CROPS: ['3']", "red"]))}
    out = _invoke(tools["ask_image"], {"image": "scene.png", "question": "Colour of the bottom-right?"})
    spent, full = _tokens(W // 2, H // 2) + _tokens(400, 300), _tokens(W, H)
    assert out.startswith("red\n") and f"visual tokens {spent} of {full}" in out
    assert f"RTR {spent / full:.2f}" in out


# ============================================================================ lmms-eval
@pytest.fixture(scope="module")
def lmms_mod() -> ModuleType:
    from awares_train.eval import lmms

    return lmms


def _scene() -> Image.Image:
    img = Image.new("RGB", (W, H), "white")
    img.paste(RED, (W // 2, H // 2, W, H))
    return img


def test_lmms_runner_answers_and_records_rtr(lmms_mod: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "rtr.jsonl"
    backend = ScriptedBackend(["GET_CROPS: ['3']", "red\nmore text", "blue"])
    runner = lmms_mod.AwaresEvalRunner(lmms_mod.AwaresEvalConfig(log_path=log), backend=backend)
    text, result = runner.answer("<image>\nColour of the bottom-right corner?", [_scene()],
                                 {"until": ["\n"], "max_new_tokens": 16}, task="toy", doc_id=0)
    assert text == "red" and result is not None and result.regions == ["3"]
    assert "<image>" not in backend.calls[0][-1].text_content
    text2, _ = runner.answer("Is the top-left white?", _scene(), {}, task="toy", doc_id=1)
    assert text2 == "blue"
    crop_rtr = (_tokens(W // 2, H // 2) + _tokens(400, 300)) / _tokens(W, H)
    low_rtr = _tokens(W // 2, H // 2) / _tokens(W, H)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["regions"] for r in rows] == [["3"], []]
    assert rows[0]["rtr"] == pytest.approx(crop_rtr) and rows[1]["rtr"] == pytest.approx(low_rtr)
    s = runner.summary()["toy"]
    assert s["samples"] == 2 and s["failed"] == 0 and s["no_crop_share"] == 0.5
    assert s["mean_rtr"] == pytest.approx((crop_rtr + low_rtr) / 2)


def test_lmms_runner_modes_and_failures(lmms_mod: ModuleType) -> None:
    cfg = lmms_mod.AwaresEvalConfig(mode="fullres")
    runner = lmms_mod.AwaresEvalRunner(cfg, backend=ScriptedBackend(["red"]))
    class NumpyLikeId:  # datasets hand out numpy integers; the JSONL must still serialise
        def __index__(self) -> int:
            return 3

    runner.answer("q", [_scene()], task="t", doc_id=NumpyLikeId())
    assert runner.records[0].rtr == pytest.approx(1.0) and runner.records[0].doc_id == 3
    failing = lmms_mod.AwaresEvalRunner(backend=ScriptedBackend([BackendError("model crashed")]))
    text, result = failing.answer("q", [_scene()], task="t", doc_id=7)
    assert text == "" and result is None and "model crashed" in failing.records[0].error
    assert failing.summary()["t"]["failed"] == 1
    with pytest.raises(ValueError, match="has no image"):
        failing.answer("q", [], task="t", doc_id=8)
    strict = lmms_mod.AwaresEvalRunner(lmms_mod.AwaresEvalConfig(multi_image="error"),
                                       backend=ScriptedBackend(["x"]))
    with pytest.raises(ValueError, match="2 images"):
        strict.answer("q", [_scene(), _scene()], task="t", doc_id=9)
    with pytest.raises(ValueError):  # pydantic: a mode the loop does not have
        lmms_mod.AwaresEvalConfig(mode="turbo")


def test_lmms_eval_model_generate_until(lmms_mod: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("lmms_eval.api.model", reason="lmms-eval is not installed (pip install lmms-eval)")
    from lmms_eval.api.instance import Instance

    backend = ScriptedBackend(["GET_CROPS: ['3']", "red", "white"])
    model = lmms_mod.AwaresLMMS(backend_obj=backend, log_path=str(tmp_path / "log.jsonl"), max_crops="2",
                                batch_size=1)
    assert model.runner.config.max_crops == 2
    docs = [{"image": _scene(), "q": "bottom-right?"}, {"image": _scene(), "q": "top-left?"}]
    model.task_dict = {"toy": {"test": docs}}

    def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
        return [doc["image"]]

    requests = [
        Instance(request_type="generate_until", idx=0, metadata={"task": "toy", "doc_id": i, "repeats": 1},
                 arguments=(f"<image>\n{d['q']}", {"until": ["\n\n"], "max_new_tokens": 8}, doc_to_visual, i,
                            "toy", "test"))
        for i, d in enumerate(docs)
    ]
    out = model.generate_until(requests)
    assert [o.text for o in out] == ["red", "white"]
    assert out[0].token_counts.input_tokens > out[1].token_counts.input_tokens  # two turns vs one
    assert _mostly(backend.calls[1][-1].images[0], RED)
    assert [r.regions for r in model.runner.records] == [["3"], []]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    with pytest.raises(NotImplementedError, match="generate_until"):
        model.loglikelihood(requests)



def test_lmms_eval_finds_the_model_by_name_through_the_entry_point() -> None:
    """No file copied by hand: lmms-eval's own registry resolves `--model awares` to this package's class."""
    pytest.importorskip("lmms_eval.models", reason="lmms-eval is not installed (pip install lmms-eval)")
    from lmms_eval.models import get_model, list_available_models

    assert "awares" in list_available_models()
    chat, simple = get_model("awares"), get_model("awares", force_simple=True)
    assert chat.__name__ == "AwaresChatLMMS" and not chat.is_simple
    assert simple.__name__ == "AwaresLMMS" and simple.is_simple


def test_lmms_eval_chat_requests_run_the_loop(lmms_mod: ModuleType) -> None:
    """The newer chat signature: (context, doc_to_messages, gen_kwargs, doc_id, task, split)."""
    pytest.importorskip("lmms_eval.api.model", reason="lmms-eval is not installed (pip install lmms-eval)")
    from lmms_eval.api.instance import Instance
    from lmms_eval.protocol import ChatMessages

    backend = ScriptedBackend(["GET_CROPS: ['3']", "red"])
    model = lmms_mod.AwaresChatLMMS(backend_obj=backend)
    docs = [{"image": _scene(), "q": "Colour of the bottom-right corner?"}]
    model.task_dict = {"toy": {"test": docs}}

    def doc_to_messages(doc: dict[str, Any]) -> ChatMessages:
        return ChatMessages(messages=[{"role": "user", "content": [{"type": "image", "url": doc["image"]},
                                                                   {"type": "text", "text": doc["q"]}]}])

    req = Instance(request_type="generate_until", idx=0, metadata={"task": "toy", "doc_id": 0, "repeats": 1},
                   arguments=("", doc_to_messages, {"max_new_tokens": 8}, 0, "toy", "test"))
    out = model.generate_until([req])
    assert [o.text for o in out] == ["red"]  # only the answer, not the crop request
    assert backend.calls[0][-1].text_content.strip() == "Colour of the bottom-right corner?"
    assert _mostly(backend.calls[1][-1].images[0], RED) and model.runner.records[0].regions == ["3"]
