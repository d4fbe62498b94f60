"""awares-mcp: the real server process over stdio and HTTP, the SDK's client, and the Inspector CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("mcp.server.mcpserver")
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from PIL import Image  # noqa: E402

from awares_tool.adapters.common import AdapterConfig, ImageService  # noqa: E402
from awares_tool.adapters.mcp_server import build_server  # noqa: E402
from awares_tool.backends.scripted import ScriptedBackend  # noqa: E402
from awares_tool.images import ImageLimits  # noqa: E402
from test_adapter_common import QUADRANT_COLORS, png_header_only, quadrant_image  # noqa: E402

TOKEN = "test-token-123"
TOOLS = {"list_regions", "view_image", "get_crops", "ask_image"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("mcp")
    root = base / "images"
    root.mkdir()
    quadrant_image().save(root / "quad.png")
    (root / "bomb.png").write_bytes(png_header_only(30000, 30000))
    (base / "secret.png").write_bytes((root / "quad.png").read_bytes())
    os.symlink(base / "secret.png", root / "escape.png")
    return root


def _server_args(root: Path, *extra: str) -> list[str]:
    return ["-m", "awares_tool.adapters.mcp_server", "--root", str(root), *extra]


def _env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _text(result: Any) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


def _crop_pixel(result: Any) -> tuple[int, int, int]:
    image = next(c for c in result.content if c.type == "image")
    img = Image.open(io.BytesIO(base64.b64decode(image.data))).convert("RGB")
    return img.getpixel((img.width // 2, img.height // 2))


# Each bad request, and the words its tool error must contain (acceptance list of issue 6).
BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("get_crops", {"image": "../../etc/passwd", "regions": ["3"]}, "contains '..'"),
    ("get_crops", {"image": "escape.png", "regions": ["3"]}, "outside the allowed roots"),
    ("get_crops", {"image": "/etc/passwd", "regions": ["3"]}, "outside the allowed roots"),
    ("view_image", {"image": "http://127.0.0.1:9/x.png"}, "127.0.0.1"),
    ("view_image", {"image": "bomb.png"}, "900,000,000 pixels"),
    ("get_crops", {"image": "quad.png", "regions": [str(i) for i in range(1000)]}, "at most 4"),
    ("get_crops", {"image": "quad.png", "regions": ["nine"]}, "unknown region 'nine'"),
    ("get_crops", {"image": 5, "regions": "x"}, "validation error"),
    ("get_crops", {}, "Field required"),
    ("get_crops", {"image": "quad.png", "regions": [None, {"a": 1}]}, "validation error"),
    ("view_image", {"image": "x" * 5000}, "at most 4096 characters"),
    ("no_such_tool", {}, "no_such_tool"),
    ("view_image", {"image": "n" * 300 + ".png"}, "File name too long"),  # an OSError, now a typed error (#17)
    ("get_crops", {"image": "quad.png", "regions": ["3"], "zoom": 4}, "Extra inputs are not permitted"),
    ("list_regions", {"verbose": True}, "Extra inputs are not permitted"),
]


async def _check_session(session: Any) -> None:
    """List the tools, make a good call, then every bad call followed by a good one."""
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["get_crops"].input_schema["required"] == ["image", "regions"]
    assert all(t.input_schema.get("additionalProperties") is False for t in tools.values())  # as published (#17)
    assert tools["get_crops"].output_schema is not None

    async def good() -> None:
        res = await session.call_tool("get_crops", {"image": "quad.png", "regions": ["3"]})
        assert not res.is_error, _text(res)
        assert _crop_pixel(res) == QUADRANT_COLORS["3"]
        assert res.structured_content["crops"][0]["box"] == [200, 150, 400, 300]

    await good()
    for name, args, words in BAD_CALLS:
        res = await session.call_tool(name, args)
        assert res.is_error, (name, args)
        assert words in _text(res), (words, _text(res))
        await good()  # the server keeps serving

    view = await session.call_tool("view_image", {"image": "quad.png"})
    assert [c.type for c in view.content] == ["text", "image", "resource_link"]
    image_id = view.structured_content["image_id"]
    assert view.structured_content["view_size"] == [200, 150]
    res = await session.call_tool("get_crops", {"image": image_id, "regions": ["0", "2"]})
    assert [c.type for c in res.content] == ["text", "image", "resource_link"] * 2
    linked = await session.read_resource(res.content[2].uri)  # the link reads back the same crop
    assert base64.b64decode(linked.contents[0].blob) == base64.b64decode(res.content[1].data)
    regions = await session.call_tool("list_regions", {})
    assert regions.structured_content["max_crops"] == 4
    assert [r["name"] for r in regions.structured_content["regions"]][-1] == "all"


def test_acceptance_in_process(root: Path) -> None:
    """The same checks through the SDK's in-memory client: fast enough for every run."""
    from mcp import Client

    server = build_server(ImageService(AdapterConfig(roots=(root,), limits=ImageLimits(allow_urls=True))))

    async def run() -> None:
        async with Client(server) as client:
            await _check_session(client)

    asyncio.run(run())


