"""``awares ui``: a web page to watch the model look where it matters (extra ``ui``: Gradio).

:mod:`~awares_tool.ui.callbacks` holds the page's logic as plain functions (no Gradio needed);
:mod:`~awares_tool.ui.app` builds and serves the page and is the only module that imports Gradio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch_app", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy: importing awares_tool.ui (or its callbacks) must not import Gradio.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
