"""Short, safe reprs of untrusted values for error messages.

A model's reply can be anything, including a structure nested deeper than Python can ``repr`` (a RecursionError)
or megabytes long; :func:`brief` bounds both with the standard library's :mod:`reprlib`.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["brief"]

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6


def brief(value: Any, limit: int = 120) -> str:
    """``repr(value)``, at most ``limit`` characters and three levels deep.

    >>> brief([[[[["deep"]]]]])
    '[[[[...]]]]'
    """
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):  # an object whose own __repr__ recurses or fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
