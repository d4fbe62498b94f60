"""The options of one :func:`~awares_tool.episode.loop.crop_on_demand` call, as one typed object.

They travel together (the CLI, the evaluation harness, the gateway and the adapters build one and pass it on),
so a new option is added here once instead of to every signature that forwards it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from awares_tool.backends.base import GenerationSettings
from awares_tool.crops import CropSet
from awares_tool.episode.result import Mode
from awares_tool.images import ImageLimits
from awares_tool.protocol import BboxUnits, OnUnknown

__all__ = ["CropOptions", "MODES"]

MODES: tuple[str, ...] = ("awares", "lowres", "fullres", "all_crops", "full_on_request")


class CropOptions(BaseModel):
    """How one question is run. Every field has the default the method uses; see ``crop_on_demand``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    crop_set: str | CropSet | None = Field(None, description="Crop set name/spec/object; default: the model card's, "
                                                              "else awares9.")
    lowres: Any = Field(None, description="Low-res policy spec; default: the model card's, else half of each side "
                                          "of what the model sees at full resolution.")
    mode: Mode = Field("awares", description="awares | lowres | fullres | all_crops | full_on_request.")
    max_rounds: int = Field(1, ge=0, description="Crop rounds allowed (the paper: one).")
    max_crops: int = Field(4, ge=1, description="Most regions honoured per request; extras are dropped.")
    max_new_tokens: int = Field(128, ge=1, description="Decoding limit per turn (unless `generation` is given).")
    generation: GenerationSettings | None = Field(
        None, validation_alias=AliasChoices("generation", "settings"),
        description="Full decoding settings (temperature, timeout...); the 0.1 keyword `settings=` still works.")
    system_prompt: str | None = Field(None, description="Override the protocol prompt.")
    use_tools: bool | None = Field(None, description="Declare get_crops as a native tool; default: the card's "
                                                     "request_format is 'tool'.")
    reuse_cache: bool = Field(True, description="Let the backend reuse turn one's KV cache in turn two.")
    crop_max_pixels: int | None = Field(None, ge=1, description="Downscale every image shown above this many pixels.")
    model_max_pixels: int | None = Field(
        None, ge=1, description="The model's own pixel cap, when the backend cannot tell (a server): the first view is "
                                "a scale of the full image as the model sees it (see CropEpisode).")
    image_limits: ImageLimits | None = Field(None, description="Pixel/byte/URL limits for opening the image.")
    on_unknown: OnUnknown = Field("drop", description="Region names the crop set lacks: error | drop | full_image.")
    on_malformed: Literal["error", "full_image"] = Field(
        "full_image", description="An unreadable request: raise, or fetch the full image (the official outcome).")
    bbox_units: BboxUnits | None = Field(None, description="Accept free-form bbox zoom calls in these units.")
    crop_delivery: Literal["auto", "tool", "user"] = Field(
        "auto", description="Where the crops go after a native tool call: 'tool' (inside the tool turn, as TRL's tool "
                            "loop trains), 'user' (a follow-up user turn, for runtimes that drop tool images), 'auto' "
                            "(the tool turn when the backend renders images there). Text requests always get a user "
                            "turn.")

    def decoding(self) -> GenerationSettings:
        """The decoding settings: ``generation``, else greedy with ``max_new_tokens``."""
        return self.generation or GenerationSettings(max_new_tokens=self.max_new_tokens)
