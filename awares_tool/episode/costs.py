"""What each choice of the model costs for one image: the token report behind ``awares tokens``.

A model that sees the low-res view can answer, or fetch any region of the crop set; this module prices
every one of those choices in visual tokens for a model family, with the RTR of each. It stands above
crops, images (the low-res policy) and tokens, which it combines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from awares_tool.crops import FULL_IMAGE, get_crop_set
from awares_tool.episode.episode import first_view_size
from awares_tool.episode.ledger import CropLedger, ShownImage
from awares_tool.images.lowres import capped_size, parse_lowres
from awares_tool.tokens import TokenFamily, get_family, rtr
from awares_tool.tokens.families import _check_size

__all__ = ["TokenReport", "token_report", "oracle_rtr"]


class TokenReport(BaseModel):
    """Visual tokens of an image at full resolution, as the low-res view and per crop, with RTRs.

    ``full`` is what the model spends on the whole image (after its pixel cap), the baseline of every RTR
    here; ``full_native`` what the image would cost at native resolution, were there no cap.
    """

    model_config = ConfigDict(frozen=True)

    family: str
    image_size: tuple[int, int]
    full: int
    full_native: int
    lowres_size: tuple[int, int]
    lowres: int
    crops: dict[str, int]
    rtr_lowres: float
    rtr_with_crop: dict[str, float]  # (lowres + that crop) / full


def token_report(
    width: int,
    height: int,
    family: str | TokenFamily,
    *,
    crop_set: Any = "awares9",
    lowres: Any = None,
) -> TokenReport:
    """Token costs of every choice the model can make for one image (powers ``awares tokens``).

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        family: Family name or instance.
        crop_set: A crop-set name/spec for ``awares_tool.crops.get_crop_set`` or a crop-set object.
        lowres: A low-res policy or spec for ``awares_tool.images.lowres.parse_lowres``; ``None`` means
            that module's default (the official halving), applied to what the model sees at full resolution
            (above its pixel cap, the capped view: see :func:`awares_tool.episode.episode.first_view_size`).
    """
    fam = family if isinstance(family, TokenFamily) else get_family(family)
    _check_size(width, height)
    cs = get_crop_set(crop_set)
    policy = parse_lowres(lowres)
    full = fam.count(width, height)
    cap = _cap(fam)
    lw, lh = first_view_size((width, height), policy, model_max_pixels=cap)
    low = fam.count(lw, lh)
    crops = {name: fam.count(x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in cs.boxes(width, height).items()}
    return TokenReport(
        family=fam.name,
        image_size=(width, height),
        full=full,
        full_native=_uncapped(fam).count(width, height) if cap and width * height > cap else full,
        lowres_size=(lw, lh),
        lowres=low,
        crops=crops,
        rtr_lowres=rtr(low, full),
        rtr_with_crop={name: rtr(low + n, full) for name, n in crops.items()},
    )


def oracle_rtr(size: tuple[int, int], regions: Sequence[str], family: str | TokenFamily | None = None, *,
               counter: Callable[[int, int], int] | None = None, crop_set: Any = "awares9", lowres: Any = None,
               model_max_pixels: int | None = None, crop_max_pixels: int | None = None) -> float | None:
    """RTR of an episode whose model asks for exactly ``regions`` (none: it answers from the first view).

    The cost of the oracle policy: what a perfect crop decision spends on this image. Computed from sizes
    alone (nothing is decoded), with the same first view, crop geometry and caps as a real
    :class:`~awares_tool.episode.episode.CropEpisode`.

    Args:
        size: ``(width, height)`` of the original image.
        regions: The target regions (``[]``: no crop).
        family: Token family; its counter and pixel cap are used unless given below.
        counter: ``(w, h) -> tokens`` of the model (e.g. a backend's ``count_image_tokens``).
        crop_set: The crop set of the region names.
        lowres: The low-res policy spec.
        model_max_pixels: The model's pixel cap (default: the family's).
        crop_max_pixels: The episode's cap on every image shown (``CropEpisode.max_image_pixels``).
    """
    fam = None if family is None else (family if isinstance(family, TokenFamily) else get_family(family))
    count = counter or (fam.count if fam is not None else None)
    if count is None:
        raise ValueError("oracle_rtr needs a token family or a counter")
    cap = model_max_pixels if model_max_pixels is not None else (_cap(fam) if fam is not None else None)
    cs = get_crop_set(crop_set)
    w, h = size
    ledger = CropLedger(size, counter=count)
    first = capped_size(first_view_size(size, lowres, model_max_pixels=cap), crop_max_pixels)
    ledger.add(ShownImage(kind="first_view", box=(0, 0, w, h), size=first))
    for name in regions:
        box = (0, 0, w, h) if name == FULL_IMAGE else cs.box(name, w, h)
        sent = capped_size((box[2] - box[0], box[3] - box[1]), crop_max_pixels)
        ledger.add(ShownImage(kind="crop", name=name, box=box, size=sent, round=1))
    return ledger.rtr


def _cap(family: TokenFamily) -> int | None:
    cap = getattr(family, "max_pixels", None)
    return cap if isinstance(cap, int) else None


def _uncapped(family: TokenFamily) -> TokenFamily:
    return dataclasses.replace(family, max_pixels=10**13)  # type: ignore[type-var]
