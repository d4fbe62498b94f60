"""Low-resolution views: how small the first, cheap look at the image is.

The model's first turn sees only a downscaled view; the policy here decides its size. The official
evaluation halves each side (:class:`ScalePolicy`, a quarter of the pixels and roughly of the visual
tokens); another published variant uses a fixed 512 px thumbnail (:class:`LongestSidePolicy`); and
:class:`TokenBudgetPolicy` picks the largest view that fits a model's visual-token budget, which is
what a deployment with a fixed cost target actually wants.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from awares_tool.errors import TokenCountError
from awares_tool.images.convert import to_rgb
from awares_tool.tokens import get_family

__all__ = [
    "ScalePolicy",
    "LongestSidePolicy",
    "TokenBudgetPolicy",
    "LowResPolicy",
    "parse_lowres",
    "lowres_size",
    "make_lowres_view",
    "cap_pixels",
    "capped_size",
]

logger = logging.getLogger(__name__)


class ScalePolicy(BaseModel):
    """Scale each side by ``factor`` (the official evaluation uses 0.5); never upscales."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["scale"] = "scale"
    factor: float = Field(default=0.5, gt=0.0, le=1.0)


class LongestSidePolicy(BaseModel):
    """Downscale so that the longer side is ``size`` pixels; smaller images stay as they are."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["longest_side"] = "longest_side"
    size: int = Field(default=512, ge=1)


class TokenBudgetPolicy(BaseModel):
    """The largest same-aspect view whose visual-token count for ``family`` is <= ``max_tokens``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["token_budget"] = "token_budget"
    family: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)


LowResPolicy = Annotated[ScalePolicy | LongestSidePolicy | TokenBudgetPolicy, Field(discriminator="kind")]
_POLICY_ADAPTER: TypeAdapter[Any] = TypeAdapter(LowResPolicy)

_ACCEPTED = (
    "None (halve each side), a scale factor in (0, 1] such as 0.5 / '0.5' / 'scale:0.5', "
    "a longest side in pixels such as 512 / '512px' / 'side:512', "
    "a token budget 'tokens:FAMILY:N' such as 'tokens:qwen2.5-vl:256', "
    "or a dict like {'kind': 'scale', 'factor': 0.5}"
)


def _from_number(value: float, spec: object) -> ScalePolicy | LongestSidePolicy:
    if 0 < value <= 1:
        return ScalePolicy(factor=float(value))
    if value > 1 and float(value).is_integer():
        return LongestSidePolicy(size=int(value))
    raise ValueError(f"invalid low-res spec {spec!r}: accepted forms are {_ACCEPTED}")


AnyPolicy = ScalePolicy | LongestSidePolicy | TokenBudgetPolicy


def parse_lowres(spec: str | float | int | dict | AnyPolicy | None) -> AnyPolicy:
    """Turn a user-facing low-res spec (CLI flag, config value) into a policy.

    Numbers in ``(0, 1]`` are scale factors and integers above 1 are a longest side in pixels.

    Raises:
        ValueError: the spec matches none of the accepted forms; the message lists them.
    """
    if spec is None:
        return ScalePolicy()
    if isinstance(spec, (ScalePolicy, LongestSidePolicy, TokenBudgetPolicy)):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"invalid low-res spec {spec!r}: accepted forms are {_ACCEPTED}")
    if isinstance(spec, (int, float)):
        return _from_number(spec, spec)
    if isinstance(spec, dict):
        try:
            return _POLICY_ADAPTER.validate_python(spec)
        except ValidationError as e:
            raise ValueError(f"invalid low-res spec {spec!r}: {e}; accepted forms are {_ACCEPTED}") from e
    if not isinstance(spec, str):
        raise ValueError(
            f"invalid low-res spec of type {type(spec).__name__}: accepted forms are {_ACCEPTED}"
        )
    text = spec.strip().lower()
    try:
        if text.startswith("scale:"):
            return ScalePolicy(factor=float(text[len("scale:") :]))
        if text.startswith(("side:", "longest_side:")):
            return LongestSidePolicy(size=int(text.split(":", 1)[1].removesuffix("px")))
        if text.startswith("tokens:"):
            family, _, n = text[len("tokens:") :].rpartition(":")
            return TokenBudgetPolicy(family=family, max_tokens=int(n))
        if text.endswith("px"):
            return LongestSidePolicy(size=int(text[:-2]))
        return _from_number(float(text), spec)
    except (ValueError, ValidationError) as e:
        raise ValueError(f"invalid low-res spec {spec!r}: accepted forms are {_ACCEPTED}") from e


@runtime_checkable
class _TokenFamily(Protocol):
    def count(self, width: int, height: int) -> int: ...


