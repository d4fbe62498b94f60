"""Image sources: turn a path, bytes, base64 text, data URI, URL, PIL image or numpy array into a
:class:`~awares_tool.images.source.SourceImage`.

One parser per kind of source, all reading only the header (size, format, EXIF orientation) and
checking :class:`~awares_tool.images.limits.ImageLimits` before anything is decoded. A string is the one
ambiguous input: it may be a path, a URL, a data URI or bare base64, and :func:`_from_str` decides
which. :func:`awares_tool.images.open.open_image` is the public entry point that dispatches here.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import hashlib
import io
import re
import stat
import urllib.parse
import urllib.request
from pathlib import Path
from collections.abc import Callable
from typing import Any

from PIL import Image, UnidentifiedImageError

from awares_tool.errors import (
    AwaresError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageSourceError,
)
from awares_tool.images.convert import _ORIENTATION_TAG, _SWAPPING_ORIENTATIONS, to_rgb
from awares_tool.images.fetch import fetch_url
from awares_tool.images.limits import (
    _DECODE_ERRORS,
    ImageLimits,
    _check_bytes,
    _check_pixels,
    _pillow_guard,
    _short,
)
from awares_tool.images.source import SourceImage

# File signatures used to tell a base64 image string from a missing path made of base64 letters.
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"\x00\x00\x01\x00",
          b"\x00\x00\x00\x0cjP", b"\xff\x4f\xff\x51", b"qoif", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")
_DATA_URI = re.compile(
    r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL | re.IGNORECASE
)
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")


def _png_exif(data: bytes) -> bytes | None:
    """The payload of a PNG's ``eXIf`` chunk, wherever it lies (before or after the pixel data).

    Walks the chunk headers only (length, type) and skips every payload, so the pixels are never decoded.
    """
    pos = 8  # the PNG signature
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"eXIf":
            return data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return None
        pos += 12 + length  # length, type, payload, CRC
    return None


def _header_orientation(im: Image.Image, data: bytes) -> int:
    """EXIF orientation from the header alone, without decoding pixels."""
    try:
        if im.format == "PNG":
            # PngImageFile.getexif() decodes the whole image to find an eXIf chunk after the pixels (Pillow 13),
            # and im.info only has one that came before them; read the chunk list ourselves.
            raw = im.info.get("exif") or _png_exif(data)
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw if raw.startswith(b"Exif") else b"Exif\x00\x00" + raw)
            return int(exif.get(_ORIENTATION_TAG, 1))
        if im.format == "TIFF":
            # Pillow 13 orients TIFFs itself: .size is already upright and load() transposes.
            tags = getattr(im, "tag_v2", {})
            if im.size != (tags.get(256), tags.get(257)):
                return 1
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except (*_DECODE_ERRORS, TypeError):
        return 1


def _from_bytes(data: bytes, limits: ImageLimits, *, label: str, path: Path | None = None) -> SourceImage:
    if not data:
        raise ImageDecodeError(f"{label} is empty (0 bytes)")
    _check_bytes(len(data), limits.max_bytes, label)
    with _pillow_guard(label):
        try:
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            fmt = im.format
        except UnidentifiedImageError as e:
            raise ImageDecodeError(
                f"{label} is not an image format Pillow can read (it starts with {data[:12]!r})"
            ) from e
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(f"{label} has a corrupt image header: {e}") from e
        _check_pixels(width, height, limits, label)
        orientation = _header_orientation(im, data)
    swapped = orientation in _SWAPPING_ORIENTATIONS
    return SourceImage(
        image_id=hashlib.sha256(data).hexdigest()[:16],
        size=(height, width) if swapped else (width, height),
        label=label,
        data=data,
        fmt=fmt,
        path=path,
        swapped=swapped,
    )


def read_image_file(path: Path, max_bytes: int, *, no_symlinks: bool = False,
                    check_opened: Callable[[Path], None] | None = None, label: str | None = None) -> bytes:
    """The bytes of the image file at ``path``, opened once and checked on the open descriptor.

    What is checked is what is read: the descriptor is ``fstat``-ed (a regular file, not over ``max_bytes``), and
    at most ``max_bytes + 1`` bytes are read, so a file that grows after the check is still refused. With
    ``no_symlinks`` the last component must not be a symlink (``O_NOFOLLOW``), and ``check_opened`` receives the
    path the descriptor really refers to (``/proc/self/fd`` on Linux), so a symlink swapped in after a path check
    cannot redirect the read.

    Raises:
        ImageNotFoundError: No such file, or a directory.
        ImageSourceError: Not a regular file, a symlink where none is allowed, or any other OS error (with reason).
        ImageTooLargeError: Over ``max_bytes``.
    """
    label = label or str(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block us
    if no_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise ImageNotFoundError(f"image file not found: {_short(label, 300)}") from e
    except IsADirectoryError as e:
        raise ImageNotFoundError(f"{_short(label, 300)} is a directory; pass the path of one image file") from e
    except OSError as e:
        if no_symlinks and e.errno == errno.ELOOP:
            raise ImageSourceError(f"{_short(label, 300)} is a symbolic link; links are not followed here") from e
        raise ImageSourceError(f"cannot open image file {_short(label, 300)}: {e.strerror or e}") from e
    except ValueError as e:  # a NUL byte in the name
        raise ImageSourceError(f"cannot open image path {_short(label, 300)}: {e}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageNotFoundError(f"{label} is a directory; pass the path of one image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageSourceError(f"{label} is not a regular file; pass the path of an image file")
        if check_opened is not None:
            check_opened(_opened_path(fd, path))
        _check_bytes(st.st_size, max_bytes, label)
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # the file object owns it now
            data = fh.read(max_bytes + 1)
    except AwaresError:
        raise
    except OSError as e:
        raise ImageSourceError(f"cannot read image file {label}: {e.strerror or e}") from e
    finally:
        if fd >= 0:
            os.close(fd)
    _check_bytes(len(data), max_bytes, label)  # it grew after fstat
    return data


def _opened_path(fd: int, fallback: Path) -> Path:
    """The path an open descriptor refers to (Linux: /proc/self/fd); the resolved name elsewhere."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return fallback.resolve()