@pytest.mark.slow
def test_stdio_server_process(root: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=_server_args(root, "--allow-urls", "--log-level",
                                                                             "WARNING"), env=_env())

    async def run() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await _check_session(session)

    asyncio.run(run())


def test_ask_image_in_process(root: Path) -> None:
    from mcp import Client

    backend = ScriptedBackend(lambda msgs: "yellow" if len(msgs) > 2 else "GET_CROPS: ['3']")
    server = build_server(ImageService(AdapterConfig(roots=(root,)), backend=backend))

    async def run() -> None:
        async with Client(server) as client:
            res = await client.call_tool("ask_image", {"image": "quad.png", "question": "Colour at bottom-right?"})
            assert not res.is_error, _text(res)
            assert res.structured_content["answer"] == "yellow"
            assert res.structured_content["regions"] == ["3"] and 0 < res.structured_content["rtr"] < 1
            failing = build_server(ImageService(AdapterConfig(roots=(root,)), backend=ScriptedBackend([])))
            async with Client(failing) as bad:
                res = await bad.call_tool("ask_image", {"image": "quad.png", "question": "?"})
                assert res.is_error and "ran out of replies" in _text(res)

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_server(root: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, *_server_args(root, "--transport", "http", "--port", str(port), "--log-level", "WARNING",
                                       "--header-timeout", "1", "--max-connections", "8",
                                       "--allowed-origin", "http://localhost:*")],
        env={**_env(), "AWARES_MCP_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not start listening in 30 s")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert proc.stdout.read() == b""  # nothing but the protocol may ever go to stdout


@asynccontextmanager
async def http_session(url: str, token: str | None = TOKEN):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                yield session


@pytest.mark.slow
def test_http_server_process(http_server: str) -> None:
    async def run() -> None:
        async with http_session(http_server) as session:
            await _check_session(session)

    asyncio.run(run())


@pytest.mark.slow
def test_http_requires_the_token(http_server: str) -> None:
    import httpx2

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx2.post(http_server, json=body, headers={"Accept": "application/json, text/event-stream", **headers})
        assert r.status_code == 401 and "bearer token" in r.text


@pytest.mark.slow
def test_http_checks_the_origin(http_server: str) -> None:
    """#17: the SDK validates Origin only on loopback binds; the guard does on every bind."""
    import httpx2

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    base = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {TOKEN}"}
    r = httpx2.post(http_server, json=body, headers={**base, "Origin": "http://evil.example"})
    assert r.status_code == 403 and "origin" in r.text
    r = httpx2.post(http_server, json=body, headers={**base, "Origin": "http://localhost:3000"})
    assert r.status_code != 403


