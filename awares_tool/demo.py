"""``awares demo`` / ``make demo``: the main job on shipped example images, with no download.

With the embedded default model available it asks the one-code image a question that needs a high-res crop
and one that does not, then one document, one chart and one scene item of ``awares-bench`` (among them a half
crop or two crops), prints answer, regions fetched, RTR and time, and writes each crop overlay; with
llama-cpp-python installed it asks the same questions of the shipped GGUF through llama.cpp too. Without a
model backend (no ``hf`` extra installed) it still shows the crop engine: the crop set over the image, the
crops and the token ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from awares_tool.crops import get_crop_set
from .errors import BackendSpecError, BackendUnavailableError, MissingExtraError
from awares_tool.images import open_image
from awares_tool.crops.overlay import draw_overlay

__all__ = ["run_demo", "demo_assets", "demo_items"]

ASSETS = Path(__file__).resolve().parent / "assets"


def _spec() -> dict[str, Any]:
    return json.loads((ASSETS / "demo.json").read_text())


def demo_assets() -> tuple[Path, list[dict[str, Any]]]:
    """The shipped one-code demo image and its questions (each with ``question``, ``answer``, ``needs_crop``)."""
    spec = _spec()
    return ASSETS / spec["image"], spec["questions"]


def demo_items() -> list[tuple[Path, dict[str, Any]]]:
    """Every demo question with its image: the one-code image's, then the benchmark items (document, chart,
    scene; each also with ``benchmark``, ``answers`` and ``target_regions``)."""
    spec = _spec()
    image = ASSETS / spec["image"]
    return [(image, q) for q in spec["questions"]] + [(ASSETS / it["image"], it) for it in spec.get("items", [])]


def _is_correct(answer: str, q: dict[str, Any]) -> bool:
    accepted = [str(a).strip().lower() for a in q.get("answers") or [q["answer"]]]
    return answer.strip().lower() in accepted


def run_demo(out: Path, *, backend: str | None = None, echo: Callable[[str], Any] = print,
             options: Mapping[str, Any] | None = None) -> list[Any]:
    """Run the demo and return the results (empty when no model could be used).

    With ``backend=None`` the embedded model runs on transformers and, where llama-cpp-python is installed,
    its shipped GGUF runs on llama.cpp as well; a spec string runs that backend only. ``options`` (device,
    dtype, attn: the CLI's flags; None values ignored) apply to the transformers run.
    """
    items = demo_items()
    out.mkdir(parents=True, exist_ok=True)
    try:
        from .backends import resolve_backend

        be = resolve_backend(backend, **dict(options or {}))
    except BackendSpecError:
        raise  # the user's own mistake: say so rather than fall back to the crop engine
    except (BackendUnavailableError, MissingExtraError) as e:
        echo(f"no model backend available ({e}); showing the crop engine only")
        return _crop_engine_demo(open_image(items[0][0]), out, echo)
    runs = [(getattr(be, "name", "model"), be, "")]
    if backend is None:
        gguf = _default_gguf_backend(echo)
        if gguf is not None:
            runs.append(("llama.cpp, " + gguf.model_path.parent.name, gguf, "_llamacpp"))
    results = []
    for label, run_be, suffix in runs:
        echo(f"\n== backend: {label}")
        results += _ask_all(items, run_be, out, suffix, echo)
    return results


def _default_gguf_backend(echo: Callable[[str], Any]) -> Any:
    """The shipped GGUF on llama.cpp, or None (with a note) where llama-cpp-python is not installed."""
    import importlib.util

    from .backends import default_gguf_path, resolve_backend

    gguf = default_gguf_path()
    if not gguf.is_file():
        return None
    if importlib.util.find_spec("llama_cpp") is None:
        echo("(pip install 'awares[llamacpp]' to run the same questions on llama.cpp with the shipped GGUF)")
        return None
    return resolve_backend(f"llamacpp:{gguf}")


def _ask_all(items: list[tuple[Path, dict[str, Any]]], be: Any, out: Path, suffix: str,
             echo: Callable[[str], Any]) -> list[Any]:
    from awares_tool.episode.loop import crop_on_demand

    results = []
    shown = None
    for i, (image, q) in enumerate(items):
        if image != shown:  # the one-code image's questions share it: opened and named once
            src = open_image(image)
            kind = f"{q['benchmark']} item of awares-bench, " if q.get("benchmark") else ""
            echo(f"\nimage: {image.name} ({kind}{src.size[0]}x{src.size[1]})")
            shown = image
        res = crop_on_demand(src, q["question"], backend=be)
        fetched = [r for r in res.regions if r != "all"]
        echo("")
        echo(f"Q: {res.question}")
        echo(f"A: {res.answer}   ({'correct' if _is_correct(res.answer, q) else 'expected ' + str(q['answer'])})")
        echo(f"   regions fetched: {', '.join(res.regions) or 'none: answered from the low-res view'}"
             + (f" (evidence in {', '.join(q['target_regions'])})" if q.get("target_regions") else ""))
        if res.tokens.rtr is not None:
            echo(f"   visual tokens: {res.tokens.spent} of {res.tokens.full} at full resolution, RTR {res.tokens.rtr:.2f}")
        echo(f"   time: {res.wall_s:.2f}s")
        title = f"{res.question} -> {res.answer}"
        pic = draw_overlay(src.image, get_crop_set(res.crop_set), fetched or [], highlight=fetched, title=title)
        path = out / f"demo_q{i + 1}{suffix}_overlay.png"
        pic.save(path)
        echo(f"   overlay: {path}")
        results.append(res)
    return results


def _crop_engine_demo(src: Any, out: Path, echo: Callable[[str], Any]) -> list[Any]:
    from awares_tool.images.lowres import make_lowres_view, parse_lowres
    from awares_tool.episode.costs import token_report

    cs = get_crop_set("awares9")
    path = out / "demo_crop_set.png"
    draw_overlay(src.image, cs, title="awares9 crop set").save(path)
    make_lowres_view(src, parse_lowres(None)).save(out / "demo_lowres.png")
    rep = token_report(*src.size, "qwen2.5-vl")
    echo(f"crop set overlay: {path}")
    echo(f"Qwen2.5-VL visual tokens: full {rep.full}, low-res {rep.lowres} (RTR {rep.rtr_lowres:.2f})")
    for name, rtr_value in rep.rtr_with_crop.items():
        echo(f"  low-res + crop {name}: RTR {rtr_value:.2f}")
    return []
