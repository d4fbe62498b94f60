"""Pixel conversions: upright RGB from any Pillow image, and encoding for transport."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

from PIL import Image, ImageOps

from awares_tool.images.limits import _DECODE_ERRORS

__all__ = ["to_rgb", "encode_image", "to_base64", "to_data_uri"]

logger = logging.getLogger(__name__)

_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees


def _exif_transposed(img: Image.Image) -> Image.Image:
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:  # a broken EXIF block should not make the pixels unusable
        logger.warning("ignoring unreadable EXIF data", exc_info=True)
        return img
    return ImageOps.exif_transpose(img) if orientation in range(2, 9) else img


def _range_to_l(img: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float image to 8 bits by its actual value range (not by clipping)."""
    if img.mode not in ("I", "F"):
        img = img.convert("I")
    lo, hi = img.getextrema()
    if hi <= lo:  # a constant image has no range; keep its value where it fits in 8 bits
        return Image.new("L", img.size, int(min(max(lo, 0), 255)))
    scale = 255.0 / (hi - lo)
    offset = 0.5 - lo * scale  # +0.5: Pillow truncates when it stores the result
    return img.point(lambda x: x * scale + offset).convert("L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Return ``img`` upright (EXIF orientation applied) in RGB mode.

    Transparent pixels are composited over white, because documents and charts (the images this
    package is for) are drawn on white and a black background would hide dark text. 16-bit and float
    images are stretched over their actual range, since clipping would turn most of them black.

    Args:
        img: Any Pillow image.

    Returns:
        An RGB image; ``img`` itself when it already is upright RGB.
    """
    img = _exif_transposed(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _range_to_l(img).convert("RGB")
    return img.convert("RGB")


def encode_image(img: Image.Image, fmt: str = "PNG") -> bytes:
    """Encode ``img`` as ``fmt`` (``"PNG"``, ``"JPEG"`` at quality 90, ``"WEBP"``...) for transport."""
    fmt = "JPEG" if fmt.upper() in ("JPG", "JPEG") else fmt.upper()
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        params["quality"] = 90
        if img.mode not in ("RGB", "L", "CMYK"):
            img = to_rgb(img)  # JPEG cannot store alpha or palettes
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **params)
    except KeyError as e:
        raise ValueError(f"unknown image format {fmt!r}; use PNG, JPEG or WEBP") from e
    return buf.getvalue()


def to_base64(img: Image.Image, fmt: str = "PNG") -> str:
    """Encode ``img`` and return it as plain base64 text."""
    return base64.b64encode(encode_image(img, fmt)).decode("ascii")


def to_data_uri(img: Image.Image, fmt: str = "PNG") -> str:
    """Encode ``img`` as a ``data:image/...;base64,`` URI, the form chat APIs accept inline."""
    fmt = "JPEG" if fmt.upper() in ("JPG", "JPEG") else fmt.upper()
    mime = Image.MIME.get(fmt, f"image/{fmt.lower()}")
    return f"data:{mime};base64,{to_base64(img, fmt)}"