def _scaled(width: int, height: int, longest: int) -> tuple[int, int]:
    """Aspect-preserving size whose longer side is ``longest`` (shorter side rounded, >= 1)."""
    if width >= height:
        return longest, max(1, (height * longest + width // 2) // width)
    return max(1, (width * longest + height // 2) // height), longest


def _token_budget_size(policy: TokenBudgetPolicy, width: int, height: int) -> tuple[int, int]:
    family: _TokenFamily = get_family(policy.family)
    if family.count(width, height) <= policy.max_tokens:
        return width, height
    # Binary search on the integer longest side: the count grows (near-)monotonically with size.
    lo, hi = 1, max(width, height)  # count(lo) unknown, count(hi) > budget
    if family.count(*_scaled(width, height, lo)) > policy.max_tokens:
        raise TokenCountError(
            f"no view of a {width}x{height} image fits {policy.max_tokens} visual tokens for "
            f"{policy.family!r} (even a 1 px view costs {family.count(*_scaled(width, height, 1))}); "
            "raise max_tokens"
        )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if family.count(*_scaled(width, height, mid)) <= policy.max_tokens:
            lo = mid
        else:
            hi = mid
    return _scaled(width, height, lo)


def lowres_size(policy: Any, width: int, height: int) -> tuple[int, int]:
    """The ``(width, height)`` of the low-res view of a ``width`` x ``height`` image.

    ``policy`` is anything :func:`parse_lowres` accepts.
    """
    for label, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"image {label} must be a positive int, got {v!r}")
    policy = parse_lowres(policy)
    if isinstance(policy, ScalePolicy):
        # int(W * 0.5) == W // 2 exactly, matching the official code's halving.
        return max(1, int(width * policy.factor)), max(1, int(height * policy.factor))
    if isinstance(policy, LongestSidePolicy):
        if max(width, height) <= policy.size:
            return width, height
        return _scaled(width, height, policy.size)
    return _token_budget_size(policy, width, height)


def make_lowres_view(image: Any, policy: Any = None) -> Image.Image:
    """The low-res RGB view the model sees first.

    Args:
        image: A ``PIL.Image.Image``, or any object with ``.size`` and ``.resized(size)`` (such as
            ``awares_tool.images.SourceImage``, whose ``resized`` uses JPEG draft decoding so a
            huge JPEG is never fully decoded just to be shrunk).
        policy: Anything :func:`parse_lowres` accepts; ``None`` halves each side.

    Returns:
        A new RGB image of :func:`lowres_size`; transparency is flattened onto white and EXIF
        orientation applied (see :func:`awares_tool.images.to_rgb`).
    """
    if hasattr(image, "resized"):
        return to_rgb(image.resized(lowres_size(policy, *image.size)))
    rgb = to_rgb(image)  # upright first: an EXIF rotation swaps width and height
    size = lowres_size(policy, *rgb.size)
    if rgb.size == size:
        return rgb.copy() if rgb is image else rgb
    return rgb.resize(size, Image.Resampling.BICUBIC)


def capped_size(size: tuple[int, int], max_pixels: int | None, *, multiple: int = 1) -> tuple[int, int]:
    """The size :func:`cap_pixels` gives an image of ``size``, computed without an image.

    Aspect kept, ``width * height <= max_pixels``, both sides multiples of ``multiple`` (at least ``multiple``);
    a size within the cap (or no cap) is returned unchanged.

    Raises:
        ValueError: ``max_pixels`` is smaller than ``multiple ** 2``, so no size can satisfy both.
    """
    width, height = size
    if not max_pixels or width * height <= max_pixels:
        return width, height
    if multiple < 1 or max_pixels < 1:
        raise ValueError(f"max_pixels and multiple must be >= 1, got {max_pixels}, {multiple}")
    if multiple * multiple > max_pixels:
        raise ValueError(f"max_pixels={max_pixels} is below multiple**2={multiple * multiple}")
    s = math.sqrt(max_pixels / (width * height))
    new_w = max(multiple, math.floor(width * s / multiple) * multiple)
    new_h = max(multiple, math.floor(height * s / multiple) * multiple)
    while new_w * new_h > max_pixels:  # float noise or a side forced up to `multiple`
        if new_w >= new_h and new_w > multiple:
            new_w -= multiple
        else:
            new_h -= multiple
    return new_w, new_h


def cap_pixels(image: Image.Image, *, max_pixels: int, multiple: int = 1) -> Image.Image:
    """Downscale ``image`` (keeping its aspect ratio) so that ``width * height <= max_pixels``.

    Both sides of the result are multiples of ``multiple`` (28 for Qwen2/2.5-VL, whose processor
    would otherwise round them itself) and at least ``multiple``; like Qwen's ``smart_resize``, a
    side shorter than ``multiple`` is rounded up to it. Images already within the cap are returned
    unchanged (the same object). The size is :func:`capped_size`'s.

    Raises:
        ValueError: ``max_pixels`` is smaller than ``multiple ** 2``, so no size can satisfy both.
    """
    if multiple < 1 or max_pixels < 1:
        raise ValueError(f"max_pixels and multiple must be >= 1, got {max_pixels}, {multiple}")
    if multiple * multiple > max_pixels:
        raise ValueError(f"max_pixels={max_pixels} is below multiple**2={multiple * multiple}")
    new_size = capped_size(image.size, max_pixels, multiple=multiple)
    if new_size == image.size:
        return image
    logger.debug("cap_pixels: %dx%d -> %dx%d (max_pixels=%d)", *image.size, *new_size, max_pixels)
    return image.resize(new_size, Image.Resampling.BICUBIC)
