"""From a request as found to a :class:`CropRequest`: names checked, policies applied.

Separate from the form detection in ``parsing`` because every form (text, function call,
``<tool_call>``, zoom box) ends in the same checks: canonical names, duplicates, unknown names,
``max_crops`` and the box conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from awares_tool.crops import FULL_IMAGE, CropSet, snap_box
from awares_tool.errors import MalformedRequestError, TooManyCropsError, UnknownRegionError
from awares_tool.protocol.schema import CropRequest, PixelBox, RequestForm
from awares_tool.protocol.zoom import BboxUnits, to_pixel_box

__all__ = [
    "FoundRequest",
    "OnUnknown",
    "OnTooMany",
    "BboxMode",
    "build_request",
    "canonical_name",
    "check_options",
]

logger = logging.getLogger(__name__)

OnUnknown = Literal["error", "drop", "full_image"]
OnTooMany = Literal["error", "truncate", "full_image"]
BboxMode = Literal["crop", "snap"]


@dataclass
class FoundRequest:
    """A request as found, before names are checked and policies applied."""

    form: RequestForm
    raw: str
    preamble: str = ""
    names: list[str] = field(default_factory=list)
    boxes: list[Any] = field(default_factory=list)
    snap: bool = False  # boxes of a computer-use zoom: always snapped to the crop set
    token_budget: int | None = None


def canonical_name(name: str, crop_set: CropSet, lookup: dict[str, str]) -> str | None:
    """The crop set's spelling of ``name``: exact, else a case-insensitive match (``'ALL'``)."""
    name = name.strip()
    if crop_set.has(name):
        return name
    return lookup.get(name.casefold())


def _dedupe(items: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _apply_max(
    items: list[Any], max_crops: int | None, on_too_many: OnTooMany
) -> tuple[list[Any], str | None]:
    """Apply ``max_crops``; returns the kept items (``[]`` for a full-image fallback) and the fallback."""
    if max_crops is None or len(items) <= max_crops:
        return items, None
    if on_too_many == "error":
        raise TooManyCropsError(
            f"{len(items)} crops requested ({items[:10]!r}) but at most {max_crops} are allowed per "
            "request; request fewer regions"
        )
    if on_too_many == "truncate":
        return items[:max_crops], "truncated"
    return [], "full_image"


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def check_options(
    on_unknown: str,
    on_too_many: str,
    bbox_mode: str,
    max_crops: int | None,
    bbox_units: BboxUnits | None,
    image_size: tuple[int, int] | None,
) -> None:
    """Refuse impossible parser settings up front (programmer mistakes, so ``ValueError``)."""
    if on_unknown not in ("error", "drop", "full_image"):
        raise ValueError(f"on_unknown must be 'error', 'drop' or 'full_image', got {on_unknown!r}")
    if on_too_many not in ("error", "truncate", "full_image"):
        raise ValueError(f"on_too_many must be 'error', 'truncate' or 'full_image', got {on_too_many!r}")
    if bbox_mode not in ("crop", "snap"):
        raise ValueError(f"bbox_mode must be 'crop' or 'snap', got {bbox_mode!r}")
    if max_crops is not None and (not _positive_int(max_crops)):
        raise ValueError(f"max_crops must be a positive int or None, got {max_crops!r}")
    if bbox_units is not None and bbox_units not in ("pixels", "norm1000", "norm1"):
        raise ValueError(f"bbox_units must be 'pixels', 'norm1000', 'norm1' or None, got {bbox_units!r}")
    if bbox_units is not None and image_size is None:
        raise ValueError("bbox_units needs image_size=(width, height) of the original image")
    if image_size is not None and not (
        isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(map(_positive_int, image_size))
    ):
        raise ValueError(f"image_size must be (width, height) positive ints, got {image_size!r}")


def build_request(
    found: FoundRequest,
    crop_set: CropSet,
    lookup: dict[str, str],
    max_crops: int | None,
    on_unknown: OnUnknown,
    on_too_many: OnTooMany,
    bbox_units: BboxUnits | None,
    image_size: tuple[int, int] | None,
    bbox_mode: BboxMode,
) -> CropRequest:
    """Check the names of ``found``, convert its boxes and apply the policies (see ``parse_reply``).

    Args:
        found: The request as the form detector found it.
        crop_set: The crop set the names refer to.
        lookup: Case-folded name -> the set's spelling, for case-insensitive matching.
        max_crops: As in ``parse_reply``; so are ``on_unknown``, ``on_too_many``, ``bbox_units``,
            ``image_size`` and ``bbox_mode``.

    Returns:
        The final request.

    Raises:
        MalformedRequestError: No region at all, a bad box, or regions mixed with boxes in crop mode.
        UnknownRegionError: An unknown name with ``on_unknown="error"``.
        TooManyCropsError: Too many crops with ``on_too_many="error"``.
    """
    common = {"form": found.form, "raw": found.raw, "preamble": found.preamble, "token_budget": found.token_budget}
    if found.snap:
        bbox_mode = "snap"
    names = list(found.names)
    if found.boxes:
        pixel: list[PixelBox] = _dedupe([to_pixel_box(b, bbox_units, image_size) for b in found.boxes])
        if bbox_mode == "crop":
            if names:
                raise MalformedRequestError(
                    "one reply mixes named regions and zoom boxes; request either regions or boxes"
                )
            kept, fallback = _apply_max(pixel, max_crops, on_too_many)
            if fallback == "full_image":
                return CropRequest(regions=[FULL_IMAGE], fallback="full_image", **common)
            return CropRequest(regions=[], boxes=kept, fallback=fallback, **common)
        w, h = image_size  # type: ignore[misc]  # guaranteed by to_pixel_box
        names += [snap_box(b, crop_set, w, h) for b in pixel]
    if not names:
        raise MalformedRequestError("crop request with no regions; name at least one, e.g. GET_CROPS: ['0']")
    valid: list[str] = []
    invalid: list[str] = []
    for n in names:
        c = canonical_name(n, crop_set, lookup)
        (valid if c is not None else invalid).append(c if c is not None else n)
    valid, invalid = _dedupe(valid), _dedupe(invalid)
    if invalid:
        if on_unknown == "error":
            what = "region" if len(invalid) == 1 else "regions"
            raise UnknownRegionError(
                f"unknown {what} {', '.join(repr(n[:40]) for n in invalid[:10])} for crop set {crop_set.name!r}; "
                "valid regions: " + ", ".join(repr(n) for n in crop_set.region_names())
            )
        if on_unknown == "full_image" or not valid:
            logger.debug("unknown regions %r: requesting the full image", invalid[:10])
            return CropRequest(regions=[FULL_IMAGE], invalid=invalid, fallback="full_image", **common)
    kept, fallback = _apply_max(valid, max_crops, on_too_many)
    if fallback == "full_image":
        return CropRequest(regions=[FULL_IMAGE], invalid=invalid, fallback="full_image", **common)
    return CropRequest(regions=kept, invalid=invalid, fallback=fallback, **common)
