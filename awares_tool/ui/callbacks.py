"""The web demo's callbacks as plain functions: no Gradio here, so tests call them directly.

Each long callback is a generator of :class:`RunView`: it first yields a view that only says what it is
doing (checking the image, loading the backend, asking the model), then the finished view. The page
shows every yield, so a slow model load or a slow answer never looks like a hung page, and every
failure ends as a view whose ``status`` says what went wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from pydantic import BaseModel

from ..backends import DEFAULT_MODEL_NAME, default_model_path, is_cached, resolve_backend
from ..backends.spec import parse_backend_spec
from ..backends.base import GenerationSettings, VLMBackend
from awares_tool.crops import FULL_IMAGE, get_crop_set
from ..demo import demo_items
from ..errors import (
    AwaresError,
    BackendError,
    BackendSpecError,
    BackendTimeoutError,
    BackendUnavailableError,
    CropSetError,
    ImageError,
    MissingExtraError,
)
from awares_tool.images import ImageLimits, SourceImage, open_image
from awares_tool.episode.loop import crop_on_demand
from awares_tool.images.lowres import make_lowres_view
from awares_tool.crops.overlay import draw_overlay
from awares_tool.episode.result import CropResult
from .render import answer_markdown, comparison_markdown, ledger_markdown, timings_markdown

__all__ = [
    "DEFAULT_CHOICE",
    "MODEL_DEFAULT",
    "MODES",
    "Example",
    "RunView",
    "BackendPool",
    "gallery_examples",
    "describe_error",
    "check_upload",
    "backend_hint",
    "ask",
    "compare",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The backend choice that means the embedded default model (preselected on the page).
DEFAULT_CHOICE = f"default (embedded {DEFAULT_MODEL_NAME})"
#: The crop-set / low-res choice that means "whatever the model card says".
MODEL_DEFAULT = "model default"
MODES: tuple[str, ...] = ("awares", "lowres", "fullres", "all_crops", "full_on_request")
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
_PREVIEW_SIDE = 1024  # the upload preview is only for the eye; the model gets the original


class Example(BaseModel):
    """One gallery entry: an image and a question about it (with the expected answer when known)."""

    image: Path
    question: str
    answer: str | None = None
    needs_crop: bool | None = None


@dataclass
class RunView:
    """Everything the page shows for one question; ``status`` is always set, the rest once answered."""

    status: str
    ok: bool = False
    answer: str = ""
    ledger: str = ""
    timings: str = ""
    comparison: str = ""
    lowres: Image.Image | None = None
    overlay: Image.Image | None = None
    crops: list[tuple[Image.Image, str]] = field(default_factory=list)
    result: CropResult | None = None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gallery_examples(examples_dir: Path | None = EXAMPLES_DIR) -> list[Example]:
    """Example questions for the gallery: the shipped demo images and every image in ``examples_dir``.

    Questions come from a sidecar ``NAME.json`` (a list of ``{"question", "answer", "needs_crop"}``) when
    there is one, else from the demo's questions for a copy of a demo image, else a generic question. Each demo
    image is listed once, under its ``examples/images`` name when the checkout has it (an installed package
    has only the assets).
    """
    by_digest: dict[str, tuple[Path, list[Mapping[str, Any]]]] = {}
    for image, q in demo_items():
        by_digest.setdefault(_digest(image), (image, []))[1].append(q)
    found: list[Example] = []
    seen: set[str] = set()
    paths = sorted(p for p in (examples_dir.iterdir() if examples_dir and examples_dir.is_dir() else ())
                   if p.suffix.lower() in _IMAGE_SUFFIXES)
    for path in paths:
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            questions = json.loads(sidecar.read_text())
        elif (digest := _digest(path)) in by_digest:
            questions = by_digest[digest][1]
            seen.add(digest)
        else:
            questions = [{"question": "What is written in this image?"}]
        found += [_example(path, q) for q in questions]
    unseen = [_example(image, q) for digest, (image, qs) in by_digest.items() if digest not in seen for q in qs]
    return found + unseen


def _example(path: Path, q: Mapping[str, Any]) -> Example:
    answer = q.get("answer")
    return Example(image=path, question=q["question"], answer=None if answer is None else str(answer),
                   needs_crop=q.get("needs_crop"))


#: What the page calls each failure, most specific class first (the first match wins).
_ERROR_LABELS: tuple[tuple[type[BaseException], str], ...] = (
    (ImageError, "Bad image"), (BackendTimeoutError, "Timed out"), (BackendSpecError, "Bad backend spec"),
    (BackendUnavailableError, "Backend unavailable"), (MissingExtraError, "Missing dependency"),
    (BackendError, "Backend error"), (CropSetError, "Bad crop set"), (AwaresError, "Error"),
    (ValueError, "Bad setting"),  # bad option values typed into the page (low-res spec, ...)
)


def describe_error(err: BaseException) -> str:
    """One line for the page: what kind of failure, the library's own message (it names the fix)."""
    for cls, label in _ERROR_LABELS:
        if isinstance(err, cls):
            return f"{label}: {err}"
    return f"Unexpected error ({type(err).__name__}): {err}; the server log has the details"


