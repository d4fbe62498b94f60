"""The entry point for image input: :func:`open_image` turns any supported source into a :class:`SourceImage`.

Every failure surfaces as a typed :class:`~awares_tool.errors.ImageError`, never as a raw Pillow
``OSError`` from deep inside a decoder. The per-kind parsers live in :mod:`.sources`.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from PIL import Image

from awares_tool.errors import ImageSourceError
from awares_tool.images.limits import _DEFAULT_LIMITS, ImageLimits
from awares_tool.images.source import SourceImage
from awares_tool.images.sources import (
    _from_array,
    _from_bytes,
    _from_path,
    _from_pil,
    _from_str,
    _is_array,
    read_image_file,
)

if TYPE_CHECKING:
    import numpy

__all__ = ["ImageSource", "open_image", "open_file", "load_image"]

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, "numpy.ndarray", "SourceImage"]


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


def open_file(path: str | os.PathLike[str], *, limits: ImageLimits | None = None, no_symlinks: bool = False,
              check_opened: Callable[[Path], None] | None = None, label: str | None = None) -> SourceImage:
    """Open an image file for a caller that vetted its path: the file is opened once and checked on the descriptor.

    Servers use this after checking that a path lies under an allowed folder: ``no_symlinks`` refuses a symlink
    as the last component, and ``check_opened`` sees the path the open descriptor really refers to, so a symlink
    swapped in between the check and the read cannot redirect it (see :func:`awares_tool.images.sources.read_image_file`).
    ``label`` names the file in error messages (default: the path), e.g. as the client gave it.
    """
    limits = limits or _DEFAULT_LIMITS
    p = Path(os.fspath(path))
    data = read_image_file(p, limits.max_bytes, no_symlinks=no_symlinks, check_opened=check_opened, label=label)
    return _from_bytes(data, limits, label=label or str(p), path=p)
