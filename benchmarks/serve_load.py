"""Load test of ``awares serve``: N concurrent OpenAI clients against the gateway, side by side with direct calls.

Starts ``awares serve`` (the CLI, in a child process, on a free loopback port) and runs the same questions two
ways, in alternating rounds so both see the same machine load:

* **gateway**: ``--clients`` threads, each with the official ``openai`` client, send the image as a data URI;
* **direct**: ``--clients`` threads call :func:`~awares_tool.crop_on_demand` on the same backend in this process,
  at most ``--concurrency`` at once (the gateway's own bound), with the same image bytes.

It prints, per path, the request count, errors (target 0), p50/p99/mean latency and throughput, and the
gateway/direct ratios: what the HTTP hop, JSON, base64 and the queue add. It also checks that both paths give the
same answers (greedy decoding) and reads the gateway's mean RTR from its ``/metrics``. Only loopback traffic.

    python benchmarks/serve_load.py                                   # embedded model, 32 clients x 2 questions
    python benchmarks/serve_load.py --requests 4 --rounds 2
    python benchmarks/serve_load.py --upstream-gguf                   # llama.cpp's server on the shipped GGUF
                                                                      # as the upstream (gateway: openai:URL#MODEL)
    python benchmarks/serve_load.py --backend "openai:http://127.0.0.1:8000/v1#awares" --card awares-official

The questions are the shipped demo image's two (one needs a crop, one does not), alternated, so the mix is half
and half. With a local model the gateway runs one loop at a time (``--concurrency 1``): latency is dominated by
the queue, and both paths queue the same way.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from awares_train.testing.servers import free_port, llama_server_cmd, running_server  # noqa: E402

TOKEN = "bench-token"
GGUF = REPO / "awares_tool" / "models" / "tiny-awares-gguf"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _load(clients: int, per_client: int, questions: list[str], call: Callable[[str], str],
          tag: int = 0) -> tuple[list[float], list[str], dict[tuple[int, int], str], float]:
    """``clients`` threads, each asking ``per_client`` questions: latencies, errors, answers by job, wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    answers: dict[tuple[int, int], str] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        for j in range(per_client):
            job = i * per_client + j
            question = questions[job % len(questions)]
            t0 = time.perf_counter()
            try:
                answer = call(question)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported, the run goes on
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                answers[(tag, job)] = answer

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, errors, answers, time.perf_counter() - t0


