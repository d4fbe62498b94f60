"""Visual-token accounting for common VLM families, without loading a model.

RTR (retained token ratio) is the cost metric of AwaRes: the visual tokens a model actually
processed (low-res view plus every crop it fetched) over the tokens of the full image at native
resolution. Counting those tokens must not need torch, transformers or the model, so this package
re-implements each family's resize rule in plain Python. Every rule mirrors the code of
**transformers 5.24.0**; the function mirrored is named in a comment next to each copy, and
``tests/test_tokens_vs_processors.py`` checks the counts against the real processors.

Modules: :mod:`.rules` (the mirrored resize rules, ``(height, width)`` like transformers) and
:mod:`.families` (the families, the registry and :func:`rtr`). The report of every choice's cost for
one image is :func:`awares_tool.episode.costs.token_report`.
"""

from __future__ import annotations

import warnings
from typing import Any

from awares_tool.tokens.families import (
    FAMILY_NAMES,
    GenericFamily,
    IdeficsFamily,
    LlavaFamily,
    LlavaNextFamily,
    QwenFamily,
    TokenFamily,
    count_visual_tokens,
    get_family,
    rtr,
)
from awares_tool.tokens.rules import select_best_resolution, smart_resize

__all__ = [
    "FAMILY_NAMES",
    "GenericFamily",
    "IdeficsFamily",
    "LlavaFamily",
    "LlavaNextFamily",
    "QwenFamily",
    "TokenFamily",
    "count_visual_tokens",
    "get_family",
    "rtr",
    "select_best_resolution",
    "smart_resize",
]

_MOVED = {"token_report": "awares_tool.episode.costs", "TokenReport": "awares_tool.episode.costs"}


def __getattr__(name: str) -> Any:
    """``token_report``/``TokenReport`` moved to :mod:`awares_tool.episode.costs` (0.2); old imports still work."""
    if name in _MOVED:
        import importlib

        warnings.warn(f"awares_tool.tokens.{name} moved to {_MOVED[name]}.{name}; import it from there "
                      "(the old name goes in the next release)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
