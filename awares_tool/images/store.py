"""A bounded, thread-safe store of source images addressed by content id.

Servers and tool adapters (MCP, LangChain, the HTTP backends) see an image once, in the first turn,
and must cut crops from it when the model asks in the second. Passing megabytes of pixels back and
forth through a tool call is wasteful, so the image is put here and the tool call carries only its
id. The store is bounded so that a long-running server cannot grow without limit: the least
recently used images are evicted first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from awares_tool.errors import ImageNotFoundError, ImageTooLargeError
from awares_tool.images.limits import ImageLimits
from awares_tool.images.open import ImageSource, open_image
from awares_tool.images.source import SourceImage

__all__ = ["ImageStore", "entry_nbytes"]

MiB = 1024 * 1024


def entry_nbytes(image: SourceImage) -> int:
    """Bytes an image is charged in the store: decoded RGB (``w * h * 3``) plus the encoded source.

    The decoded size is charged up front, even before the pixels are decoded, because the first crop
    decodes them and keeps them cached; charging later would let the store overshoot its bound. The
    encoded bytes are charged too because a :class:`SourceImage` keeps them for reduced-size decodes.
    """
    width, height = image.size
    return width * height * 3 + (image.nbytes or 0)


class ImageStore:
    """Images by content id, bounded in bytes, with least-recently-used eviction.

    Each entry costs :func:`entry_nbytes` (decoded RGB size plus encoded source size), an upper bound
    of what it holds once decoded. An image that alone costs more than the whole budget is refused
    with :class:`ImageTooLargeError` rather than stored over budget, so the bound always holds; with
    the default limits (100 M pixels) every accepted image fits in the default 512 MiB budget.

    All methods are safe to call from several threads. Opening an image (hashing and reading its
    header) happens outside the lock, so a slow ``put`` does not block ``get``.

    Args:
        max_bytes: The byte budget of all entries together.
        limits: Default :class:`ImageLimits` for :meth:`put`.
    """

    def __init__(self, max_bytes: int = 512 * MiB, *, limits: ImageLimits | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._max_bytes = max_bytes
        self._limits = limits
        self._items: OrderedDict[str, tuple[SourceImage, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The byte budget."""
        return self._max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes currently charged to the stored images."""
        return self._nbytes

    def put(self, source: ImageSource, *, limits: ImageLimits | None = None) -> str:
        """Store an image and return its content id.

        Putting the same content again stores nothing new; it only marks the image as recently used.

        Args:
            source: Anything :func:`~awares_tool.images.open_image` accepts.
            limits: Limits for opening ``source``; defaults to the store's.

        Returns:
            The image's content id, for :meth:`get`.

        Raises:
            ImageTooLargeError: The image alone is over the store's budget (or over ``limits``).
            ImageError: Whatever ``open_image`` raises for a bad source.
        """
        image = open_image(source, limits=limits or self._limits)
        cost = entry_nbytes(image)
        if cost > self._max_bytes:
            w, h = image.size
            raise ImageTooLargeError(
                f"image {image.id} ({w}x{h}) needs {cost:,} bytes, more than the store's whole budget of "
                f"{self._max_bytes:,}; create the ImageStore with a larger max_bytes"
            )
        with self._lock:
            if image.id in self._items:
                self._items.move_to_end(image.id)
                return image.id
            while self._nbytes + cost > self._max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._nbytes -= evicted
            self._items[image.id] = (image, cost)
            self._nbytes += cost
        return image.id

    def get(self, image_id: str) -> SourceImage:
        """Return the stored image and mark it as recently used.

        Raises:
            ImageNotFoundError: No image has this id (never stored, or evicted).
        """
        with self._lock:
            try:
                self._items.move_to_end(image_id)
                return self._items[image_id][0]
            except KeyError:
                pass
        raise ImageNotFoundError(
            f"unknown image id {image_id!r}; images are evicted after the store holds more than "
            f"{self._max_bytes:,} bytes (least recently used first), so put the image again"
        )

    def discard(self, image_id: str) -> None:
        """Remove an image if it is stored; do nothing otherwise."""
        with self._lock:
            item = self._items.pop(image_id, None)
            if item is not None:
                self._nbytes -= item[1]

    def clear(self) -> None:
        """Remove every image."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def ids(self) -> list[str]:
        """Stored ids from least to most recently used."""
        with self._lock:
            return list(self._items)

    def __contains__(self, image_id: object) -> bool:
        with self._lock:
            return image_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return f"ImageStore({len(self)} images, {self._nbytes:,}/{self._max_bytes:,} bytes)"
