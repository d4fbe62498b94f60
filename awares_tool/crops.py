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

The module also maps evidence boxes back to crops (:func:`regions_for_box`), which builds the
supervision targets of the training data.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

logger = logging.getLogger(__name__)

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


# --- user-defined sets of normalised boxes ----------------------------------------------------------


class RegionSpec(BaseModel):
    """One region of a crop-set file: a name, a normalised ``[x0, y0, x1, y1]`` box, a description."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    box: tuple[float, float, float, float]
    description: str | None = None


class CropSetFile(BaseModel):
    """The schema of a JSON/YAML crop-set file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="set name; defaults to the file stem")
    regions: list[RegionSpec] = Field(min_length=1)
    include_full: bool = Field(default=True, description="add the `all` region")
    min_side: int = Field(default=0, ge=0, description="images with a side under this give the full image")


class NormalizedCropSet(CropSet):
    """A crop set of boxes given as fractions of the image size, for any layout a task needs.

    Pixel boxes are ``floor`` of the start and ``ceil`` of the end, so a region never comes out
    empty (at least 1 px) and adjacent regions that share an edge never leave a gap.

    Args:
        name: The set's name.
        boxes: Region name -> ``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``.
        descriptions: Optional region name -> text for the prompt; missing ones are generated.
        include_full: Whether to add the ``all`` region.
        min_side: Images with a side under this many pixels give the full image for every region.
    """

    def __init__(
        self,
        name: str,
        boxes: Mapping[str, Sequence[float]],
        descriptions: Mapping[str, str] | None = None,
        *,
        include_full: bool = True,
        min_side: int = 0,
    ) -> None:
        descriptions = dict(descriptions or {})
        if not boxes:
            raise CropSetError(f"crop set {name!r} has no regions")
        unknown = set(descriptions) - set(boxes)
        if unknown:
            raise CropSetError(f"crop set {name!r}: descriptions for unknown regions {sorted(unknown)}")
        if min_side < 0:
            raise CropSetError(f"crop set {name!r}: min_side must be >= 0, got {min_side}")
        self.name, self.include_full, self.min_side = name, include_full, min_side
        self._norm: dict[str, tuple[float, float, float, float]] = {}
        regions = []
        for rname, box in boxes.items():
            self._norm[rname] = _check_norm_box(name, rname, box)
            x0, y0, x1, y1 = self._norm[rname]
            text = descriptions.get(rname) or f"x {x0:.0%} to {x1:.0%}, y {y0:.0%} to {y1:.0%} of the image"
            regions.append(Region(name=rname, description=text))
        if include_full:
            regions.append(Region(name=FULL_IMAGE, description=_FULL_DESCRIPTION))
        self._regions = tuple(regions)

    @classmethod
    def from_spec(cls, spec: CropSetFile, *, default_name: str = "custom") -> NormalizedCropSet:
        """Build a set from a parsed crop-set file."""
        names = [r.name for r in spec.regions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CropSetError(f"crop set {spec.name or default_name!r}: duplicate region names {dupes}")
        return cls(
            spec.name or default_name,
            {r.name: r.box for r in spec.regions},
            {r.name: r.description for r in spec.regions if r.description},
            include_full=spec.include_full,
            min_side=spec.min_side,
        )

    def to_spec(self) -> CropSetFile:
        """The file form of this set (round-trips through :meth:`from_spec`)."""
        return CropSetFile(
            name=self.name,
            regions=[
                RegionSpec(name=r.name, box=self._norm[r.name], description=r.description)
                for r in self._regions
                if r.name in self._norm
            ],
            include_full=self.include_full,
            min_side=self.min_side,
        )

    @property
    def regions(self) -> tuple[Region, ...]:
        return self._regions

    def _region_box(self, name: str, width: int, height: int) -> Box:
        if width < self.min_side or height < self.min_side:
            return (0, 0, width, height)
        x0, y0, x1, y1 = self._norm[name]
        left, right = _norm_interval(x0, x1, width)
        top, bottom = _norm_interval(y0, y1, height)
        return (left, top, right, bottom)


_EPS = 1e-9  # absorbs float noise such as 0.3 * 10 == 3.0000000000000004 before floor/ceil


def _norm_interval(a: float, b: float, length: int) -> tuple[int, int]:
    lo = min(math.floor(a * length + _EPS), length - 1)
    hi = min(max(math.ceil(b * length - _EPS), lo + 1), length)
    return lo, hi


def _check_norm_box(set_name: str, region: str, box: Sequence[float]) -> tuple[float, float, float, float]:
    where = f"crop set {set_name!r}, region {region!r}"
    if not isinstance(region, str) or not region.strip():
        raise CropSetError(f"crop set {set_name!r}: region names must be non-empty strings, got {region!r}")
    if region == FULL_IMAGE:
        raise CropSetError(f"{where}: {FULL_IMAGE!r} is reserved for the full image; use include_full")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise CropSetError(f"{where}: box must be 4 numbers [x0, y0, x1, y1], got {box!r}") from e
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise CropSetError(
            f"{where}: box {[x0, y0, x1, y1]} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
            "(normalised coordinates, left/top/right/bottom)"
        )
    return (x0, y0, x1, y1)


def load_crop_set(path: str | os.PathLike[str]) -> NormalizedCropSet:
    """Load a crop set of normalised boxes from a ``.json``, ``.yaml`` or ``.yml`` file.

    Raises:
        CropSetError: the file is missing, unreadable or invalid; the message names the file and,
            where it applies, the region.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise CropSetError(f"cannot read crop-set file {str(p)!r}: {e}") from e
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json.JSONDecodeError / yaml.YAMLError
        raise CropSetError(f"crop-set file {str(p)!r} is not valid {p.suffix[1:].upper()}: {e}") from e
    try:
        spec = CropSetFile.model_validate(data)
    except ValidationError as e:
        raise CropSetError(f"crop-set file {str(p)!r} does not match the crop-set schema: {e}") from e
    try:
        return NormalizedCropSet.from_spec(spec, default_name=p.stem)
    except CropSetError as e:
        raise CropSetError(f"crop-set file {str(p)!r}: {e}") from e


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


# --- mapping evidence boxes to regions --------------------------------------------------------------

_MAX_COVER_COMBINATIONS = 50_000  # bound on the brute force for "cover" with large grids


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes; 0.0 when both are empty."""
    inter = _area(_intersection(a, b))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def coverage(box: Sequence[float], region: Sequence[float]) -> float:
    """Fraction of ``box``'s area that lies inside ``region`` (0.0 for an empty ``box``)."""
    area = _area(box)
    return _area(_intersection(box, region)) / area if area > 0 else 0.0


def _union_area_within(box: Sequence[float], rects: Sequence[Sequence[float]]) -> float:
    """Area of ``box`` covered by the union of ``rects`` (coordinate compression; rects are few)."""
    clipped = [_intersection(r, box) for r in rects]
    clipped = [c for c in clipped if _area(c) > 0]
    if not clipped:
        return 0.0
    xs = sorted({v for c in clipped for v in (c[0], c[2])})
    total = 0.0
    for xa, xb in itertools.pairwise(xs):
        spans = sorted((c[1], c[3]) for c in clipped if c[0] <= xa and c[2] >= xb)
        covered, end = 0.0, -math.inf
        for y0, y1 in spans:
            if y1 > end:
                covered += y1 - max(y0, end)
                end = y1
        total += covered * (xb - xa)
    return total


def _candidates(
    crop_set: CropSet, width: int, height: int, include_full: bool
) -> list[tuple[int, str, Box]]:
    return [
        (i, n, b)
        for i, (n, b) in enumerate(crop_set.boxes(width, height).items())
        if include_full or n != FULL_IMAGE
    ]


def _clip(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"a box is (left, top, right, bottom), got {box!r}")
    return _intersection(box, (0, 0, width, height))


def snap_box(
    box: Sequence[float], crop_set: CropSet, width: int, height: int, *, include_full: bool = False
) -> str:
    """The single region whose box has the highest IoU with ``box``.

    Ties go to the smaller region, then to menu order. When no region overlaps the box at all
    (or the set has nothing but ``all``), the answer is ``all`` if the set has it.

    Raises:
        CropSetError: nothing overlaps the box and the set has no ``all`` to fall back to.
    """
    target = _clip(box, width, height)
    cands = _candidates(crop_set, width, height, include_full)
    scored = [(iou(target, b), -_area(b), -i, n) for i, n, b in cands]
    best = max(scored, default=None)
    if best is not None and best[0] > 0:
        return best[3]
    if crop_set.has(FULL_IMAGE):
        return FULL_IMAGE
    raise CropSetError(f"box {tuple(box)} overlaps no region of crop set {crop_set.name!r}")


def regions_for_box(
    box: Sequence[float],
    crop_set: CropSet,
    width: int,
    height: int,
    *,
    rule: Literal["iou", "cover"] = "iou",
    threshold: float | None = None,
    max_regions: int = 4,
) -> list[str]:
    """Map an evidence box (e.g. from a grounding model) to the crops a model should request.

    ``all`` is never a candidate: an empty answer tells the caller to fall back to it.

    Args:
        box: ``(left, top, right, bottom)`` in pixels of the original image; clipped to the image.
        crop_set: The crop set to choose from.
        width: Image width in pixels.
        height: Image height in pixels.
        rule: ``"iou"``: every region with IoU >= ``threshold`` (the paper's labelling rule), in menu
            order. ``"cover"``: the smallest set of regions (fewest, then least total area, then menu
            order) whose union covers at least ``threshold`` of the box.
        threshold: Defaults to 0.5 for ``"iou"`` and 1.0 (the whole box) for ``"cover"``.
        max_regions: Largest set the ``"cover"`` rule tries.

    Returns:
        Region names, or ``[]`` when none qualifies.
    """
    if rule not in ("iou", "cover"):
        raise ValueError(f"rule must be 'iou' or 'cover', got {rule!r}")
    if threshold is None:
        threshold = 0.5 if rule == "iou" else 1.0
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    target = _clip(box, width, height)
    cands = _candidates(crop_set, width, height, include_full=False)
    if rule == "iou":
        return [n for _, n, b in cands if iou(target, b) >= threshold - _EPS]
    box_area = _area(target)
    if box_area <= 0:
        return []
    # A member that misses the box could be dropped without losing coverage, so a minimal set
    # only ever holds regions that intersect it; this keeps the brute force small.
    cands = [c for c in cands if _area(_intersection(c[2], target)) > 0]
    tried = 0
    for k in range(1, min(max_regions, len(cands)) + 1):
        best: tuple[float, tuple[int, ...], list[str]] | None = None
        for combo in itertools.combinations(cands, k):
            tried += 1
            if tried > _MAX_COVER_COMBINATIONS:
                logger.warning("regions_for_box: gave up after %d combinations", _MAX_COVER_COMBINATIONS)
                return []
            covered = _union_area_within(target, [c[2] for c in combo]) / box_area
            if covered >= threshold - _EPS:
                key = (sum(_area(c[2]) for c in combo), tuple(c[0] for c in combo))
                if best is None or key < best[:2]:
                    best = (*key, [c[1] for c in combo])
        if best is not None:
            return best[2]
    return []
