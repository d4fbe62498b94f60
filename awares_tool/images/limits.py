"""Limits applied to every image before it is decoded, and the checks that enforce them.

Images often come from untrusted places (a user upload, a model's tool call): a tiny file can declare
billions of pixels, and a URL can point anywhere. Every entry point checks these limits on the header,
before any pixel is decoded, and reports a typed :class:`~awares_tool.errors.ImageError`.
"""

from __future__ import annotations

import contextlib
import re
import struct
import warnings
from collections.abc import Iterator

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from awares_tool.errors import ImageDecodeError, ImageTooLargeError

__all__ = ["ImageLimits", "MiB"]

MiB = 1024 * 1024
# What Pillow raises from a decoder on corrupt or truncated data (beyond its documented OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)


class ImageLimits(BaseModel):
    """Limits applied to every image before it is decoded.

    They exist because images often come from untrusted places (a user upload, a model's tool call):
    a tiny file can declare billions of pixels, and a URL can point anywhere.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pixels: int = Field(100_000_000, gt=0, description="Refuse images with more pixels (width * height).")
    max_bytes: int = Field(200 * MiB, gt=0, description="Refuse encoded sources larger than this.")
    allow_urls: bool = Field(False, description="Download http(s) URLs; off so prompts cannot cause fetches.")
    url_timeout_s: float = Field(10.0, gt=0, description="Total time allowed for one download.")
    url_max_bytes: int = Field(20 * MiB, gt=0, description="Abort downloads larger than this.")
    url_allow_networks: tuple[IPvAnyNetwork, ...] = Field(
        (), description="Non-public networks downloads may reach anyway, e.g. ('10.1.0.0/16',) for an internal "
        "image store of a trusted deployment; empty by default: only public addresses.")


_DEFAULT_LIMITS = ImageLimits()


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} chars)"


@contextlib.contextmanager
def _pillow_guard(label: str) -> Iterator[None]:
    """Turn Pillow's decompression-bomb signals into typed errors for one call.

    Our own ``max_pixels`` check runs on the header before any decode and is the authority, so
    Pillow's *warning* (emitted from 89 M pixels, below our 100 M default) is silenced here rather
    than by changing the process-wide ``PIL.Image.MAX_IMAGE_PIXELS``. Pillow's hard *error* (twice
    its limit) cannot be lifted per call, so it becomes an :class:`ImageTooLargeError`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
            raise ImageTooLargeError(
                f"{label} declares {size}, over Pillow's decompression-bomb limit of "
                f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}; if you trust it, pass "
                f"limits=ImageLimits(max_pixels=...) and also raise PIL.Image.MAX_IMAGE_PIXELS"
            ) from e


def _check_pixels(width: int, height: int, limits: ImageLimits, label: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{label} has an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{label} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,}; pass limits=ImageLimits(max_pixels=...) to allow larger images"
        )


def _check_bytes(nbytes: int, cap: int, label: str, what: str = "max_bytes") -> None:
    if nbytes > cap:
        raise ImageTooLargeError(
            f"{label} is {nbytes:,} bytes, over the limit of {cap:,}; "
            f"pass limits=ImageLimits({what}=...) to allow larger files"
        )
