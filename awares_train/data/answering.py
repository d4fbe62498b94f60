"""Answer a question twice: from the low-res view and from the full image.

Both answers go through :func:`awares_tool.episode.loop.crop_on_demand` in its ``lowres`` and ``fullres``
baseline modes, so the views are exactly those of evaluation (same low-res policy, same capping).
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from awares_tool.backends.base import GenerationSettings
from awares_tool.errors import BackendError
from awares_tool.episode.loop import crop_on_demand

__all__ = ["TwoAnswers", "answer_twice", "load_backend"]


class TwoAnswers(BaseModel):
    """The two answers, and the views' sizes (for the record and for cost)."""

    lowres: str
    fullres: str
    lowres_size: tuple[int, int]
    image_size: tuple[int, int]


def answer_twice(image: Any, question: str, *, backend: Any, crop_set: Any = None, lowres: Any = None,
                 settings: GenerationSettings | None = None, crop_max_pixels: int | None = None) -> TwoAnswers:
    """Answer ``question`` from the low-res view, then from the full image.

    Args:
        image: Anything :func:`awares_tool.images.open_image` accepts (a ``SourceImage`` avoids re-decoding).
        question: The question.
        backend: A backend object (spec strings work too, but resolve them once outside a loop).
        crop_set: Crop set of the run (used only by the protocol prompt; lowres/fullres modes do not crop).
        lowres: Low-res policy spec.
        settings: Decoding settings (greedy by default).
        crop_max_pixels: Cap of the full image's pixels, as in evaluation.

    Raises:
        BackendError: the backend failed or gave no answer.
    """
    kw: dict[str, Any] = {"backend": backend, "crop_set": crop_set, "lowres": lowres, "settings": settings,
                          "crop_max_pixels": crop_max_pixels}
    low = crop_on_demand(image, question, mode="lowres", **kw)
    full = crop_on_demand(image, question, mode="fullres", **kw)
    for name, res in (("low-res", low), ("full-res", full)):
        if not res.answered:
            raise BackendError(f"the backend gave no {name} answer to {question[:80]!r}: {res.answer[:80]!r}")
    return TwoAnswers(lowres=low.answer.strip(), fullres=full.answer.strip(), lowres_size=low.first_view_size,
                      image_size=low.image_size)


def load_backend(spec: Any) -> Any:
    """A backend from a spec: ``py:MODULE:ATTR`` (an object, or a factory called with no arguments)
    for custom and scripted backends, else anything :func:`awares_tool.backends.resolve_backend` takes.
    """
    from awares_tool.backends import resolve_backend

    if isinstance(spec, str) and spec.startswith("py:"):
        module, _, attr = spec[3:].partition(":")
        if not module or not attr:
            raise ValueError(f"backend spec {spec!r} must be py:MODULE:ATTR")
        obj = getattr(importlib.import_module(module), attr)
        if callable(obj) and not callable(getattr(obj, "generate", None)):
            obj = obj()
        elif isinstance(obj, type):
            obj = obj()
        return resolve_backend(obj)
    return resolve_backend(spec)  # None, "default" and "default?..." are the embedded model