def _row(name: str, lat: list[float], errors: list[str], wall: float) -> dict[str, float]:
    n = len(lat)
    row = {"n": n, "errors": len(errors), "p50": _percentile(lat, 0.5) if lat else float("nan"),
           "p99": _percentile(lat, 0.99) if lat else float("nan"),
           "mean": statistics.fmean(lat) if lat else float("nan"), "rps": n / wall if wall else float("nan")}
    print(f"  {name:<8} {n:>6} {len(errors):>7} {row['p50']:>8.3f} {row['p99']:>8.3f} {row['mean']:>8.3f} "
          f"{row['rps']:>8.2f}")
    return row


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (threads)")
    p.add_argument("--requests", type=int, default=2, help="questions per client per round and path")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of direct and gateway")
    p.add_argument("--backend", default=None, help="backend spec (default: the embedded model)")
    p.add_argument("--card", default=None, help="model card for the backend (awares serve --card)")
    p.add_argument("--upstream-gguf", action="store_true",
                   help="start python -m llama_cpp.server on the shipped GGUF and use it as the upstream")
    p.add_argument("--concurrency", type=int, default=None,
                   help="loops in flight (default: awares serve's: 16 for openai: backends, else 1)")
    args = p.parse_args()

    import openai

    from awares_tool import crop_on_demand
    from awares_tool.backends import resolve_backend
    from awares_tool.backends.cards import load_card
    from awares_tool.demo import demo_assets

    image_path = REPO / "awares_tool" / "assets" / "demo.png"
    png = image_path.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    _, demo_questions = demo_assets()
    questions = [q["question"] for q in demo_questions]

    with ExitStack() as stack:
        backend, card = args.backend, args.card
        if args.upstream_gguf:
            up = free_port()
            stack.enter_context(running_server(
                llama_server_cmd(GGUF / "model.gguf", GGUF / "mmproj.gguf", up, alias="tiny-awares", threads=2),
                f"http://127.0.0.1:{up}/v1/models", "llama_cpp.server", timeout_s=180))
            backend, card = f"openai:http://127.0.0.1:{up}/v1#tiny-awares", card or str(GGUF / "awares.json")
        upstream = (backend or "").startswith("openai:")
        concurrency = args.concurrency or (16 if upstream else 1)

        port = free_port()
        token_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "token"
        token_file.write_text(TOKEN)
        cmd = [sys.executable, "-m", "awares_tool.cli", "serve", "--port", str(port), "--token-file", str(token_file),
               "--concurrency", str(concurrency), "--queue", str(max(64, args.clients * 2)), "--log-level", "warning"]
        cmd += ["--backend", backend] if backend else []
        cmd += ["--card", card] if card else []
        print(f"starting awares serve ({backend or 'embedded model'}, {concurrency} loop(s) in flight) ...", flush=True)
        stack.enter_context(running_server(cmd, f"http://127.0.0.1:{port}/healthz", "awares serve", timeout_s=180))

        options: dict[str, Any] = {"concurrency": concurrency} if upstream else {}
        if card is not None and upstream:
            options["model_card"] = load_card(card)
        be = resolve_backend(backend, **options)
        if card is not None and not upstream:
            be.model_card = load_card(card)
        # the gateway's bound and its first-come-first-served queue (a plain Semaphore lets a releasing thread
        # take its slot straight back, which starves some clients and flatters the median)
        slots = stack.enter_context(ThreadPoolExecutor(max_workers=concurrency))

        def direct(question: str) -> str:
            return slots.submit(crop_on_demand, png, question, backend=be).result().answer

        gw = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKEN, max_retries=0, timeout=600)

        def through_gateway(question: str) -> str:
            r = gw.chat.completions.create(model="awares", messages=[{"role": "user", "content": [
                {"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": uri}}]}])
            return r.choices[0].message.content or ""

        # warm-up: one question each way (loads, caches, first-call costs)
        for q in questions:
            direct(q)
            through_gateway(q)

        per_path: dict[str, tuple[list[float], list[str], dict[tuple[int, int], str], float]] = {
            "direct": ([], [], {}, 0.0), "gateway": ([], [], {}, 0.0)}
        for r in range(args.rounds):
            for name, call in (("direct", direct), ("gateway", through_gateway)):
                print(f"round {r + 1}/{args.rounds}: {name}, {args.clients} clients x {args.requests} ...", flush=True)
                lat, err, ans, wall = _load(args.clients, args.requests, questions, call, tag=r)
                acc = per_path[name]
                per_path[name] = (acc[0] + lat, acc[1] + err, {**acc[2], **ans}, acc[3] + wall)

        import httpx

        text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    print(f"\n{args.clients} clients x {args.requests} questions x {args.rounds} round(s) per path; backend "
          f"{backend or 'embedded tiny-awares'}; {concurrency} loop(s) in flight; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"  {'path':<8} {'req':>6} {'errors':>7} {'p50 s':>8} {'p99 s':>8} {'mean s':>8} {'req/s':>8}")
    rows = {name: _row(name, v[0], v[1], v[3]) for name, v in per_path.items()}
    d, g = rows["direct"], rows["gateway"]
    print(f"  gateway/direct: p50 {g['p50'] / d['p50']:.2f}x, p99 {g['p99'] / d['p99']:.2f}x, mean "
          f"{g['mean'] / d['mean']:.2f}x, throughput {g['rps'] / d['rps']:.2f}x")
    a_direct, a_gateway = per_path["direct"][2], per_path["gateway"][2]
    same = sum(a_direct.get(k) == v for k, v in a_gateway.items())
    print(f"  same answer on both paths: {same}/{len(a_gateway)}")
    rtr_n = _metric(text, "awares_rtr_count")
    print(f"  gateway /metrics: {int(rtr_n)} answers, mean RTR {_metric(text, 'awares_rtr_sum') / rtr_n:.3f}, mean "
          f"queue wait {_metric(text, 'awares_queue_seconds_sum') / _metric(text, 'awares_queue_seconds_count'):.3f} s")
    for name, v in per_path.items():
        for e in sorted(set(v[1]))[:5]:
            print(f"  {name} error: {e}")
    print(json.dumps({"direct": d, "gateway": g}))
    if g["errors"] or d["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