def _from_path(path: Path, limits: ImageLimits) -> SourceImage:
    data = read_image_file(path, limits.max_bytes)
    return _from_bytes(data, limits, label=str(path), path=path)


def _from_pil(img: Image.Image, limits: ImageLimits, *, label: str) -> SourceImage:
    _check_pixels(img.width, img.height, limits, label)
    with _pillow_guard(label):
        try:
            rgb = to_rgb(img)
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(f"{label} (mode {img.mode}) cannot be converted to RGB: {e}") from e
    if rgb is img:  # own the pixels: the caller may keep drawing on its image
        rgb = img.copy()
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return SourceImage(image_id=digest.hexdigest()[:16], size=rgb.size, label=label, rgb=rgb, fmt=img.format)


def _is_array(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "numpy" and hasattr(obj, "__array_interface__")


def _from_array(arr: Any, limits: ImageLimits) -> SourceImage:
    import numpy as np  # only reached when the caller already passed a numpy array

    a = np.asarray(arr)
    label = f"numpy array {a.shape} {a.dtype}"
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageSourceError(f"{label} is not an image; expected shape HxW, HxWx3 or HxWx4")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageSourceError(f"{label} is empty")
    _check_pixels(a.shape[1], a.shape[0], limits, label)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ImageSourceError(f"{label}: float pixels must lie in [0, 1]; rescale, or pass uint8 0..255")
        a = np.rint(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageSourceError(f"{label}: dtype {a.dtype} is not supported; pass uint8 or float in [0, 1]")
    return _from_pil(Image.fromarray(np.ascontiguousarray(a)), limits, label=label)


def _try_base64(text: str) -> bytes | None:
    s = "".join(text.split())
    if len(s) < 8:
        return None
    altchars = b"-_" if ("-" in s or "_" in s) else None
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _from_data_uri(uri: str, limits: ImageLimits) -> SourceImage:
    m = _DATA_URI.match(uri)
    if m is None or "base64" not in m.group("params").lower().split(";"):
        raise ImageSourceError(
            f"unsupported data URI {_short(uri, 40)!r}; expected 'data:image/<type>;base64,<data>'"
        )
    payload = m.group("data")
    _check_bytes(len(payload) * 3 // 4, limits.max_bytes, "data URI image")
    data = _try_base64(payload) if payload.strip() else b""
    if data is None:
        raise ImageDecodeError(f"data URI {_short(uri, 40)!r} does not hold valid base64")
    return _from_bytes(data, limits, label=f"data URI image ({m.group('mime') or 'no type'})")


def _from_url(url: str, limits: ImageLimits) -> SourceImage:
    if not limits.allow_urls:
        raise ImageSourceError(
            f"refusing to download {_short(url)!r}: URL sources are off by default so that a prompt cannot "
            f"make this process fetch arbitrary addresses; pass limits=ImageLimits(allow_urls=True) to allow "
            f"it, or download the image yourself and pass its path or bytes"
        )
    # The one fetcher, with the adapters' policy: public hosts only on every hop, one deadline, no proxies.
    return _from_bytes(fetch_url(url, limits), limits, label=f"image from {_short(url)}")


def _from_str(text: str, limits: ImageLimits) -> SourceImage:
    s = text.strip()
    if not s:
        raise ImageSourceError("an empty string is not an image; pass a path, base64 string or data URI")
    if s[:5].lower() == "data:":
        return _from_data_uri(s, limits)
    m = _SCHEME.match(s)
    if m:
        scheme = m.group("scheme").lower()
        if scheme in ("http", "https"):
            return _from_url(s, limits)
        if scheme == "file":
            return _from_path(Path(urllib.request.url2pathname(urllib.parse.urlparse(s).path)), limits)
        raise ImageSourceError(f"unsupported URL scheme {scheme!r} in {_short(s)!r}; use http(s) or file")
    path = Path(text).expanduser()
    try:
        exists = len(text) < 4096 and path.exists()
    except (OSError, ValueError):  # a name too long or with NUL bytes cannot be a path
        exists = False
    if not exists:
        data = _try_base64(s)
        # Base64 letters also spell plausible file names: require an image signature or a long text.
        if data is not None and (data.startswith(_MAGIC) or data[4:8] == b"ftyp" or len(s) >= 256):
            _check_bytes(len(data), limits.max_bytes, "base64 image string")
            return _from_bytes(data, limits, label="base64 image string")
    return _from_path(path, limits)
