"""Image input: turn any supported source into one lazily decoded :class:`SourceImage`.

The crop engine needs two things from an image: a cheap low-resolution view (asked for every
question) and crops of the *original* pixels (asked for only when the model requests them). So
``open_image`` reads only the header up front (size, format, EXIF orientation, and the limits that
protect against decompression bombs), hashes the bytes for a stable id, and defers decoding: the
full-resolution RGB image is decoded once on first use, and a JPEG's low-res view is decoded at
reduced size by libjpeg itself (``Image.draft``), which is much cheaper than decoding everything and
resizing. Every failure surfaces as a typed :class:`~awares_tool.errors.ImageError`, never as a raw
Pillow ``OSError`` from deep inside a decoder.

Source parsing (paths, bytes, base64 strings and data URIs, URLs, PIL images, numpy arrays) lives in
:mod:`awares_tool.image_sources`; this module holds the limits, the lazily decoded image, the
:func:`open_image` entry point that dispatches to those parsers, and encoding for transport.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from awares_tool.errors import (
    AwaresError,
    ImageDecodeError,
    ImageSourceError,
    ImageTooLargeError,
)

if TYPE_CHECKING:
    import numpy

__all__ = [
    "ImageLimits",
    "ImageSource",
    "SourceImage",
    "open_image",
    "load_image",
    "to_rgb",
    "encode_image",
    "to_base64",
    "to_data_uri",
]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
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


_DEFAULT_LIMITS = ImageLimits()

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, "numpy.ndarray", "SourceImage"]


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


class SourceImage:
    """One input image at native resolution, decoded lazily and at most once.

    Build it with :func:`open_image`. The header is read up front, so ``size`` (after EXIF
    orientation), ``format`` and ``id`` are known without decoding pixels. The object is safe to share
    between threads; treat the image returned by :attr:`image` as read-only, since it is cached.
    """

    def __init__(
        self,
        *,
        image_id: str,
        size: tuple[int, int],
        label: str,
        data: bytes | None = None,
        rgb: Image.Image | None = None,
        fmt: str | None = None,
        path: Path | None = None,
        swapped: bool = False,
    ) -> None:
        self._id = image_id
        self._size = size
        self._label = label
        self._data = data
        self._rgb = rgb
        self._format = fmt
        self._path = path
        self._swapped = swapped
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Stable content id: the first 16 hex digits of a SHA-256.

        Of the encoded source bytes for files, bytes, base64 and URLs; of the RGB pixels and size for
        PIL images and arrays. Equal content gives equal ids, so ids can key caches and stores.
        """
        return self._id

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` after EXIF orientation."""
        return self._size

    @property
    def format(self) -> str | None:
        """Pillow's format name of the source (``"JPEG"``, ``"PNG"``...), None for arrays."""
        return self._format

    @property
    def path(self) -> Path | None:
        """The file the image came from, if any."""
        return self._path

    @property
    def nbytes(self) -> int | None:
        """Size of the encoded source in bytes; None for in-memory PIL images and arrays."""
        return None if self._data is None else len(self._data)

    @property
    def image(self) -> Image.Image:
        """The full-resolution RGB image, decoded on first access and cached.

        Raises:
            ImageDecodeError: The file is truncated or corrupt.
            ImageTooLargeError: Pillow's own decompression-bomb limit refused it.
        """
        img = self._rgb
        if img is None:
            with self._lock:
                if self._rgb is None:
                    decoded = self._decode()
                    if decoded.size != self._size:
                        logger.warning("%s decoded to %s, not %s", self._label, decoded.size, self._size)
                        self._size = decoded.size
                    self._rgb = decoded
                img = self._rgb
        return img

    def _decode(self, draft_size: tuple[int, int] | None = None) -> Image.Image:
        assert self._data is not None
        with _pillow_guard(self._label):
            try:
                im = Image.open(io.BytesIO(self._data))
                if draft_size is not None:
                    im.draft("RGB", draft_size)
                im.load()  # the first frame of multi-frame files
                return to_rgb(im)
            except AwaresError:
                raise
            except _DECODE_ERRORS as e:
                msg = f"{self._label} cannot be decoded, it is truncated or corrupt: {e}"
                raise ImageDecodeError(msg) from e

    def resized(
        self, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.BICUBIC
    ) -> Image.Image:
        """Return a resized RGB copy of exactly ``size``, typically the cheap low-res view.

        For a JPEG shrunk to half or less on both sides, libjpeg decodes at 1/2, 1/4 or 1/8 scale
        from a fresh handle (far less work than a full decode), and a normal resize then finishes
        the job. The full-resolution image is neither needed nor cached for this.

        Args:
            size: Target ``(width, height)``, both positive.
            resample: Pillow resampling filter for the final resize.
        """
        tw, th = (int(v) for v in size)
        if tw <= 0 or th <= 0:
            raise ValueError(f"resized() needs a positive (width, height), got {size!r}")
        w, h = self._size
        if self._data is not None and self._format == "JPEG" and 2 * tw <= w and 2 * th <= h:
            img = self._decode(draft_size=(th, tw) if self._swapped else (tw, th))
            logger.debug("%s: JPEG draft decode to %s for target %s", self._label, img.size, (tw, th))
        else:
            img = self.image
        if img.size == (tw, th):
            return img.copy() if img is self._rgb else img
        return img.resize((tw, th), resample)

    def crop(self, box: tuple[int, int, int, int]) -> Image.Image:
        """Return the RGB pixels of ``box`` (left, top, right, bottom) from the original image.

        The box is clipped to the image; a box that misses the image entirely is a ``ValueError``.
        """
        left, top, right, bottom = (int(v) for v in box)
        img = self.image  # decode first: it settles the size if the header's orientation was missing
        w, h = self._size
        left, right = min(max(left, 0), w), min(max(right, 0), w)
        top, bottom = min(max(top, 0), h), min(max(bottom, 0), h)
        if right <= left or bottom <= top:
            raise ValueError(f"crop box {tuple(box)} does not overlap the {w}x{h} image")
        with _pillow_guard(self._label):
            return img.crop((left, top, right, bottom))

    def __repr__(self) -> str:
        w, h = self._size
        source = _short(self._label)
        return f"SourceImage(id={self._id!r}, size={w}x{h}, format={self._format!r}, source={source!r})"


def open_image(source: ImageSource, *, limits: ImageLimits | None = None) -> SourceImage:
    """Open an image from any supported source, reading only its header.

    Args:
        source: A path (str or ``PathLike``); ``bytes``; a base64 string or ``data:image/...;base64,``
            URI; an ``http(s)://`` URL (only with ``limits.allow_urls``); a PIL image; a numpy array
            (HxW, HxWx3 or HxWx4; uint8, or float in [0, 1]); or a :class:`SourceImage`, returned as is.
        limits: Size limits and URL policy; defaults to ``ImageLimits()``.

    Returns:
        The image, not yet decoded (PIL and numpy inputs are converted to RGB right away).

    Raises:
        ImageNotFoundError: The path does not exist or is a directory.
        ImageDecodeError: Empty, corrupt or non-image data.
        ImageTooLargeError: Over ``limits.max_pixels`` or ``limits.max_bytes`` (checked on the header).
        ImageSourceError: Unsupported source type, refused or failed URL.
    """
    limits = limits or _DEFAULT_LIMITS
    if isinstance(source, SourceImage):
        return source
    if isinstance(source, Image.Image):
        return _from_pil(source, limits, label=f"PIL image ({source.mode} {source.width}x{source.height})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _from_bytes(data, limits, label="image bytes")
    if isinstance(source, str):
        return _from_str(source, limits)
    if isinstance(source, os.PathLike):
        return _from_path(Path(os.fsdecode(source)).expanduser(), limits)
    if _is_array(source):
        return _from_array(source, limits)
    raise ImageSourceError(
        f"unsupported image source of type {type(source).__name__}; pass a path, bytes, a base64 string, "
        f"a data URI, a PIL image, a numpy array or a SourceImage (for a file object, pass f.read())"
    )


def load_image(source: ImageSource, *, limits: ImageLimits | None = None) -> Image.Image:
    """Open and fully decode ``source``; shorthand for ``open_image(source, limits=limits).image``."""
    return open_image(source, limits=limits).image


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


# At the bottom on purpose: the parsers build SourceImage and use the checks above, and the package's
# __init__ imports this module first, so they always find them already defined.
from awares_tool.image_sources import (  # noqa: E402
    _from_array,
    _from_bytes,
    _from_path,
    _from_pil,
    _from_str,
    _is_array,
)