class BackendPool:
    """The page's backend menu: named choices, the embedded default model, or any spec a visitor types.

    Spec strings resolve through the process-wide backend cache (:func:`~awares_tool.backends.resolve_backend`),
    so a model loads once per process and is shared with everything else in it that names the same spec
    (``crop_on_demand`` calls, the MCP server); the pool keeps no models of its own. Named backend objects
    are used as they are.

    Args:
        named: Extra choices shown on the page, name -> backend object or spec string (``awares ui
            --backend SPEC`` adds the spec; tests add a :class:`ScriptedBackend`).
        resolver: Turns a spec (None for the default model) into a backend, caching it; injectable for tests.
        loaded: Whether a spec's backend is loaded already, without loading it (for the status line);
            default: the shared cache's answer, or "not yet" with an injected resolver.

    A failed load is not cached: the default model may appear while the page is up.
    """

    def __init__(self, named: Mapping[str, Any] | None = None, resolver: Callable[[Any], Any] = resolve_backend,
                 loaded: Callable[[Any], bool] | None = None):
        self._named = dict(named or {})
        self._resolver = resolver
        if loaded is None:  # an injected resolver has its own cache (or none): the shared one says nothing of it
            loaded = is_cached if resolver is resolve_backend else (lambda _spec: False)
        self._loaded = loaded

    def choices(self) -> list[str]:
        return [DEFAULT_CHOICE, *(n for n in self._named if n != DEFAULT_CHOICE)]

    def is_loaded(self, choice: str | None) -> bool:
        """Whether the choice's backend is ready (a named object always is); a malformed spec is not."""
        target = self.target(choice)
        if target is not None and not isinstance(target, str):
            return True
        try:
            return self._loaded(target)
        except AwaresError:
            return False

    def target(self, choice: str | None) -> Any:
        """What a page choice stands for: a backend object, a spec string, or None (the default model)."""
        key = (choice or "").strip() or DEFAULT_CHOICE
        target = self._named.get(key, key)
        return None if target in (DEFAULT_CHOICE, "default") else target

    def get(self, choice: str | None) -> VLMBackend:
        """The backend for a page choice: a named entry, the default model, or a spec typed by the user."""
        target = self.target(choice)
        return target if target is not None and not isinstance(target, str) else self._resolver(target)


