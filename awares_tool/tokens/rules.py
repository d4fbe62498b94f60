"""Resize rules of VLM image processors, mirrored from transformers in plain Python.

Token counts depend on the size a processor resizes an image to, and that rule differs per family.
These are line-for-line copies of **transformers 5.24.0** (each names the function it mirrors), so
that :mod:`awares_tool.tokens` can count tokens without torch or transformers;
``tests/test_tokens_vs_processors.py`` checks the results against the real processors. Like
transformers, they take and return sizes as ``(height, width)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from awares_tool.errors import TokenCountError

__all__ = ["smart_resize", "select_best_resolution"]


# --------------------------------------------------------------------------------------- Qwen-VL
def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Qwen's resize rule; returns ``(height, width)`` like transformers.

    Mirrors ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`` (5.24.0). That
    version has no "side smaller than factor" error any more (older 4.x releases raised one); tiny
    sides are simply scaled up by the ``min_pixels`` branch, and we do the same.

    Raises:
        TokenCountError: the aspect ratio exceeds 200, where transformers raises ``ValueError``.
    """
    if max(height, width) / min(height, width) > 200:
        raise TokenCountError(
            f"Qwen-VL processors refuse images whose aspect ratio exceeds 200, got {width}x{height} "
            f"(ratio {max(height, width) / min(height, width):.1f}); pad or crop the image first"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# ------------------------------------------------------------------------------------ LLaVA-NeXT
def select_best_resolution(original_size: tuple[int, int], possible_resolutions: Sequence[Sequence[int]]):
    """Best any-res canvas, ``(height, width)`` in and out.

    Mirrors ``transformers.image_processing_utils.select_best_resolution`` (5.24.0).
    """
    original_height, original_width = original_size
    best_fit = None
    max_effective_resolution = 0
    min_wasted_resolution = float("inf")
    for height, width in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width, downscaled_height = int(original_width * scale), int(original_height * scale)
        effective_resolution = min(downscaled_width * downscaled_height, original_width * original_height)
        wasted_resolution = (width * height) - effective_resolution
        if effective_resolution > max_effective_resolution or (
            effective_resolution == max_effective_resolution and wasted_resolution < min_wasted_resolution
        ):
            max_effective_resolution = effective_resolution
            min_wasted_resolution = wasted_resolution
            best_fit = (height, width)
    return best_fit


# ------------------------------------------------------------------------------ Idefics3/SmolVLM
_IDEFICS_MAX_IMAGE_SIZE = 4096  # transformers.models.idefics3.image_processing_pil_idefics3.MAX_IMAGE_SIZE


def _rescale_to_max_len(height: int, width: int, max_len: int, min_len: int = 1) -> tuple[int, int]:
    # Mirrors idefics3.image_processing_pil_idefics3._resize_output_size_rescale_to_max_len (5.24.0).
    aspect_ratio = width / height
    if width >= height:
        width = max_len
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    elif height > width:
        height = max_len
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    return max(height, min_len), max(width, min_len)


def _scale_below_upper_bound(height: int, width: int, max_len: int) -> tuple[int, int]:
    # Mirrors idefics3.image_processing_pil_idefics3._resize_output_size_scale_below_upper_bound (5.24.0).
    aspect_ratio = width / height
    if width >= height and width > max_len:
        width = max_len
        height = int(width / aspect_ratio)
    elif height > width and height > max_len:
        height = max_len
        width = int(height * aspect_ratio)
    return max(height, 1), max(width, 1)


def _resize_for_vision_encoder(height: int, width: int, tile: int) -> tuple[int, int]:
    # Mirrors Idefics3ImageProcessorPil.resize_for_vision_encoder (5.24.0). Note: the processor's own
    # get_number_of_image_patches uses a slightly different formula; we follow what preprocessing does.
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = int(width / aspect_ratio)
        height = math.ceil(height / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = int(height * aspect_ratio)
        width = math.ceil(width / tile) * tile
    return height, width
