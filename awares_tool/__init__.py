"""awares: let a VLM look at a cheap low-res view and fetch high-res crops only where the question needs them.

The public surface is listed in ``__all__`` (a test pins it). Importing this package needs only pillow and
pydantic; model backends and adapters import their heavy libraries when they are built.
"""

from __future__ import annotations

from .backends import resolve_backend
from .backends.base import GenerationSettings, Message, ModelCard, VLMBackend
from .backends.scripted import ScriptedBackend
from .crops import FULL_IMAGE, CropSet, get_crop_set
from .errors import (
    AwaresError,
    BackendError,
    ImageError,
    MissingExtraError,
    RequestError,
)
from .images import ImageLimits, SourceImage, load_image, open_image
from .loop import acrop_on_demand, crop_on_demand, crop_on_demand_batch
from .lowres import make_lowres_view, parse_lowres
from .overlay import draw_overlay
from .protocol import CropRequest, FinalAnswer, build_system_prompt, parse_reply
from .result import CropResult
from .store import ImageStore
from .tokens import count_visual_tokens, get_family, rtr

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
