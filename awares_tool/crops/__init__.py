"""Crop sets: the discrete regions a model may request, and their exact pixel geometry.

A crop set is a small, named menu of regions. The model sees the menu (``describe()``) in its system
prompt and asks for regions by name; :meth:`CropSet.box` turns a name into a ``(left, top, right,
bottom)`` box on the *original* image. The default set, ``awares9``, reproduces the official AwaRes
evaluation code pixel for pixel, because a fine-tuned model was trained against exactly that geometry.

Modules, each importing only those above it:

* :mod:`.base`: the :class:`CropSet` contract, :data:`FULL_IMAGE`, :data:`Box`;
* :mod:`.builtin`: ``awares9``, ``readme`` and ``grid:RxC[+OVERLAP]``;
* :mod:`.files`: user-defined sets of normalised boxes and their JSON/YAML files;
* :mod:`.mapping`: evidence boxes back to crops (:func:`regions_for_box`, the training targets);
* :mod:`.registry`: :func:`get_crop_set`, from a spec to a set;
* :mod:`.overlay`: the crop set drawn over an image.
"""

from awares_tool.crops.base import FULL_IMAGE, Box, CropSet, Region
from awares_tool.crops.builtin import Awares9CropSet, GridCropSet, ReadmeCropSet
from awares_tool.crops.files import CropSetFile, NormalizedCropSet, RegionSpec, load_crop_set
from awares_tool.crops.mapping import coverage, iou, regions_for_box, snap_box
from awares_tool.crops.registry import get_crop_set

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
