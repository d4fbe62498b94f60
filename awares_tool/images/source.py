"""One input image at native resolution, decoded lazily and at most once: :class:`SourceImage`.

The crop engine needs two things from an image: a cheap low-resolution view (asked for every question) and
crops of the *original* pixels (asked for only when the model requests them). So the header is read up
front (by :mod:`.sources`), and decoding is deferred: the full-resolution RGB image is decoded once on first
use, and a JPEG's low-res view is decoded at reduced size by libjpeg itself (``Image.draft``), which is much
cheaper than decoding everything and resizing.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

from PIL import Image

from awares_tool.errors import AwaresError, ImageDecodeError
from awares_tool.images.convert import to_rgb
from awares_tool.images.limits import _DECODE_ERRORS, _pillow_guard, _short

__all__ = ["SourceImage"]

logger = logging.getLogger(__name__)


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