def backend_hint(pool: BackendPool, choice: str | None) -> str:
    """A cheap status line for the chosen backend (never loads a model; a malformed spec is named at once)."""
    key = (choice or "").strip() or DEFAULT_CHOICE
    if pool.is_loaded(key):
        return f"Backend {key}: loaded."
    if key == DEFAULT_CHOICE and not (default_model_path() / "config.json").is_file():
        return (f"Backend unavailable: the embedded default model is missing at {default_model_path()}; "
                "type a backend spec such as transformers:/path/to/model, or start `awares ui --backend SPEC`.")
    target = pool.target(key)
    if isinstance(target, str):
        try:
            parse_backend_spec(target)
        except BackendSpecError as e:
            return describe_error(e)
    return f"Backend {key}: loads on the first question."


def check_upload(path: str | None, limits: ImageLimits | None = None) -> tuple[Image.Image | None, str]:
    """Open an uploaded (or example) file with the package's limits: a preview and a status line."""
    if not path:
        return None, "No image yet: upload one or pick an example below."
    try:
        src = open_image(path, limits=limits)
        preview = make_lowres_view(src, _PREVIEW_SIDE)
    except AwaresError as e:
        return None, describe_error(e)
    w, h = src.size
    return preview, f"Image ready: {Path(path).name}, {w}x{h} {src.format or ''}".rstrip() + ". Ask a question."


