"""OpenAIBackend against real HTTP servers on 127.0.0.1.

A scripted stdlib server (``http.server`` in a thread) plays the failure cases: server down, timeout, 500
then success, 429 with Retry-After, malformed replies. ``python -m llama_cpp.server`` serving the tiny GGUF
(a real OpenAI-compatible server) runs the crop loop end to end, through the API and through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from PIL import Image

pytest.importorskip("httpx")

from awares_tool.backends.base import GenerationSettings, ImagePart, Message, TextPart  # noqa: E402
from awares_tool.backends.openai import OpenAIBackend, guess_family, to_openai_messages  # noqa: E402
from awares_tool.errors import BackendError, BackendTimeoutError, BackendUnavailableError  # noqa: E402
from awares_tool.episode.loop import crop_on_demand  # noqa: E402
from awares_train.testing.servers import free_port, llama_server_cmd, running_server  # noqa: E402


def reply(text: str = "", tool_calls: list | None = None, usage: dict | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


class Scripted:
    """A tiny OpenAI-like server: each POST takes the next (status, headers, body, delay) from the script."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any, float]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.gate: threading.Barrier | None = None  # set: requests answer in groups that were in flight together
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                try:
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {}, {"object": "list", "data": [{"id": "qwen2.5-vl-tiny", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                with outer.lock:
                    outer.requests.append(body)
                    step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                status, headers, payload, delay = step
                try:
                    time.sleep(delay)
                    if outer.gate is not None:
                        outer.gate.wait()
                    self._send(status, headers, payload)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(*script: tuple[int, dict[str, str], Any, float]) -> Scripted:
        s = Scripted(list(script))
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def ok(body: Any, delay: float = 0.0) -> tuple[int, dict[str, str], Any, float]:
    return (200, {}, body, delay)


def image(w: int = 400, h: int = 300) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    img.paste((0, 0, 255), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return img


USER = [Message(role="user", content=[ImagePart(image=image(64, 48)), TextPart(text="What colour?")])]
FAST = GenerationSettings(max_new_tokens=8)


# -- failure handling ----------------------------------------------------------------------------------
def backoff_delays(monkeypatch) -> list[float]:
    """The delays the backend sleeps between attempts, recorded instead of slept (tests assert no timings)."""
    import awares_tool.backends.openai as openai_backend

    delays: list[float] = []
    clock = type("Clock", (), {"sleep": staticmethod(delays.append), "perf_counter": staticmethod(time.perf_counter),
                               "time": staticmethod(time.time)})
    monkeypatch.setattr(openai_backend, "time", clock)
    return delays


def test_server_down_names_the_url(monkeypatch):
    delays = backoff_delays(monkeypatch)
    url = f"http://127.0.0.1:{free_port()}/v1"
    be = OpenAIBackend(url, "m", max_retries=2, backoff_s=0.01)
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1.*after 3 attempts"):
        be.generate(USER, FAST)
    assert len(delays) == 2 and 0.01 <= delays[0] <= 0.0125 and 0.02 <= delays[1] <= 0.025  # doubling, jitter


def test_timeout_raises_and_does_not_retry(serve):
    srv = serve(ok(reply("late"), delay=1.5))
    be = OpenAIBackend(srv.url, "m", timeout_s=0.3, max_retries=3)
    with pytest.raises(BackendTimeoutError, match="0.3 s"):
        be.generate(USER, FAST)
    assert len(srv.requests) == 1
    # the per-call setting overrides the constructor's
    with pytest.raises(BackendTimeoutError, match="0.2 s"):
        OpenAIBackend(srv.url, "m", timeout_s=30).generate(USER, GenerationSettings(timeout_s=0.2))


def test_500_then_success_retries(serve):
    srv = serve((500, {}, {"error": "boom"}, 0.0), (503, {}, b"busy", 0.0), ok(reply("blue")))
    gen = OpenAIBackend(srv.url, "m", backoff_s=0.01).generate(USER, FAST)
    assert gen.text == "blue" and len(srv.requests) == 3


def test_500_forever_gives_up_with_status(serve):
    srv = serve((500, {}, {"error": "boom"}, 0.0))
    with pytest.raises(BackendError, match="HTTP 500"):
        OpenAIBackend(srv.url, "m", backoff_s=0.01, max_retries=2).generate(USER, FAST)
    assert len(srv.requests) == 3


def test_429_honours_retry_after(serve, monkeypatch):
    delays = backoff_delays(monkeypatch)
    srv = serve((429, {"Retry-After": "1"}, {"error": "slow down"}, 0.0), ok(reply("red")))
    be = OpenAIBackend(srv.url, "m", backoff_s=0.01)
    assert be.generate(USER, FAST).text == "red"
    assert delays == [1.0] and len(srv.requests) == 2  # the server's delay, not the backoff


def test_4xx_is_not_retried(serve):
    srv = serve((404, {}, {"error": "no such model"}, 0.0))
    with pytest.raises(BackendUnavailableError, match="HTTP 404.*no such model"):
        OpenAIBackend(srv.url, "m", backoff_s=0.01).generate(USER, FAST)
    assert len(srv.requests) == 1


@pytest.mark.parametrize("body", [b"<html>oops</html>", {"no": "choices"}, {"choices": []}])
def test_malformed_server_reply_is_a_backend_error(serve, body):
    srv = serve(ok(body))
    with pytest.raises(BackendError, match="not JSON|without choices"):
        OpenAIBackend(srv.url, "m").generate(USER, FAST)


def test_malformed_model_output_falls_back_to_the_full_image(serve):
    bad_call = [{"id": "c1", "type": "function", "function": {"name": "get_crops", "arguments": "{regions: [4"}}]
    srv = serve(ok(reply("", tool_calls=bad_call)), ok(reply("blue")))
    res = crop_on_demand(image(), "What colour?", backend=OpenAIBackend(srv.url, "m"), use_tools=True)
    assert res.answer == "blue"
    assert res.requests[0].fallback == "full_image" and res.regions == ["all"]
    assert len(srv.requests) == 2


# -- protocol ------------------------------------------------------------------------------------------
def test_model_none_asks_the_server_and_guesses_family(serve):
    srv = serve(ok(reply("x")))
    be = OpenAIBackend(srv.url)
    assert be.name.endswith("#?")
    be.generate(USER, FAST)
    assert be.model == "qwen2.5-vl-tiny" and srv.requests[0]["model"] == "qwen2.5-vl-tiny"
    assert be.token_family == "qwen2.5-vl" and be.count_image_tokens(448, 448) == 256
    assert guess_family("Qwen/Qwen3-VL-8B") == "qwen3-vl" and guess_family("gpt-4o") is None


def test_text_protocol_loop_sends_data_uris_and_crops_in_a_user_turn(serve):
    usage = {"prompt_tokens": 90, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 40}}
    srv = serve(ok(reply("GET_CROPS: ['4']", usage=usage)), ok(reply("blue", usage=usage)))
    be = OpenAIBackend(srv.url, "Qwen2.5-VL-7B-Instruct")
    res = crop_on_demand(image(), "What colour is the square?", backend=be)
    assert res.answer == "blue" and res.regions == ["4"]
    second = srv.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert any(p["type"] == "image_url" for p in second[3]["content"])
    assert "tools" not in srv.requests[0]
    # visual tokens are estimated from the family, and the ledger says so
    assert res.tokens.source == "estimate" and res.tokens.crops == [be.count_image_tokens(200, 150)]
    assert res.timings[1].cached_tokens == 40 and res.timings[1].prefilled_tokens == 50


def test_native_tools_loop(serve):
    call = [{"id": "call_7", "type": "function", "function": {"name": "get_crops", "arguments": '{"regions": ["4"]}'}}]
    srv = serve(ok(reply("", tool_calls=call)), ok(reply("blue")))
    res = crop_on_demand(image(), "What colour?", backend=OpenAIBackend(srv.url, "m"), use_tools=True)
    assert res.answer == "blue" and res.regions == ["4"]
    first, second = srv.requests[0], srv.requests[1]
    assert first["tools"][0]["function"]["name"] == "get_crops" and first["tool_choice"] == "auto"
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert second["messages"][2]["tool_calls"][0]["id"] == "call_7"
    assert second["messages"][3]["tool_call_id"] == "call_7" and isinstance(second["messages"][3]["content"], str)
    assert any(p["type"] == "image_url" for p in second["messages"][4]["content"])


def test_tool_images_move_to_a_user_turn_and_text_mode_without_native_tools():
    msgs = [
        Message(role="assistant", content=[], tool_calls=[{"id": "a", "function": {"name": "get_crops",
                                                                                      "arguments": {"regions": ["1"]}}}]),
        Message(role="tool", content=[TextPart(text="crop 1"), ImagePart(image=image(32, 32))], tool_call_id="a"),
    ]
    wire = to_openai_messages(msgs)
    assert [m["role"] for m in wire] == ["assistant", "tool", "user"]
    assert wire[1]["content"] == "crop 1" and wire[2]["content"][0]["type"] == "image_url"
    assert json.loads(wire[0]["tool_calls"][0]["function"]["arguments"]) == {"regions": ["1"]}
    kept = to_openai_messages(msgs, tool_images=True)
    assert [m["role"] for m in kept] == ["assistant", "tool"] and kept[1]["content"][1]["type"] == "image_url"
    plain = to_openai_messages(msgs, native_tools=False)
    assert [m["role"] for m in plain] == ["assistant", "user", "user"]
    assert "<tool_call>" in plain[0]["content"] and "tool_calls" not in plain[0]


def test_tool_images_keep_the_crops_in_the_tool_turn(serve, tmp_path):
    """For tool-trained models on servers that take images in any turn: the crops answer the call itself."""
    card_dir = tmp_path / "model"
    card_dir.mkdir()
    (card_dir / "awares.json").write_text(json.dumps({"system_prompt": "Use get_crops.", "request_format": "tool"}))
    call = [{"id": "call_3", "type": "function", "function": {"name": "get_crops", "arguments": '{"regions": ["1"]}'}}]
    srv = serve(ok(reply("", tool_calls=call)), ok(reply("808")))
    be = OpenAIBackend(srv.url, "m", model_card=card_dir, tool_images=True)
    res = crop_on_demand(image(), "What is the code?", backend=be)  # tools on: the card says request_format tool
    assert res.answer == "808" and res.regions == ["1"]
    first, second = srv.requests
    assert first["messages"][0]["content"] == "Use get_crops." and first["tools"][0]["function"]["name"] == "get_crops"
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    tool = second["messages"][3]
    assert tool["tool_call_id"] == "call_3"
    assert [p["type"] for p in tool["content"]] == ["image_url", "text"]
    # without native tools there is no tool turn to keep them in
    assert not OpenAIBackend(srv.url, "m", tool_images=True, use_tools=False).supports_tool_images


def test_cli_ask_with_card_and_tool_images(serve, tmp_path):
    from typer.testing import CliRunner

    from awares_tool.cli import app

    (tmp_path / "awares.json").write_text(json.dumps({"system_prompt": "Card prompt.", "request_format": "tool"}))
    image().save(tmp_path / "img.png")
    call = [{"id": "c1", "type": "function", "function": {"name": "get_crops", "arguments": '{"regions": ["2"]}'}}]
    srv = serve(ok(reply("", tool_calls=call)), ok(reply("42")))
    args = ["ask", str(tmp_path / "img.png"), "What is the code?", "--backend", f"openai:{srv.url}#m", "--json"]
    out = CliRunner().invoke(app, [*args, "--card", str(tmp_path), "--tool-images"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["answer"] == "42"
    assert srv.requests[0]["messages"][0]["content"] == "Card prompt."
    assert srv.requests[1]["messages"][-1]["role"] == "tool"
    wrong = CliRunner().invoke(app, ["ask", str(tmp_path / "img.png"), "q", "--backend", "transformers:x",
                                     "--tool-images"])
    assert wrong.exit_code == 2 and "openai" in wrong.output


def test_model_card_paths_are_read_or_refused(tmp_path):
    from awares_tool.backends.base import ModelCard

    (tmp_path / "awares.json").write_text(json.dumps({"crop_set": "grid:3x3", "request_format": "tool"}))
    assert ModelCard.read(tmp_path).crop_set == "grid:3x3"
    assert ModelCard.read(tmp_path / "awares.json").request_format == "tool"
    with pytest.raises(BackendUnavailableError, match="no model card at"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", model_card=tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"request_format": "morse"}')
    with pytest.raises(BackendUnavailableError, match="not a valid awares.json"):
        ModelCard.read(tmp_path / "bad.json")


def test_concurrency_limit(serve):
    srv = serve(ok(reply("x")))
    srv.gate = threading.Barrier(2, timeout=60)  # each answer waits for a second request in flight: 2 must overlap
    be = OpenAIBackend(srv.url, "m", concurrency=2)
    threads = [threading.Thread(target=be.generate, args=(USER, FAST)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(srv.requests) == 6 and srv.max_in_flight == 2 and not srv.gate.broken


# -- a real server: llama_cpp.server on the tiny GGUF ------------------------------------------------
@pytest.fixture(scope="module", params=["qwen2.5-vl", "mtmd"])
def llama_server(request) -> Iterator[tuple[str, str]]:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("uvicorn")
    from test_gguf_export import tiny_gguf

    model, mmproj = tiny_gguf()
    port = free_port()
    cmd = llama_server_cmd(model, mmproj, port, alias="tiny-qwen2.5-vl", chat_format=request.param)
    url = f"http://127.0.0.1:{port}/v1"
    with running_server(cmd, url + "/models", "llama_cpp.server", timeout_s=60, stop_timeout_s=10):
        yield url, request.param


@pytest.mark.slow
def test_real_server_loop(llama_server):
    url, _ = llama_server
    with OpenAIBackend(url, token_family="qwen2.5-vl") as be:  # model=None: asks /v1/models
        res = crop_on_demand(image(), "What colour is the square?", backend=be, max_new_tokens=8, mode="all_crops")
        assert be.model == "tiny-qwen2.5-vl"
    assert res.answered and len(res.timings) == 1 and res.timings[0].prompt_tokens > 0
    assert len(res.regions) == 9


@pytest.mark.slow
def test_real_server_cli_ask(llama_server, tmp_path):
    url, _ = llama_server
    path = tmp_path / "img.png"
    image().save(path)
    out = subprocess.run(
        [sys.executable, "-m", "awares_tool.cli", "ask", str(path), "What colour?", "--backend",
         f"openai:{url}#tiny-qwen2.5-vl", "--max-new-tokens", "8", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["backend"] == f"openai:{url}#tiny-qwen2.5-vl" and res["timings"]


@pytest.mark.slow
def test_real_server_refuses_images_in_tool_messages(llama_server):
    """Why crops go in a user turn by default: llama-cpp-python's server validates tool content as text."""
    url, _ = llama_server
    msgs = [Message.text("user", "Look."),
            Message(role="assistant", content=[], tool_calls=[{"id": "c", "function": {"name": "get_crops",
                                                                                       "arguments": {"regions": ["1"]}}}]),
            Message(role="tool", content=[ImagePart(image=image(64, 64)), TextPart(text="crop 1")], tool_call_id="c")]
    with OpenAIBackend(url, "tiny-qwen2.5-vl", tool_images=True, max_retries=0) as be:
        with pytest.raises(BackendError, match="validation error"):
            be.generate(msgs, GenerationSettings(max_new_tokens=4))
        be.tool_images = False  # the default: the image moves to a user turn and the server answers
        assert be.generate(msgs, GenerationSettings(max_new_tokens=4)).usage.prompt_tokens > 0
