"""Crop sets: the discrete regions a model may request, and their exact pixel geometry.

A crop set is a small, named menu of regions. The model sees the menu (``describe()``) in its system
prompt and asks for regions by name; :meth:`CropSet.box` turns a name into a ``(left, top, right,
bottom)`` box on the *original* image. The default set, ``awares9``, reproduces the official AwaRes
evaluation code pixel for pixel, because a fine-tuned model was trained against exactly that geometry.

Built-in sets (see :func:`get_crop_set`):

* ``awares9``: four quarters, center, four halves and ``all``; sides of at least 100 px.
* ``readme``: the same names with plain half-size boxes (the variant in the official README).
* ``grid:RxC`` / ``grid:RxC+OVERLAP``: a regular grid, optionally with overlapping cells.
* a JSON/YAML file of normalised boxes, or a :class:`NormalizedCropSet` built in Python.

This module holds the :class:`CropSet` base, the built-in sets and the lookup. Two neighbours hold
the rest and are re-exported here, so ``from awares_tool.crops import ...`` reaches everything:
:mod:`awares_tool.crop_files` (user-defined sets of normalised boxes and their JSON/YAML files) and
:mod:`awares_tool.crop_mapping` (mapping evidence boxes back to crops with :func:`regions_for_box`,
which builds the supervision targets of the training data).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from functools import lru_cache

from pydantic import BaseModel

from awares_tool.errors import CropSetError, UnknownRegionError

__all__ = [
    "Box",
    "FULL_IMAGE",
    "Region",
    "CropSet",
    "Awares9CropSet",
    "ReadmeCropSet",
    "GridCropSet",
    "NormalizedCropSet",
    "CropSetFile",
    "RegionSpec",
    "get_crop_set",
    "load_crop_set",
    "iou",
    "coverage",
    "snap_box",
    "regions_for_box",
]

Box = tuple[int, int, int, int]
"""A pixel box ``(left, top, right, bottom)``, right/bottom exclusive, as ``PIL.Image.crop`` takes it."""

FULL_IMAGE = "all"
"""The region name that always means the whole image at native resolution."""

_FULL_DESCRIPTION = "the whole image at full resolution"


class Region(BaseModel, frozen=True):
    """One requestable region of a crop set: the name the model says and what it covers."""

    name: str
    description: str


class CropSet(ABC):
    """A named, ordered menu of regions and the rule that turns each into a pixel box.

    Subclasses define :attr:`regions` and :meth:`_region_box`; the base class handles lookup,
    validation, ``all`` and the prompt text, so every set behaves the same at the edges.
    """

    name: str

    @property
    @abstractmethod
    def regions(self) -> tuple[Region, ...]:
        """Every requestable region in menu order, including ``all`` when the set has it."""

    @abstractmethod
    def _region_box(self, name: str, width: int, height: int) -> Box:
        """The box of a known region other than ``all`` on a ``width`` x ``height`` image."""

    def region_names(self) -> list[str]:
        """The region names in menu order."""
        return [r.name for r in self.regions]

    def has(self, name: str) -> bool:
        """Whether ``name`` is a region of this set (exact, case-sensitive match)."""
        return isinstance(name, str) and any(r.name == name for r in self.regions)

    def box(self, name: str, width: int, height: int) -> Box:
        """The pixel box of region ``name`` on a ``width`` x ``height`` image.

        Raises:
            UnknownRegionError: ``name`` is not in this set; the message lists the valid names.
            ValueError: the image size is not two positive integers.
        """
        _check_size(width, height)
        if not isinstance(name, str):
            raise TypeError(f"region name must be a str, got {type(name).__name__} {name!r}")
        if not self.has(name):
            valid = ", ".join(repr(n) for n in self.region_names())
            raise UnknownRegionError(
                f"unknown region {name!r} for crop set {self.name!r}; valid regions: {valid}"
            )
        if name == FULL_IMAGE:
            return (0, 0, width, height)
        return self._region_box(name, width, height)

    def boxes(self, width: int, height: int) -> dict[str, Box]:
        """Every region's box, in menu order."""
        return {n: self.box(n, width, height) for n in self.region_names()}

    def describe(self) -> str:
        """The crop map for a prompt, one line per region: ``- `0`: top-left quarter``."""
        return "\n".join(f"- `{r.name}`: {r.description}" for r in self.regions)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, regions={self.region_names()!r})"


def _check_size(width: int, height: int) -> None:
    for label, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"image {label} must be a positive int, got {v!r}")


# Shared by crop_files (normalised boxes to pixels) and crop_mapping (thresholds).
_EPS = 1e-9  # absorbs float noise such as 0.3 * 10 == 3.0000000000000004 before floor/ceil


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


# --- lookup -----------------------------------------------------------------------------------------

_FILE_SUFFIXES = (".json", ".yaml", ".yml")
_VALID_FORMS = (
    "'awares9' (default), 'readme', 'grid:RxC' (e.g. 'grid:3x3'), 'grid:RxC+OVERLAP' "
    "(e.g. 'grid:3x3+0.1'), or a path to a .json/.yaml/.yml crop-set file"
)
_GRID_RE = re.compile(r"grid:(\d+)x(\d+)(?:\+(\d*\.?\d+))?")


@lru_cache(maxsize=64)
def _builtin(spec: str) -> CropSet | None:
    if spec == "awares9":
        return Awares9CropSet()
    if spec == "readme":
        return ReadmeCropSet()
    m = _GRID_RE.fullmatch(spec)
    if m:
        return GridCropSet(int(m.group(1)), int(m.group(2)), float(m.group(3) or 0.0))
    return None


def get_crop_set(spec: str | os.PathLike[str] | CropSet | None = None) -> CropSet:
    """Resolve a crop-set spec to a :class:`CropSet`.

    Args:
        spec: ``None`` (the official ``awares9``), a built-in name (``awares9``, ``readme``,
            ``grid:RxC[+OVERLAP]``), a path to a JSON/YAML file, or a ready :class:`CropSet`.

    Returns:
        The crop set; built-in sets are cached, so the same spec gives the same instance.

    Raises:
        CropSetError: the spec is not one of the valid forms, or the file is invalid.
    """
    if spec is None:
        return _builtin("awares9")  # type: ignore[return-value]
    if isinstance(spec, CropSet):
        return spec
    if isinstance(spec, os.PathLike):
        return load_crop_set(spec)
    if not isinstance(spec, str):
        raise TypeError(f"crop-set spec must be a str, path, CropSet or None, got {type(spec).__name__}")
    key = spec.strip().lower().replace(" ", "")
    found = _builtin(key)
    if found is not None:
        return found
    if key.endswith(_FILE_SUFFIXES):
        return load_crop_set(spec.strip())
    raise CropSetError(f"unknown crop set {spec!r}; valid forms: {_VALID_FORMS}")


# --- re-exports -------------------------------------------------------------------------------------
# At the bottom on purpose: both modules subclass or use the names defined above, and the package's
# __init__ imports this module first, so they always find them already defined.
from awares_tool.crop_files import (  # noqa: E402
    CropSetFile,
    NormalizedCropSet,
    RegionSpec,
    load_crop_set,
)
from awares_tool.crop_mapping import coverage, iou, regions_for_box, snap_box  # noqa: E402
