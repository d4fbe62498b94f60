"""Resolve a crop-set spec (a built-in name, a grid spec, a file path or an object) to a :class:`CropSet`."""

from __future__ import annotations

import os
import re
from functools import lru_cache

from awares_tool.crops.base import CropSet
from awares_tool.crops.builtin import Awares9CropSet, GridCropSet, ReadmeCropSet
from awares_tool.crops.files import load_crop_set
from awares_tool.errors import CropSetError

__all__ = ["get_crop_set"]

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
