"""The crop-set contract: a named menu of regions and the rule that turns a name into a pixel box.

Every crop set (the built-in ones in :mod:`.builtin`, user files in :mod:`.files`) subclasses
:class:`CropSet`; the base class handles lookup, validation, ``all`` and the prompt text, so every set
behaves the same at the edges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel

from awares_tool.errors import UnknownRegionError

__all__ = ["Box", "FULL_IMAGE", "Region", "CropSet"]

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
