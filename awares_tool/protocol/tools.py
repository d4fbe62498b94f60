"""The ``get_crops`` tool, declared once for every backend and adapter.

Native function-calling backends (OpenAI-compatible servers), LangChain and MCP all read the tool
from here: the name :data:`GET_CROPS_TOOL`, the argument model :class:`GetCropsArgs` and the
OpenAI ``tools`` entry from :func:`get_crops_tool`. The names of the foreign zoom tools that the
parser also accepts (so that models trained for them can drive our crops) live here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from awares_tool.crops import CropSet

__all__ = ["GET_CROPS_TOOL", "ZOOM_TOOL_NAMES", "COMPUTER_TOOL_NAMES", "GetCropsArgs", "get_crops_tool", "tool_description"]

GET_CROPS_TOOL = "get_crops"
"""Name of our tool, in every form (text keyword ``GET_CROPS``, function name, MCP tool)."""

ZOOM_TOOL_NAMES: tuple[str, ...] = ("image_zoom_in_tool", "zoom_in")
"""Free-form zoom tools of other models that the parser accepts as bbox requests:
``image_zoom_in_tool`` (Qwen-Agent for Qwen3-VL, DeepEyes) and the generic ``zoom_in``."""

COMPUTER_TOOL_NAMES: tuple[str, ...] = ("computer", "computer_use")
"""Computer-use tools of the big APIs' agents; their ``zoom`` action (``{"action": "zoom", "region": [x1, y1, x2,
y2]}``) is accepted and snapped to the crop set, since such agents were not trained on our region names."""


class GetCropsArgs(BaseModel):
    """Arguments of ``get_crops``: which regions of the crop set to fetch at full resolution."""

    model_config = ConfigDict(extra="forbid")

    regions: list[str] = Field(
        min_length=1,
        description="Names of the regions to fetch at full resolution, e.g. ['3'] or ['0', '5'].",
    )


def tool_description(crop_set: CropSet) -> str:
    """The tool's description: what it does and the region map, shared by every adapter."""
    return (
        "Fetch high-resolution crops of the image when the low-resolution view is not enough to "
        "answer. Call it at most once, with the fewest regions that contain the evidence. "
        f"Regions of crop set '{crop_set.name}':\n{crop_set.describe()}"
    )


def get_crops_tool(crop_set: CropSet) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for ``get_crops`` over ``crop_set``.

    The ``enum`` restricts the names to the crop set, so servers with constrained decoding can only
    emit valid requests; the parser still checks them, since most servers do not enforce it.

    Args:
        crop_set: The crop set whose region names the tool accepts.

    Returns:
        ``{"type": "function", "function": {"name": "get_crops", "description": ..., "parameters": ...}}``.
    """
    return {
        "type": "function",
        "function": {
            "name": GET_CROPS_TOOL,
            "description": tool_description(crop_set),
            "parameters": {
                "type": "object",
                "properties": {
                    "regions": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(crop_set.region_names())},
                        "minItems": 1,
                        "description": "Names of the regions to fetch at full resolution.",
                    }
                },
                "required": ["regions"],
                "additionalProperties": False,
            },
        },
    }
