"""What :func:`awares_tool.crop_on_demand` returns: the answer plus everything needed to audit its cost."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["Mode", "CropRound", "TurnTiming", "TokenLedger", "CropResult"]

Mode = Literal["awares", "lowres", "fullres", "all_crops", "full_on_request"]


class CropRound(BaseModel):
    """One crop request of the model and what was fetched for it."""

    round: int = Field(description="1-based request round.")
    request_text: str = Field(description="What the model wrote (or the native tool call, as JSON).")
    requested: list[str] = Field(description="Valid region names the model asked for, in order.")
    fetched: list[str] = Field(description="Regions actually sent (differs under fallbacks and baselines).")
    invalid: list[str] = Field(default_factory=list, description="Names the crop set does not have.")
    boxes: dict[str, tuple[int, int, int, int]] = Field(default_factory=dict, description="Pixel boxes sent.")
    fallback: str | None = Field(None, description="Fallback applied to the request, if any.")
    form: str = Field("text", description="Request syntax: text, function, tool_call or bbox.")


class TurnTiming(BaseModel):
    turn: int
    prefill_s: float
    decode_s: float
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


class TokenLedger(BaseModel):
    """Visual tokens spent against the full-resolution baseline.

    RTR (retained token ratio) = visual tokens of every image sent (low-res view plus all crops) divided by
    the visual tokens of the full image as the model sees it at "full resolution", for the same model. Above
    the model's pixel cap that full view is itself downscaled; ``rtr_native`` divides by the full image's
    tokens at native resolution instead (what an uncapped model would spend). ``pixel_ratio`` is the same
    ratio in pixels, reported beside them like the official evaluation does.
    """

    full: int | None = Field(None, description="Visual tokens of the full image as the model sees it (capped).")
    full_native: int | None = Field(None, description="Visual tokens of the full image at native resolution.")
    first_view: int | None = Field(None, description="Visual tokens of the first image shown.")
    crops: list[int] = Field(default_factory=list, description="Visual tokens of each crop sent, in order.")
    spent: int | None = None
    rtr: float | None = None
    rtr_native: float | None = Field(None, description="spent / full_native.")
    pixel_ratio: float
    source: Literal["backend", "estimate", "unknown"] = "unknown"


class CropResult(BaseModel):
    """The outcome of one question about one image."""

    answer: str = Field(description="The final answer, without the model's <think> reasoning.")
    reasoning: str = Field("", description="What the model wrote inside <think> before its answer (kept for audit).")
    mode: Mode
    question: str
    rounds: int = Field(0, description="Crop rounds performed.")
    requests: list[CropRound] = Field(default_factory=list)
    forced_answer: bool = Field(
        False, description="The model was told to answer: it kept requesting crops after the last round, or replied "
                           "with no answer."
    )
    answered: bool = Field(True, description="False when no final answer came: the model kept requesting crops, "
                                             "replied with nothing (or only reasoning) even when told to answer, or "
                                             "the question failed (see `error`).")
    error: str | None = Field(None, description="Error text when the question failed (batch runs keep going).")
    tokens: TokenLedger
    timings: list[TurnTiming] = Field(default_factory=list)
    wall_s: float = 0.0
    image_size: tuple[int, int]
    first_view_size: tuple[int, int]
    crop_set: str
    backend: str
    trace: list[dict[str, Any]] = Field(default_factory=list, description="Every message, without pixel data.")

    @property
    def regions(self) -> list[str]:
        """Every region fetched, over all rounds."""
        return [name for r in self.requests for name in r.fetched]

    @property
    def rtr(self) -> float | None:
        return self.tokens.rtr

    @property
    def prefill_s(self) -> float:
        return sum(t.prefill_s for t in self.timings)

    @property
    def decode_s(self) -> float:
        return sum(t.decode_s for t in self.timings)
