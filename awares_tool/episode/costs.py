"""What each choice of the model costs for one image: the token report behind ``awares tokens``.

A model that sees the low-res view can answer, or fetch any region of the crop set; this module prices
every one of those choices in visual tokens for a model family, with the RTR of each. It stands above
crops, images (the low-res policy) and tokens, which it combines.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from awares_tool.crops import get_crop_set
from awares_tool.images.lowres import lowres_size, parse_lowres
from awares_tool.tokens import TokenFamily, get_family, rtr
from awares_tool.tokens.families import _check_size

__all__ = ["TokenReport", "token_report"]


class TokenReport(BaseModel):
    """Visual tokens of an image at full resolution, as the low-res view and per crop, with RTRs."""

    model_config = ConfigDict(frozen=True)

    family: str
    image_size: tuple[int, int]
    full: int
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
            that module's default (the official halving).
    """
    fam = family if isinstance(family, TokenFamily) else get_family(family)
    _check_size(width, height)
    cs = get_crop_set(crop_set)
    policy = parse_lowres(lowres)
    full = fam.count(width, height)
    lw, lh = lowres_size(policy, width, height)
    low = fam.count(lw, lh)
    crops = {name: fam.count(x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in cs.boxes(width, height).items()}
    return TokenReport(
        family=fam.name,
        image_size=(width, height),
        full=full,
        lowres_size=(lw, lh),
        lowres=low,
        crops=crops,
        rtr_lowres=rtr(low, full),
        rtr_with_crop={name: rtr(low + n, full) for name, n in crops.items()},
    )
