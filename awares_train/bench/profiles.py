"""Profiles: the model a benchmark is generated for, which fixes image sizes and text sizes.

Whether a crop is needed depends on who reads the image: a 7B Qwen2.5-VL reads 9 px digits that the
package's 4.5M-parameter model cannot, and the pixel cap above which a processor shrinks the image differs
too. A :class:`BenchProfile` holds everything the generator needs about its reader: the token family and
pixel cap (to know what each view really shows), the readability threshold in pixels of rendered digit
height, the image sizes to draw, and which answer vocabulary it can produce (``rich``: names, phrases,
decimals; ``tiny``: digit codes, colour and shape words, small counts).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from awares_tool.tokens import QwenFamily

__all__ = ["Aspect", "BenchProfile", "PROFILES", "get_profile"]

Aspect = tuple[str, float]
"""A named aspect ratio, width / height."""

#: Aspect ratios drawn per item kind: documents are mostly portrait pages, charts and scenes landscape,
#: and every kind gets some of each so that the shape of an image says little about its kind.
ASPECTS: dict[str, tuple[Aspect, ...]] = {
    "document": (("a4-portrait", 1 / 1.414), ("a4-portrait", 1 / 1.414), ("letter-portrait", 8.5 / 11),
                 ("tall", 1 / 2.2), ("square", 1.0), ("4:3", 4 / 3)),
    "chart": (("4:3", 4 / 3), ("16:9", 16 / 9), ("16:9", 16 / 9), ("square", 1.0), ("3:4", 3 / 4),
              ("a4-landscape", 1.414)),
    "scene": (("4:3", 4 / 3), ("4:3", 4 / 3), ("16:9", 16 / 9), ("square", 1.0), ("3:4", 3 / 4),
              ("tall", 1 / 2.2)),
}


class BenchProfile(BaseModel):
    """Sizes and readability of a benchmark generated for one model.

    The threshold is on **digit height** (the pixel height of ``0``-``9`` in Pillow's embedded font, about
    0.72 of the font size) in the image the model actually receives, after its processor's resize.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: str = Field("qwen2.5-vl", description="Token family the sizes and RTRs are computed for.")
    patch: int = Field(14, ge=1, description="ViT patch side of the family (Qwen2.5-VL: 14).")
    merge: int = Field(2, ge=1, description="Patches merged per token side (Qwen2.5-VL: 2).")
    min_pixels: int = Field(32 * 28 * 28, ge=1, description="Processor minimum pixels.")
    max_pixels: int = Field(1_605_632, ge=1, description="Processor maximum pixels: the pixel cap.")
    lowres_factor: float = Field(0.5, gt=0, le=1, description="Low-res view scale per side (official: 0.5).")
    threshold_px: float = Field(8.0, gt=0, description="Digit height (px, in what the model sees) it reads.")
    margin: float = Field(1.15, ge=1.0, description="Readable means >= threshold*margin, unreadable < threshold/margin.")
    min_unreadable: float = Field(0.4, gt=0, lt=1, description="Smallest unreadable text, times the threshold.")
    max_readable: float = Field(2.5, gt=1, description="Largest readable text in the low-res view, times the threshold.")
    min_side: int = Field(448, ge=112, description="Shortest long side of an image.")
    max_side: int = Field(4032, ge=112, description="Longest long side of an image.")
    max_image_pixels: int | None = Field(None, description="Upper bound on width*height (None: none).")
    vocabulary: Literal["rich", "tiny"] = "rich"
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> "BenchProfile":
        if self.max_side < self.min_side:
            raise ValueError(f"max_side ({self.max_side}) must be >= min_side ({self.min_side})")
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) must be >= min_pixels ({self.min_pixels})")
        return self

    def token_family(self) -> QwenFamily:
        """The family with this profile's pixel limits (what the processor resizes to, and token counts)."""
        return QwenFamily(name=self.family, patch=self.patch, merge=self.merge, min_pixels=self.min_pixels,
                          max_pixels=self.max_pixels)

    @property
    def readable_px(self) -> float:
        """Digit height at which an item counts as answerable (``threshold * margin``)."""
        return self.threshold_px * self.margin

    @property
    def unreadable_px(self) -> float:
        """Digit height under which text counts as unreadable (``threshold / margin``)."""
        return self.threshold_px / self.margin


PROFILES: dict[str, BenchProfile] = {
    "qwen2.5-vl": BenchProfile(
        name="qwen2.5-vl",
        description=(
            "Qwen2.5-VL with the AwaRes pixel cap (1,605,632 px = 2048 tokens); images 448 px to 4032x3024; "
            "digits read from 8 px (a 28 px token then spans about three digits)."
        ),
    ),
    "tiny": BenchProfile(
        name="tiny",
        min_pixels=56 * 56,
        max_pixels=448 * 448,
        threshold_px=16.0,
        min_unreadable=0.5,
        max_readable=1.5,
        min_side=224,
        max_side=896,
        max_image_pixels=4 * 448 * 448,
        vocabulary="tiny",
        description=(
            "The embedded 4.5M-parameter model: sees at most 448x448 (256 tokens), reads 3-digit codes from "
            "about 16 px digit height (docs/tiny_model.md: 0.45 at 14 px, 0.85 at 17, 0.99 at 20); images "
            "224 to 896 px, never over 4x the cap so the half-size view stays within it."
        ),
    ),
}
"""Built-in profiles by name."""


def get_profile(name: str | BenchProfile, **overrides: object) -> BenchProfile:
    """A built-in profile by name (``qwen2.5-vl``, ``tiny``), optionally with settings overridden.

    Raises:
        ValueError: unknown profile name (the message lists the known ones) or an invalid override.
    """
    if isinstance(name, BenchProfile):
        base = name
    else:
        key = name.strip().lower().replace("_", "-")
        key = {"qwen25-vl": "qwen2.5-vl", "qwen2.5vl": "qwen2.5-vl", "qwen": "qwen2.5-vl"}.get(key, key)
        if key not in PROFILES:
            raise ValueError(f"unknown benchmark profile {name!r}; choose one of {', '.join(PROFILES)}")
        base = PROFILES[key]
    if not overrides:
        return base
    return BenchProfile.model_validate({**base.model_dump(), **overrides})