@pytest.mark.slow
def test_http_closes_connections_that_never_finish_their_headers(http_server: str) -> None:
    """#17: 200 half-open connections stayed open forever; headers are now due within --header-timeout (1 s)."""
    port = int(http_server.split(":")[2].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    try:
        assert sock.recv(1024) == b""  # the server closed it (a bound far beyond the 1 s timeout)
    finally:
        sock.close()


@pytest.mark.slow
def test_http_caps_its_connections(root: Path) -> None:
    """#17: beyond --max-connections a request is answered 503 at once instead of queueing behind idle sockets."""
    import httpx2

    port = _free_port()
    proc = subprocess.Popen([sys.executable, *_server_args(root, "--transport", "http", "--port", str(port),
                                                          "--max-connections", "2", "--log-level", "WARNING")],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    idle = []
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        time.sleep(0.5)  # let the server accept them (not a timing assertion)
        r = httpx2.post(f"http://127.0.0.1:{port}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"Accept": "application/json, text/event-stream"}, timeout=30)
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_non_loopback_bind_without_a_token_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    from awares_tool.adapters.mcp_server import TOKEN_ENV, main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["--root", str(tmp_path), "--transport", "http", "--host", "0.0.0.0"]) == 2
    assert "refusing to serve on 0.0.0.0 without a bearer token" in capsys.readouterr().err


def test_the_token_comes_from_a_file(tmp_path: Path) -> None:
    from awares_tool.adapters.http_guard import read_token

    (tmp_path / "token").write_text("s3cret\n")
    assert read_token(None, env="UNSET_VAR_FOR_TEST", file=tmp_path / "token") == "s3cret"
    with pytest.raises(ValueError, match="empty"):
        (tmp_path / "empty").write_text("")
        read_token(None, env="UNSET_VAR_FOR_TEST", file=tmp_path / "empty")


def test_http_binds_loopback_by_default() -> None:
    from awares_tool.adapters.mcp_server import _parser

    args = _parser().parse_args(["--root", "."])
    assert args.host == "127.0.0.1" and args.transport == "stdio"


def test_bad_root_is_a_clean_startup_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "awares_tool.adapters.mcp_server", "--root", str(tmp_path / "nope")],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not an existing folder" in proc.stderr and proc.stdout == ""


# ----------------------------------------------------------------------------- MCP Inspector CLI
INSPECTOR = "@modelcontextprotocol/inspector@0.15"


@pytest.fixture(scope="module")
def inspector() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not found: the MCP Inspector CLI check needs them")
    cache = Path(os.environ.get("AWARES_NPM_CACHE", Path.home() / ".cache" / "awares-npm"))
    binary = cache / "node_modules" / ".bin" / "mcp-inspector"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", INSPECTOR],
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of the MCP Inspector timed out")
        if proc.returncode != 0 or not binary.exists():
            pytest.skip(f"could not install {INSPECTOR} with npm: {proc.stderr[-500:]}")
    return binary


@pytest.mark.slow
def test_inspector_cli_lists_and_calls_get_crops(inspector: Path, root: Path) -> None:
    server = [sys.executable, *_server_args(root)]

    def cli(*args: str) -> dict[str, Any]:
        proc = subprocess.run([str(inspector), "--cli", *server, *args], capture_output=True, text=True,
                              timeout=120, env=_env())
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    listed = cli("--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == TOOLS
    called = cli("--method", "tools/call", "--tool-name", "get_crops", "--tool-arg", "image=quad.png",
                 "--tool-arg", 'regions=["3"]')
    assert called.get("isError") is False, called
    assert [c["type"] for c in called["content"]] == ["text", "image", "resource_link"]
    refused = cli("--method", "tools/call", "--tool-name", "get_crops", "--tool-arg", "image=../../etc/passwd",
                  "--tool-arg", 'regions=["3"]')
    assert refused["isError"] is True and "contains '..'" in refused["content"][0]["text"]


@pytest.mark.parametrize("name", ["claude_desktop_config.json", "cursor_mcp.json", "vscode_mcp.json"])
def test_client_configs_start_a_valid_server(name: str) -> None:
    from awares_tool.adapters.mcp_server import _parser

    path = Path(__file__).resolve().parent.parent / "integrations" / "mcp-clients" / name
    config = json.loads(path.read_text())
    servers = config.get("mcpServers") or config["servers"]
    stdio = [s for s in servers.values() if s.get("type", "stdio") == "stdio"]
    assert stdio and all(s["command"] == "awares-mcp" for s in stdio)
    for s in stdio:
        assert _parser().parse_args(s["args"]).root  # the arguments parse and name a root


@pytest.mark.hf
@pytest.mark.slow
def test_model_flags_reach_the_ask_image_backend(tmp_path: Path, capsys) -> None:
    """--device / --dtype / --attn go into --backend's spec; a bad one stops the server at start-up."""
    pytest.importorskip("transformers")
    from awares_tool.adapters.mcp_server import _parser, main, service_from_args
    from awares_tool.backends import clear_cache
    from awares_train.testing import tiny_vlm_path

    assert main(["--root", str(tmp_path), "--backend", "transformers:/nowhere", "--dtype", "bf17"]) == 2
    err = capsys.readouterr().err
    assert "bad value 'bf17' for option 'dtype'" in err and "bfloat16" in err
    spec = f"transformers:{tiny_vlm_path('qwen2.5-vl')}"
    service = service_from_args(_parser().parse_args(["--root", str(tmp_path), "--backend", spec,
                                                      "--dtype", "bfloat16", "--device", "cpu"]))
    try:
        assert service.backend.dtype == "bfloat16" and service.backend.placement.device == "cpu"
    finally:
        clear_cache(spec, dtype="bfloat16", device="cpu")


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(TOOLS)), args=st.dictionaries(
    st.sampled_from(["image", "regions", "question", "zoom", "image_path", ""]), _JSONISH, max_size=4))