def _within(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` in a worker thread and give up waiting after ``timeout_s`` (the thread cannot be killed)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread below
            box["error"] = e

    worker = threading.Thread(target=target, name="awares-ui-call", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise BackendTimeoutError(
            f"{what} did not finish within {timeout_s:g} s; raise the time limit, or pick a smaller model "
            "(a model still busy with this question may delay the next one)"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def _choice(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if not value or value == MODEL_DEFAULT else value


@dataclass
class _Job:
    src: SourceImage
    question: str
    crop_set: str | None
    lowres: str | None
    timeout_s: float
    max_new_tokens: int


def _prepare(image_path: str | None, question: str | None, crop_set: str | None, lowres: str | None,
             timeout_s: float | None, max_new_tokens: int, limits: ImageLimits | None) -> _Job | RunView:
    if not image_path:
        return RunView("Upload an image or pick an example first.")
    if not (question or "").strip():
        return RunView("Type a question first.")
    if timeout_s is not None and timeout_s <= 0:
        return RunView(f"Bad setting: the time limit must be positive, got {timeout_s:g} s.")
    try:
        cs = _choice(crop_set)
        if cs is not None:
            get_crop_set(cs)  # fail before loading a model
        src = open_image(image_path, limits=limits)
    except (AwaresError, ValueError) as e:
        return RunView(describe_error(e))
    return _Job(src, (question or "").strip(), cs, _choice(lowres), float(timeout_s or 180.0), max_new_tokens)


def _load(pool: BackendPool, choice: str | None, job: _Job) -> Iterator[RunView | VLMBackend]:
    key = (choice or "").strip() or DEFAULT_CHOICE
    if not pool.is_loaded(key):
        yield RunView(f"Loading backend {key} (first use only)...")
    yield _within(lambda: pool.get(key), job.timeout_s, f"Loading backend {key}")


def _run(be: VLMBackend, job: _Job, mode: str) -> CropResult:
    settings = GenerationSettings(max_new_tokens=job.max_new_tokens, timeout_s=job.timeout_s)
    return _within(
        lambda: crop_on_demand(job.src, job.question, backend=be, mode=mode,  # type: ignore[arg-type]
                               crop_set=job.crop_set, lowres=job.lowres, settings=settings),
        job.timeout_s, f"The {mode} run on {getattr(be, 'name', 'the backend')}",
    )


def _view(res: CropResult, job: _Job, be: VLMBackend) -> RunView:
    """The finished view: the text panels plus the pictures (what the model saw, where it looked)."""
    src = job.src
    cs = get_crop_set(res.crop_set or None)
    if res.mode == "fullres":
        first = src.image
    else:
        card = getattr(be, "model_card", None)
        first = make_lowres_view(src, job.lowres if job.lowres is not None else (card.lowres if card else None))
    drawn = [n for n in res.regions if n != FULL_IMAGE and cs.has(n)]
    boxes = {n: b for r in res.requests for n, b in r.boxes.items()}
    title = f"{res.question} -> {res.answer.strip()}"
    if res.tokens.rtr is not None:
        title += f"  (RTR {res.tokens.rtr:.2f})"
    overlay = draw_overlay(src.image, cs, drawn, highlight=drawn, title=title)
    crops = [(src.crop(b), f"crop {n}: {b[2] - b[0]}x{b[3] - b[1]} px") for n, b in boxes.items()]
    fetched = len(res.regions)
    rtr = f", RTR {res.tokens.rtr:.3f}" if res.tokens.rtr is not None else ""
    status = (f"Done: {res.mode} answered in {res.wall_s:.2f} s with {fetched} crop(s){rtr}."
              if res.answered else f"Done, but the model gave no final answer ({res.wall_s:.2f} s).")
    return RunView(status=status, ok=res.answered, answer=answer_markdown(res), ledger=ledger_markdown(res),
                   timings=timings_markdown(res), lowres=first, overlay=overlay, crops=crops, result=res)


def ask(
    pool: BackendPool,
    image_path: str | None,
    question: str | None,
    *,
    backend: str | None = None,
    crop_set: str | None = None,
    mode: str = "awares",
    lowres: str | None = None,
    timeout_s: float | None = 180.0,
    max_new_tokens: int = 128,
    limits: ImageLimits | None = None,
) -> Iterator[RunView]:
    """Answer one question: yields progress views, then the finished (or failed) view last."""
    if mode not in MODES:
        yield RunView(f"Bad setting: mode must be one of {', '.join(MODES)}, got {mode!r}.")
        return
    job = _prepare(image_path, question, crop_set, lowres, timeout_s, max_new_tokens, limits)
    if isinstance(job, RunView):
        yield job
        return
    try:
        be: Any = None
        for step in _load(pool, backend, job):
            if isinstance(step, RunView):
                yield step
            else:
                be = step
        yield RunView(f"Asking {getattr(be, 'name', 'the model')} ({mode})...")
        res = _run(be, job, mode)
        yield _view(res, job, be)
    except Exception as e:  # noqa: BLE001 - every failure becomes a message on the page
        log.warning("ui question failed: %s", e, exc_info=not isinstance(e, AwaresError))
        yield RunView(describe_error(e))


def compare(
    pool: BackendPool,
    image_path: str | None,
    question: str | None,
    *,
    backend: str | None = None,
    crop_set: str | None = None,
    lowres: str | None = None,
    timeout_s: float | None = 180.0,
    max_new_tokens: int = 128,
    limits: ImageLimits | None = None,
) -> Iterator[RunView]:
    """Side by side: ``fullres`` then ``awares`` on the same question; the last view holds the AwaRes run's
    pictures and a ``comparison`` table of both answers, costs and times."""
    job = _prepare(image_path, question, crop_set, lowres, timeout_s, max_new_tokens, limits)
    if isinstance(job, RunView):
        yield job
        return
    done: list[CropResult] = []
    try:
        be: Any = None
        for step in _load(pool, backend, job):
            if isinstance(step, RunView):
                yield step
            else:
                be = step
        for i, mode in enumerate(("fullres", "awares")):
            yield RunView(f"Side by side {i + 1}/2: asking {getattr(be, 'name', 'the model')} ({mode})...",
                          comparison=comparison_markdown(done) if done else "")
            done.append(_run(be, job, mode))
        view = _view(done[-1], job, be)
        full, aw = done
        view.status = f"Done: full resolution {full.wall_s:.2f} s, AwaRes {aw.wall_s:.2f} s."
        view.comparison = comparison_markdown(done)
        yield view
    except Exception as e:  # noqa: BLE001 - every failure becomes a message on the page
        log.warning("ui comparison failed: %s", e, exc_info=not isinstance(e, AwaresError))
        yield RunView(describe_error(e), comparison=comparison_markdown(done) if done else "")
