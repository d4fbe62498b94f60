"""Free-form zoom boxes from other models' tools, turned into pixel boxes of the original image.

Models trained for other zoom tools can drive awares without retraining. Accepted shapes (the
parser finds them; this module validates and converts the coordinates):

- ``image_zoom_in_tool`` calls (Qwen-Agent for Qwen3-VL, DeepEyes): ``{"name": "image_zoom_in_tool",
  "arguments": {"bbox_2d": [x1, y1, x2, y2], "label": "..."}}``, as a dict, a ``<tool_call>`` block
  or JSON text; ``zoom_in`` is accepted as the same tool. ``"bbox"`` is an alias of ``"bbox_2d"``.
- A bare ``{"bbox_2d": [...]}`` passed as a dict (a structured call without a name).
- Mini-o3 style ``<grounding>{"bbox_2d": [...], "source": ...}</grounding>`` and the generic
  ``<zoom>[x1, y1, x2, y2]</zoom>`` (a list, or an object with ``bbox_2d``) in text.
- The computer-use ``zoom`` action of the big APIs' agents: ``{"name": "computer", "arguments": {"action": "zoom",
  "region": [x1, y1, x2, y2]}}``; such a box is snapped to the crop set (the region with the best IoU), so the
  cost stays that of a crop the set defines. An optional ``token_budget`` (also ``max_tokens``) argument of any
  zoom call caps the visual tokens of what is sent back.

A bare ``{"bbox_2d": ...}`` JSON *text* is deliberately not a request: it is exactly what
Qwen2.5-VL writes as the answer to a grounding question.

The coordinate system differs between those models (pixels of the input, 0-1000, 0-1) and is not
written in the call, so the caller declares it (``bbox_units``); guessing from the magnitudes
would silently mis-crop small images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from awares_tool.protocol.brief import brief
from awares_tool.errors import MalformedRequestError
from awares_tool.protocol.schema import PixelBox

__all__ = ["BboxUnits", "BBOX_KEYS", "raw_boxes", "to_pixel_box"]

BboxUnits = Literal["pixels", "norm1000", "norm1"]

BBOX_KEYS = ("bbox_2d", "bbox", "region")
"""Argument keys that hold the box, in order of preference."""

_SCALE = {"pixels": None, "norm1000": 1000.0, "norm1": 1.0}


def raw_boxes(args: Any) -> list[list[Any]]:
    """The box or boxes in a zoom call's arguments (or a bare list), unvalidated.

    Args:
        args: The call's arguments: a mapping with ``bbox_2d``/``bbox``, or a list that is one box
            ``[x1, y1, x2, y2]`` or a list of such boxes.

    Returns:
        A non-empty list of raw boxes.

    Raises:
        MalformedRequestError: No box is present.
    """
    value = args
    if isinstance(args, Mapping):
        value = next((args[k] for k in BBOX_KEYS if k in args), None)
        if value is None:
            raise MalformedRequestError(
                f"zoom call has no 'bbox_2d' argument (got keys {sorted(map(str, args))[:10]}); "
                "pass the box as {\"bbox_2d\": [x1, y1, x2, y2]}"
            )
    if isinstance(value, (list, tuple)) and value and all(isinstance(b, (list, tuple)) for b in value):
        return [list(b) for b in value]
    if isinstance(value, (list, tuple)):
        return [list(value)]
    raise MalformedRequestError(f"zoom box must be a list [x1, y1, x2, y2], got {brief(value, 200)}")


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise MalformedRequestError(f"zoom box coordinate {brief(v, 50)} is not a number")
    try:
        x = float(v)
    except (ValueError, OverflowError) as e:
        raise MalformedRequestError(f"zoom box coordinate {brief(v, 50)} is not a number") from e
    if not math.isfinite(x):
        raise MalformedRequestError(f"zoom box coordinate {brief(v, 50)} is not finite")
    return x


def to_pixel_box(box: Any, units: BboxUnits | None, image_size: tuple[int, int] | None) -> PixelBox:
    """Validate one zoom box and convert it to a pixel box of the original image.

    The box is widened to whole pixels (floor of the start, ceil of the end) so the crop keeps
    everything the model pointed at, then clamped to the image.

    Args:
        box: ``[x1, y1, x2, y2]`` as the model wrote it.
        units: The coordinate system the model uses; ``None`` is refused (it is never guessed).
        image_size: ``(width, height)`` of the original image.

    Returns:
        ``(left, top, right, bottom)`` in pixels, with ``right > left`` and ``bottom > top``.

    Raises:
        MalformedRequestError: ``units`` is None, the box is not four finite numbers, it is
            reversed or empty, or it lies entirely outside the image.
    """
    if units is None:
        raise MalformedRequestError(
            f"the reply asks to zoom into a box {brief(box, 100)} but its coordinate units are unknown; "
            "pass bbox_units='pixels', 'norm1000' or 'norm1' (and image_size) to parse_reply"
        )
    if units not in _SCALE:
        raise ValueError(f"bbox_units must be 'pixels', 'norm1000' or 'norm1', got {units!r}")
    if image_size is None:
        raise ValueError("parse_reply needs image_size=(width, height) to convert zoom boxes")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise MalformedRequestError(f"zoom box must be 4 numbers [x1, y1, x2, y2], got {brief(box, 200)}")
    x1, y1, x2, y2 = (_number(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise MalformedRequestError(
            f"zoom box {list(box)!r} is reversed or empty: need x1 < x2 and y1 < y2 in [x1, y1, x2, y2]"
        )
    w, h = image_size
    scale = _SCALE[units]
    if scale is not None:
        x1, x2 = x1 * w / scale, x2 * w / scale
        y1, y2 = y1 * h / scale, y2 * h / scale
    left = min(max(math.floor(x1), 0), w)
    top = min(max(math.floor(y1), 0), h)
    right = min(max(math.ceil(x2), 0), w)
    bottom = min(max(math.ceil(y2), 0), h)
    if right <= left or bottom <= top:
        raise MalformedRequestError(
            f"zoom box {list(box)!r} ({units}) lies outside the {w}x{h} image; check bbox_units"
        )
    return (left, top, right, bottom)