def test_any_arguments_give_a_result_or_a_tool_error(root: Path, name: str, args: dict) -> None:
    """#17: arbitrary JSON-like arguments over MCP: a result or an is_error result, never a crashed server."""
    from mcp import Client

    server = build_server(ImageService(AdapterConfig(roots=(root,)), backend=ScriptedBackend(lambda m: "x")))

    async def run() -> None:
        async with Client(server) as client:
            res = await client.call_tool(name, args)
            assert isinstance(res.is_error, bool)
            ok = await client.call_tool("list_regions", {})
            assert not ok.is_error  # still serving

    asyncio.run(run())


def test_image_path_is_accepted_and_delivery_modes(root: Path) -> None:
    """#20: lmms-eval's MCP mode passes `image_path`; `link` delivery sends links, `text` only the answering tool."""
    from mcp import Client

    def server(delivery: str) -> Any:
        return build_server(ImageService(AdapterConfig(roots=(root,)), backend=ScriptedBackend(["yellow"])),
                            delivery=delivery)

    async def run() -> None:
        async with Client(server("inline")) as client:
            res = await client.call_tool("get_crops", {"image_path": "quad.png", "regions": ["3"]})
            assert not res.is_error and _crop_pixel(res) == QUADRANT_COLORS["3"]
        async with Client(server("link")) as client:
            res = await client.call_tool("view_image", {"image": "quad.png"})
            assert [c.type for c in res.content] == ["text", "resource_link"]
            data = (await client.read_resource(res.content[1].uri)).contents[0].blob
            assert Image.open(io.BytesIO(base64.b64decode(data))).size == (200, 150)
        async with Client(server("text")) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"list_regions", "ask_image"}
            res = await client.call_tool("ask_image", {"image_path": "quad.png", "question": "Colour?"})
            assert res.structured_content["answer"] == "yellow"

    asyncio.run(run())
