"""The schemas of the adapter tools: argument types, input models and results.

Declared once here so that the LangChain tools and the MCP server publish exactly the same JSON
schemas (a model sees the same tool whichever framework serves it). Argument models forbid extra
fields, so a misspelt argument is an error the model can read rather than a silently ignored key.
Re-exported by :mod:`awares_tool.adapters.common`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from awares_tool.protocol import GetCropsArgs

__all__ = [
    "ImageRef", "McpImageRef", "RegionNames", "Question", "ViewImageInput", "GetCropsInput", "AskImageInput",
    "Size", "RegionInfo", "RegionsResult", "ViewResult", "CropInfo", "CropsResult", "AskResult",
    "EncodedImage", "ViewOutput", "CropsOutput",
]

# ----------------------------------------------------------------------------- argument types
ImageRef = Annotated[str, Field(
    min_length=1, max_length=4096,
    description="The image: an image id returned by view_image, or the path of an image file inside one of "
    "the allowed folders (relative to it, or absolute).",
)]
#: ``ImageRef`` as MCP tools take it: ``image_path`` is accepted for ``image`` (lmms-eval's MCP mode passes image
#: paths under that name). LangChain tools keep the plain ``image`` (their argument filter would drop an alias).
McpImageRef = Annotated[str, Field(
    min_length=1, max_length=4096, validation_alias=AliasChoices("image", "image_path"),
    description="The image: an image id returned by view_image, or the path of an image file inside one of the "
    "allowed folders (relative to it, or absolute). `image_path` is accepted as well.",
)]
RegionNames = Annotated[list[str], GetCropsArgs.model_fields["regions"]]
Question = Annotated[str, Field(min_length=1, max_length=4000, description="The question about the image.")]


class ViewImageInput(BaseModel):
    """Arguments of ``view_image``."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef


class GetCropsInput(GetCropsArgs):
    """Arguments of ``get_crops`` in the adapters: the protocol's ``regions`` plus which image."""

    image: ImageRef


class AskImageInput(BaseModel):
    """Arguments of ``ask_image``."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef
    question: Question


# ----------------------------------------------------------------------------- results
Size = tuple[int, int]


class RegionInfo(BaseModel):
    name: str
    description: str


class RegionsResult(BaseModel):
    """The crop set a server offers (``list_regions``)."""

    crop_set: str
    regions: list[RegionInfo]
    max_crops: int = Field(description="Most regions one get_crops call may ask for.")


class ViewResult(BaseModel):
    """What ``view_image`` returns beside the low-res image."""

    image_id: str = Field(description="Pass this as `image` to get_crops / ask_image.")
    image_size: Size = Field(description="(width, height) of the original image.")
    view_size: Size = Field(description="(width, height) of the low-res view sent.")
    view_tokens: int | None = Field(None, description="Visual tokens of the view for the configured model family.")
    full_tokens: int | None = Field(None, description="Visual tokens of the whole image at native resolution.")
    crop_set: str
    regions: list[str]


class CropInfo(BaseModel):
    region: str
    box: tuple[int, int, int, int] = Field(description="(left, top, right, bottom) in original pixels.")
    size: Size = Field(description="(width, height) of the crop image sent (after the pixel cap).")
    tokens: int | None = Field(None, description="Visual tokens of this crop.")


class CropsResult(BaseModel):
    """What ``get_crops`` returns beside the crop images."""

    image_id: str
    image_size: Size
    crops: list[CropInfo]
    tokens: int | None = Field(None, description="Visual tokens of all crops together.")
    full_tokens: int | None = Field(None, description="Visual tokens of the whole image at native resolution.")
    token_family: str | None = None


class AskResult(BaseModel):
    """The answer of ``ask_image`` and what it cost."""

    image_id: str
    answer: str
    answered: bool
    regions: list[str] = Field(description="Regions the model fetched at full resolution.")
    tokens_spent: int | None = Field(None, description="Visual tokens processed (low-res view + crops).")
    full_tokens: int | None = None
    rtr: float | None = Field(None, description="tokens_spent / full_tokens (retained token ratio).")
    pixel_ratio: float
    backend: str
    wall_s: float


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a message: encoded bytes, MIME type and a caption."""

    data: bytes
    mime_type: str
    caption: str


@dataclass(frozen=True)
class ViewOutput:
    result: ViewResult
    image: EncodedImage


@dataclass(frozen=True)
class CropsOutput:
    result: CropsResult
    images: list[EncodedImage]
