"""Load test of ``awares-mcp`` over streamable HTTP on 127.0.0.1 (needs the ``mcp`` extra).

Starts the real server (the same ``build_server`` as ``awares-mcp``, plus a ``noop`` tool that
returns at once) in a child process on a free loopback port, then runs N concurrent MCP clients
that call ``get_crops`` and ``noop`` alternately until both have been called ``--calls`` times or
``--max-seconds`` have passed. It prints p50/p99 latency and the error count of each tool, the
``get_crops``/``noop`` latency ratio (what crops cost beyond the protocol), and the server's RSS
after warm-up and at the end (memory growth). Only loopback traffic; nothing else is contacted.

    python benchmarks/mcp_load.py                            # quick: 8 clients, 300 calls of each tool
    python benchmarks/mcp_load.py --clients 32 --calls 2000  # the issue's target: 0 errors, no RSS growth

The defaults finish within about 3 minutes on a busy 2-core machine (measured: 2 min 24 s in all,
6-8 calls/s, with the cores shared by a training job at load average 8-10; zero errors, +0.8 MiB
RSS). The target run makes 4,000 calls plus a 400-call warm-up, so expect 10-15 minutes on such a
machine; ``--max-seconds`` defaults to 0.5 s per call of each tool (never under 150 s, so 1,000 s
for the target) so that run is not cut short. Compare the printed call counts with ``--calls``: a
run stopped by ``--max-seconds`` reports fewer calls than asked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "bench-token"


def serve(root: str, port: int) -> None:
    """Child process: the awares MCP server plus a no-op tool, on 127.0.0.1:port."""
    import logging

    import uvicorn

    from awares_tool.adapters.common import AdapterConfig, ImageService
    from awares_tool.adapters.mcp_server import build_http_app, build_server

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = build_server(ImageService(AdapterConfig(roots=(Path(root),))))

    def noop() -> str:
        """Return 'ok' at once: the protocol's own cost, for comparison."""
        return "ok"

    server.add_tool(noop)
    app = build_http_app(server, token=TOKEN)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - memory is reported as unknown rather than failing the run
        return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _client(url: str, budget: dict[str, int], deadline: float, lat: dict[str, list[float]],
                  errors: dict[str, int]) -> None:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    calls = [("get_crops", {"image": "bench.png", "regions": ["3"]}), ("noop", {})]
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            i = 0
            while time.monotonic() < deadline:
                name, args = calls[i % 2]
                i += 1
                if budget[name] <= 0:
                    if all(v <= 0 for v in budget.values()):
                        return
                    continue
                budget[name] -= 1
                t0 = time.perf_counter()
                try:
                    res = await session.call_tool(name, args)
                    if res.is_error:
                        errors[name] += 1
                except Exception:  # noqa: BLE001 - a failed call is counted, the client goes on
                    errors[name] += 1
                lat[name].append(time.perf_counter() - t0)


async def _run(url: str, clients: int, calls: int, max_seconds: float) -> tuple[dict, dict, float]:
    budget = {"get_crops": calls, "noop": calls}
    lat: dict[str, list[float]] = {"get_crops": [], "noop": []}
    errors = {"get_crops": 0, "noop": 0}
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(_client(url, budget, t0 + max_seconds, lat, errors) for _ in range(clients)), return_exceptions=True
    )
    failed_clients = [r for r in results if isinstance(r, BaseException)]
    for r in failed_clients[:3]:
        print(f"client failed: {type(r).__name__}: {r}", file=sys.stderr)
    errors["clients"] = len(failed_clients)
    return lat, errors, time.monotonic() - t0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent MCP sessions (max 256; target: 32)")
    p.add_argument("--calls", type=int, default=300, help="calls of each tool (max 100000; target: 2000)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop the load after this long (default: 0.5 s per call of each tool, at least 150)")
    p.add_argument("--image-size", default="1600x1200", help="WxH of the test image")
    p.add_argument("--rounds", type=int, default=4, help="rounds of the load, with the server's RSS read after each")
    p.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    clients, calls = min(max(1, args.clients), 256), min(max(1, args.calls), 100_000)

    from PIL import Image, ImageDraw

    with tempfile.TemporaryDirectory() as root:
        w, h = (int(v) for v in args.image_size.split("x"))
        img = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(img)
        for i in range(0, w, 40):
            draw.line([(i, 0), (w - i, h)], fill=(i % 255, 80, 160), width=3)
        img.save(Path(root) / "bench.png")

        port = _free_port()
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", root, str(port)])
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        print("server did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}/mcp"
            # Warm-up at full concurrency: imports, the first decode, worker threads and their malloc
            # arenas all settle here, so the RSS difference below is growth under steady load.
            asyncio.run(_run(url, clients, max(calls // 10, 2 * clients), 60))
            rss = [_rss_mib(proc.pid)]
            max_seconds = args.max_seconds if args.max_seconds is not None else max(150.0, 0.5 * calls)
            # The load runs in rounds with the RSS read after each: memory that levels off is the
            # allocator settling, memory that keeps climbing round after round is a leak.
            lat, errors, wall = {"get_crops": [], "noop": []}, {"get_crops": 0, "noop": 0, "clients": 0}, 0.0
            for r in range(args.rounds):
                share = calls // args.rounds + (1 if r < calls % args.rounds else 0)
                lat_r, err_r, wall_r = asyncio.run(_run(url, clients, share, max_seconds / args.rounds))
                for k in lat:
                    lat[k] += lat_r[k]
                for k in errors:
                    errors[k] += err_r[k]
                wall += wall_r
                rss.append(_rss_mib(proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    done = sum(len(v) for v in lat.values())
    print(f"awares-mcp load: {clients} clients, {done} calls in {wall:.1f} s ({done / wall:.0f} calls/s), "
          f"image {w}x{h}, region '3'")
    print(f"{'tool':<10} {'calls':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("get_crops", "noop"):
        v = lat[name]
        print(f"{name:<10} {len(v):>6} {errors[name]:>6} {_pct(v, 50) * 1e3:>8.1f} {_pct(v, 99) * 1e3:>8.1f}")
    ratio50 = _pct(lat["get_crops"], 50) / _pct(lat["noop"], 50)
    ratio99 = _pct(lat["get_crops"], 99) / _pct(lat["noop"], 99)
    print(f"get_crops / noop latency: p50 x{ratio50:.2f}, p99 x{ratio99:.2f}")
    print(f"server RSS: {rss[0]:.1f} MiB after warm-up -> {rss[-1]:.1f} MiB after the load "
          f"({rss[-1] - rss[0]:+.1f} MiB); failed clients: {errors['clients']}")
    print("RSS after each round (MiB): " + " -> ".join(f"{v:.1f}" for v in rss))
    return 1 if any(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
