"""User-defined crop sets of normalised boxes, and their JSON/YAML files.

When no built-in layout fits a task, a crop set can be given as boxes in fractions of the image size
(:class:`NormalizedCropSet`), either in Python or in a ``.json``/``.yaml`` file whose schema is
:class:`CropSetFile` (:func:`load_crop_set`). Fractions keep one file valid for every image size;
the rounding rule below keeps every region non-empty and gap-free. Everything here is re-exported by
:mod:`awares_tool.crops`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from awares_tool.crops.base import _EPS, _FULL_DESCRIPTION, FULL_IMAGE, Box, CropSet, Region
from awares_tool.errors import CropSetError

__all__ = ["RegionSpec", "CropSetFile", "NormalizedCropSet", "load_crop_set"]


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
