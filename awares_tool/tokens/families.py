"""The token families: how each VLM family turns an image of a given size into visual tokens.

Each family re-implements its processor's resize rule in plain Python (the rules mirrored from
transformers live in :mod:`awares_tool.tokens.rules`); this module holds the families and the registry.
All sizes are ``(width, height)``, as PIL takes them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from awares_tool.errors import TokenCountError
from awares_tool.tokens.rules import (
    _IDEFICS_MAX_IMAGE_SIZE,
    _rescale_to_max_len,
    _resize_for_vision_encoder,
    _scale_below_upper_bound,
    select_best_resolution,
    smart_resize,
)

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
]

logger = logging.getLogger(__name__)


def _check_size(width: int, height: int) -> None:
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise TokenCountError(
                f"image {label} must be at least 1 pixel, got {width}x{height}; "
                "pass the size of a non-empty image"
            )


class TokenFamily(ABC):
    """How one model family turns an image of a given size into visual tokens."""

    name: ClassVar[str]

    @abstractmethod
    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` the family's processor resizes an image of this size to."""

    @abstractmethod
    def count(self, width: int, height: int) -> int:
        """Visual tokens the language model sees for one image of ``width`` x ``height`` pixels."""


# --------------------------------------------------------------------------------------- Qwen-VL
@dataclass(frozen=True)
class QwenFamily(TokenFamily):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: dynamic resolution, one token per ``merge`` x ``merge`` patches.

    Tokens are ``(h / factor) * (w / factor)`` with ``factor = patch * merge`` after ``smart_resize``,
    i.e. ``image_grid_thw.prod() // merge**2`` as ``Qwen2VLProcessor.replace_image_token`` computes.
    """

    name: str = "qwen2.5-vl"  # type: ignore[misc]
    patch: int = 14
    merge: int = 2
    # 32*28*28 as the official AwaRes code sets it (transformers' class default is 56*56).
    min_pixels: int = 32 * 28 * 28
    # 1,605,632 = 2048*28*28, the budget of the AwaRes evaluation (transformers' default: 28*28*1280).
    max_pixels: int = 1_605_632

    def __post_init__(self) -> None:
        if self.patch < 1 or self.merge < 1 or self.min_pixels < 1:
            raise ValueError(f"patch, merge and min_pixels must be positive, got {self}")
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) must be >= min_pixels ({self.min_pixels})")

    @property
    def factor(self) -> int:
        return self.patch * self.merge

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        _check_size(width, height)
        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return w, h

    def count(self, width: int, height: int) -> int:
        w, h = self.resized_size(width, height)
        return (h // self.factor) * (w // self.factor)


# ------------------------------------------------------------------------------------- LLaVA-1.5
@dataclass(frozen=True)
class LlavaFamily(TokenFamily):
    """LLaVA-1.5: CLIP resizes the short side to ``image_size`` and centre-crops a square.

    Mirrors ``LlavaProcessor.replace_image_token``: ``(336 // 14) ** 2 + 1`` (CLS) ``- 1`` (the
    "default" feature strategy drops CLS) = 576 tokens for every input size.
    """

    name: str = "llava-1.5"  # type: ignore[misc]
    image_size: int = 336
    patch: int = 14

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        _check_size(width, height)
        return self.image_size, self.image_size

    def count(self, width: int, height: int) -> int:
        _check_size(width, height)
        return (self.image_size // self.patch) ** 2


# ------------------------------------------------------------------------------------ LLaVA-NeXT
LLAVA_V16_PINPOINTS: tuple[tuple[int, int], ...] = (
    (336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)
)


@dataclass(frozen=True)
class LlavaNextFamily(TokenFamily):
    """LLaVA-NeXT (v1.6) any-res: a 336 px base view plus the tiles of the best pinpoint canvas.

    The tile features are unpadded back to the image's aspect ratio and one newline token ends
    each feature row. Mirrors ``LlavaNextProcessor._get_number_of_features`` and
    ``_get_unpadded_features`` (5.24.0) with the llava-v1.6 hub settings (``patch_size=14``,
    ``vision_feature_select_strategy="default"``, ``num_additional_image_tokens=1``), which agree with
    ``LlavaNextModel.pack_image_features`` / ``unpad_image``.
    """

    name: str = "llava-next"  # type: ignore[misc]
    pinpoints: tuple[tuple[int, int], ...] = LLAVA_V16_PINPOINTS  # (height, width) like the hub config
    image_size: int = 336
    patch: int = 14

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        _check_size(width, height)
        best_h, best_w = select_best_resolution((height, width), self.pinpoints)
        return best_w, best_h

    def count(self, width: int, height: int) -> int:
        best_w, best_h = self.resized_size(width, height)
        side = self.image_size
        scale_height, scale_width = best_h // side, best_w // side
        patches_height = patches_width = side // self.patch
        # _get_unpadded_features(height, width, patches_height, patches_width, scale_height, scale_width)
        current_height = patches_height * scale_height
        current_width = patches_width * scale_width
        if width / height > current_width / current_height:
            new_height = int(round(height * (current_width / width), 7))
            current_height -= ((current_height - new_height) // 2) * 2
        else:
            new_width = int(round(width * (current_height / height), 7))
            current_width -= ((current_width - new_width) // 2) * 2
        unpadded, newlines = current_height * current_width, current_height
        base = patches_height * patches_width  # + 1 CLS, - 1 for the "default" strategy
        return unpadded + newlines + base


# ------------------------------------------------------------------------------ Idefics3/SmolVLM
@dataclass(frozen=True)
class IdeficsFamily(TokenFamily):
    """Idefics3 / SmolVLM: resize the long side to ``longest_edge``, cut ``tile`` px tiles, add a global view.

    Mirrors ``Idefics3ImageProcessorPil._preprocess`` (resize, ``resize_for_vision_encoder``,
    ``split_images``) and ``Idefics3Processor.replace_image_token`` (5.24.0). Counted are the
    ``<image>`` placeholders: ``image_seq_len`` per tile plus the global image. The few separator
    tokens (``<fake_token_around_image>``, ``<row_i_col_j>``, ``<global-img>``) carry no pixels and
    are not counted.
    """

    name: str = "idefics3"  # type: ignore[misc]
    longest_edge: int = 4 * 364
    tile: int = 364
    image_seq_len: int = 169
    do_image_splitting: bool = True

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        _check_size(width, height)
        h, w = _rescale_to_max_len(height, width, self.longest_edge)
        h, w = _scale_below_upper_bound(h, w, _IDEFICS_MAX_IMAGE_SIZE)
        if not self.do_image_splitting:
            return self.tile, self.tile
        h, w = _resize_for_vision_encoder(h, w, self.tile)
        return w, h

    def count(self, width: int, height: int) -> int:
        w, h = self.resized_size(width, height)
        if not self.do_image_splitting or (h <= self.tile and w <= self.tile):
            return self.image_seq_len
        # split_images: (h - tile) // tile + 1 rows, likewise columns, plus the global image
        rows = (h - self.tile) // self.tile + 1
        cols = (w - self.tile) // self.tile + 1
        return self.image_seq_len * (rows * cols + 1)


# --------------------------------------------------------------------------------------- generic
@dataclass(frozen=True)
class GenericFamily(TokenFamily):
    """A plain ViT: ``ceil(h / patch) * ceil(w / patch)`` patches, ``merge`` x ``merge`` of them per token.

    A partial merge group still yields a token (the grid is padded per axis), so the count is
    ``ceil(gh / merge) * ceil(gw / merge)``; with ``merge=1`` this is exactly the patch count. With
    ``max_pixels`` set, larger images are first scaled down (aspect kept) to fit.
    """

    name: str = "generic"  # type: ignore[misc]
    patch: int = 16
    merge: int = 1
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.patch < 1 or self.merge < 1 or (self.max_pixels is not None and self.max_pixels < 1):
            raise ValueError(f"patch, merge and max_pixels must be positive, got {self}")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        _check_size(width, height)
        if self.max_pixels is not None and width * height > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (width * height))
            width, height = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        return width, height

    def count(self, width: int, height: int) -> int:
        w, h = self.resized_size(width, height)
        gh, gw = math.ceil(h / self.patch), math.ceil(w / self.patch)
        return math.ceil(gh / self.merge) * math.ceil(gw / self.merge)


# -------------------------------------------------------------------------------------- registry
_FAMILIES: dict[str, TokenFamily] = {
    "qwen2-vl": QwenFamily(name="qwen2-vl"),
    "qwen2.5-vl": QwenFamily(name="qwen2.5-vl"),
    # transformers 5.24 maps qwen3_vl to Qwen2VLImageProcessor(Pil) (image_processing_auto.py); the
    # Qwen/Qwen3-VL-*-Instruct preprocessor_config.json sets patch_size 16 and
    # size {"shortest_edge": 65536, "longest_edge": 16777216} (256^2 to 4096^2 pixels).
    "qwen3-vl": QwenFamily(name="qwen3-vl", patch=16, merge=2, min_pixels=65_536, max_pixels=16_777_216),
    "llava-1.5": LlavaFamily(),
    "llava-next": LlavaNextFamily(),
    # HuggingFaceM4/Idefics3-8B-Llama3: size 4*364, max_image_size 364, image_seq_len 169.
    "idefics3": IdeficsFamily(),
    # SmolVLM-256M/500M-Instruct and SmolVLM2: size 2048 (4*512), max_image_size 512, image_seq_len 64.
    # (transformers' SmolVLMImageProcessor class defaults equal Idefics3's; the hub configs override them.)
    "smolvlm": IdeficsFamily(name="smolvlm", longest_edge=4 * 512, tile=512, image_seq_len=64),
    "generic": GenericFamily(),
}
FAMILY_NAMES: tuple[str, ...] = tuple(_FAMILIES)

_ALIASES = {
    "qwen2vl": "qwen2-vl",
    "qwen2.5vl": "qwen2.5-vl",
    "qwen25vl": "qwen2.5-vl",
    "qwen3vl": "qwen3-vl",
    "llava": "llava-1.5",
    "llava1.5": "llava-1.5",
    "llava15": "llava-1.5",
    "llavanext": "llava-next",
    "llava1.6": "llava-next",
    "llavav1.6": "llava-next",
    "llava16": "llava-next",
    "idefics3": "idefics3",
    "smolvlm": "smolvlm",
    "smolvlm2": "smolvlm",
    "generic": "generic",
}


def _canonical(name: str) -> str:
    key = re.sub(r"[^a-z0-9.]", "", name.lower())
    return _ALIASES.get(key, name)


def get_family(name: str, **overrides: Any) -> TokenFamily:
    """Look a family up by name (aliases like ``"qwen2_5_vl"`` work) and override its settings.

    Args:
        name: One of :data:`FAMILY_NAMES` or an alias.
        **overrides: Settings of the family, e.g. ``min_pixels=`` / ``max_pixels=`` for Qwen,
            ``patch=`` / ``merge=`` / ``max_pixels=`` for ``generic``.

    Raises:
        TokenCountError: unknown family name.
        TypeError: an override the family does not have.
    """
    if not isinstance(name, str):
        raise TypeError(f"family name must be a str, got {type(name).__name__}")
    canonical = _canonical(name)
    if canonical not in _FAMILIES:
        raise TokenCountError(f"unknown model family {name!r}; choose one of {', '.join(FAMILY_NAMES)}")
    family = _FAMILIES[canonical]
    if not overrides:
        return family
    allowed = {f.name for f in dataclasses.fields(family) if f.name != "name"}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(f"family {canonical!r} has no setting {unknown}; it has {sorted(allowed)}")
    if "pinpoints" in overrides:
        overrides["pinpoints"] = tuple(tuple(p) for p in overrides["pinpoints"])
    return dataclasses.replace(family, **overrides)  # type: ignore[type-var]


def _resolve(family: str | TokenFamily) -> TokenFamily:
    return family if isinstance(family, TokenFamily) else get_family(family)


def count_visual_tokens(image_or_size: Any, family: str | TokenFamily) -> int:
    """Visual tokens of one image for a family; pass a PIL image (its ``.size`` is used) or ``(w, h)``."""
    size = getattr(image_or_size, "size", image_or_size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise TypeError(f"expected a PIL image or a (width, height) pair, got {image_or_size!r}")
    return _resolve(family).count(size[0], size[1])


def rtr(spent_tokens: int, full_tokens: int) -> float:
    """Retained token ratio: visual tokens actually processed over those of the full image.

    >>> rtr(256, 1024)
    0.25
    """
    if full_tokens <= 0:
        raise ValueError(f"full_tokens must be positive, got {full_tokens}")
    if spent_tokens < 0:
        raise ValueError(f"spent_tokens must be >= 0, got {spent_tokens}")
    return spent_tokens / full_tokens
