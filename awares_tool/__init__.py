"""awares: let a VLM look at a cheap low-res view and fetch high-res crops only where the question needs them.

The public surface is listed in ``__all__`` (a test pins it). Importing this package needs only pillow and
pydantic; model backends and adapters import their heavy libraries when they are built.

The sub-packages name the concepts, each importing only those listed before it:
``errors`` -> ``tokens/`` (visual-token counts) -> ``crops/`` (crop sets, geometry) -> ``images/`` (sources,
limits, low-res views) -> ``protocol/`` (prompts, parsing requests) -> ``backends/`` (models) ->
``episode/`` (one low-res look, crops on request, the answer and its cost) -> ``adapters/``, ``ui/``, ``cli``.
"""

from __future__ import annotations

from awares_tool import _moved
from awares_tool.backends import resolve_backend
from awares_tool.backends.base import GenerationSettings, Message, ModelCard, VLMBackend
from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.crops import FULL_IMAGE, CropSet, get_crop_set
from awares_tool.crops.overlay import draw_overlay
from awares_tool.episode import CropResult, acrop_on_demand, crop_on_demand, crop_on_demand_batch
from awares_tool.errors import (
    AwaresError,
    BackendError,
    ImageError,
    MissingExtraError,
    RequestError,
)
from awares_tool.images import ImageLimits, SourceImage, load_image, open_image
from awares_tool.images.lowres import make_lowres_view, parse_lowres
from awares_tool.images.store import ImageStore
from awares_tool.protocol import CropRequest, FinalAnswer, build_system_prompt, parse_reply
from awares_tool.tokens import count_visual_tokens, get_family, rtr

_moved.install()  # the 0.1 module paths (awares_tool.lowres, ...) keep working for one release

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # the loop
    "crop_on_demand",
    "acrop_on_demand",
    "crop_on_demand_batch",
    "CropResult",
    # backends
    "VLMBackend",
    "Message",
    "GenerationSettings",
    "ModelCard",
    "ScriptedBackend",
    "resolve_backend",
    # crop engine
    "CropSet",
    "get_crop_set",
    "FULL_IMAGE",
    "make_lowres_view",
    "parse_lowres",
    "draw_overlay",
    # images
    "open_image",
    "load_image",
    "SourceImage",
    "ImageLimits",
    "ImageStore",
    # protocol
    "build_system_prompt",
    "parse_reply",
    "CropRequest",
    "FinalAnswer",
    # token accounting
    "count_visual_tokens",
    "get_family",
    "rtr",
    # errors
    "AwaresError",
    "ImageError",
    "RequestError",
    "BackendError",
    "MissingExtraError",
]
