"""A budget of pixels being decoded at once, shared by the requests of one server.

Limits on one image (``ImageLimits.max_pixels``) do not bound a server: forty concurrent calls on 50-megapixel
images decode two billion pixels (several GB) at the same time. A :class:`PixelBudget` makes each decode wait until
its pixels fit in what is left; an image larger than the whole budget still runs, alone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["PixelBudget"]


class PixelBudget:
    """A counting semaphore in pixels.

    Args:
        max_pixels: Pixels that may be decoded at once (RGB: 3 bytes each).
    """

    def __init__(self, max_pixels: int) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.max_pixels = max_pixels
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: tuple[int, int]) -> Iterator[None]:
        """Wait until ``width * height`` pixels fit (or the budget is idle, for a larger image), hold them."""
        need = min(size[0] * size[1], self.max_pixels)
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + need <= self.max_pixels)
            self.in_use += need
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= need
                self._cond.notify_all()
