"""The built-in crop sets: ``awares9`` (the official geometry), ``readme`` and regular grids."""

from __future__ import annotations

import re
from abc import abstractmethod

from awares_tool.crops.base import _FULL_DESCRIPTION, FULL_IMAGE, Box, CropSet, Region
from awares_tool.errors import CropSetError

__all__ = ["Awares9CropSet", "ReadmeCropSet", "GridCropSet"]


# --- the nine-region sets ---------------------------------------------------------------------------

_HALVES_REGIONS = (
    Region(name="0", description="top-left quarter"),
    Region(name="1", description="top-right quarter"),
    Region(name="2", description="bottom-left quarter"),
    Region(name="3", description="bottom-right quarter"),
    Region(name="4", description="center"),
    Region(name="5", description="top half"),
    Region(name="6", description="bottom half"),
    Region(name="7", description="left half"),
    Region(name="8", description="right half"),
    Region(name=FULL_IMAGE, description=_FULL_DESCRIPTION),
)

# Which interval of each axis a region takes: (x part, y part).
_HALVES_LAYOUT: dict[str, tuple[str, str]] = {
    "0": ("low", "low"),
    "1": ("high", "low"),
    "2": ("low", "high"),
    "3": ("high", "high"),
    "4": ("mid", "mid"),
    "5": ("full", "low"),
    "6": ("full", "high"),
    "7": ("low", "full"),
    "8": ("high", "full"),
}


class _HalvesCropSet(CropSet):
    """Quarters, center and halves; subclasses give the per-axis intervals."""

    @property
    def regions(self) -> tuple[Region, ...]:
        return _HALVES_REGIONS

    @abstractmethod
    def _axis(self, length: int) -> dict[str, tuple[int, int]]:
        """The ``low``/``high``/``mid``/``full`` intervals of an axis of ``length`` pixels."""

    def _region_box(self, name: str, width: int, height: int) -> Box:
        xpart, ypart = _HALVES_LAYOUT[name]
        x0, x1 = self._axis(width)[xpart]
        y0, y1 = self._axis(height)[ypart]
        return (x0, y0, x1, y1)


class Awares9CropSet(_HalvesCropSet):
    """The official AwaRes crop set, with the evaluation code's exact geometry.

    ``cw = max(100, W // 2)``, ``ch = max(100, H // 2)``; quarters and halves are anchored to the
    image corners and the center is ``((W - cw) // 2, (H - ch) // 2, (W + cw) // 2, (H + ch) // 2)``.
    An image under 100 px on either side yields the full image for every name, as the official
    code does (a 100 px crop would not fit).
    """

    name = "awares9"
    MIN_SIDE = 100

    def _axis(self, length: int) -> dict[str, tuple[int, int]]:
        c = max(self.MIN_SIDE, length // 2)
        return {
            "low": (0, c),
            "high": (length - c, length),
            "mid": ((length - c) // 2, (length + c) // 2),
            "full": (0, length),
        }

    def _region_box(self, name: str, width: int, height: int) -> Box:
        if width < self.MIN_SIDE or height < self.MIN_SIDE:
            return (0, 0, width, height)
        return super()._region_box(name, width, height)


class ReadmeCropSet(_HalvesCropSet):
    """The README variant: plain half-size boxes, no minimum side, center ``(W//4 .. 3W//4)``.

    An axis of a single pixel cannot be halved; every region then takes that whole axis so that no
    box comes out empty.
    """

    name = "readme"

    def _axis(self, length: int) -> dict[str, tuple[int, int]]:
        if length < 2:
            return dict.fromkeys(("low", "high", "mid", "full"), (0, length))
        c = length // 2
        return {
            "low": (0, c),
            "high": (length - c, length),
            "mid": (length // 4, 3 * length // 4),
            "full": (0, length),
        }


# --- regular grids ----------------------------------------------------------------------------------

_MAX_GRID_SIDE = 16


def _axis_words(n: int, low: str, high: str) -> list[str] | None:
    """Position words for ``n`` cells along an axis, or ``None`` when there are too many to name."""
    return {1: [""], 2: [low, high], 3: [low, "middle", high]}.get(n)


class GridCropSet(CropSet):
    """A ``rows`` x ``cols`` grid of cells named ``r{row}c{col}`` (0-based), plus ``all``.

    Cell edges sit at ``i * W // cols``, so with ``overlap == 0`` the cells tile the image exactly
    (no gaps, no overlap) whenever the image has at least one pixel per cell. ``overlap`` grows each
    cell by that fraction of its own size on every side, clipped to the image, so that an object on
    a cell border is whole in at least one crop.
    """

    def __init__(self, rows: int, cols: int, overlap: float = 0.0) -> None:
        for label, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _MAX_GRID_SIDE:
                raise CropSetError(f"grid {label} must be an int in 1..{_MAX_GRID_SIDE}, got {v!r}")
        if not 0.0 <= overlap <= 1.0:
            raise CropSetError(f"grid overlap must be in [0, 1], got {overlap!r}")
        self.rows, self.cols, self.overlap = rows, cols, float(overlap)
        self.name = f"grid:{rows}x{cols}" + (f"+{self.overlap:g}" if self.overlap else "")
        self._regions = self._build_regions()

    def _build_regions(self) -> tuple[Region, ...]:
        rwords = _axis_words(self.rows, "top", "bottom")
        cwords = _axis_words(self.cols, "left", "right")
        out = []
        for r in range(self.rows):
            for c in range(self.cols):
                text = f"row {r + 1} of {self.rows}, column {c + 1} of {self.cols}"
                if rwords is not None and cwords is not None:
                    parts = [w for w in (rwords[r], cwords[c]) if w]
                    where = "center" if parts == ["middle", "middle"] else "-".join(parts)
                    if where:
                        text += f" ({where})"
                out.append(Region(name=f"r{r}c{c}", description=text))
        out.append(Region(name=FULL_IMAGE, description=_FULL_DESCRIPTION))
        return tuple(out)

    @property
    def regions(self) -> tuple[Region, ...]:
        return self._regions

    @staticmethod
    def _cell(i: int, n: int, length: int, overlap: float) -> tuple[int, int]:
        lo = min(i * length // n, length - 1)  # min/max keep cells >= 1 px when length < n
        hi = max((i + 1) * length // n, lo + 1)
        if overlap:
            grow = round(overlap * (hi - lo))
            lo, hi = max(0, lo - grow), min(length, hi + grow)
        return lo, hi

    def _region_box(self, name: str, width: int, height: int) -> Box:
        m = re.fullmatch(r"r(\d+)c(\d+)", name)
        assert m is not None  # has() already checked the name
        r, c = int(m.group(1)), int(m.group(2))
        x0, x1 = self._cell(c, self.cols, width, self.overlap)
        y0, y1 = self._cell(r, self.rows, height, self.overlap)
        return (x0, y0, x1, y1)
