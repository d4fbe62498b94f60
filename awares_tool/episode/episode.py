"""One crop episode: the low-res first look, requests checked against the crop set, crops cut, costs counted.

This is the one place the AwaRes protocol lives. Inference (:func:`~awares_tool.episode.loop.crop_on_demand`),
the GRPO rollout environment, the MCP/LangChain tools and the trajectory builder all drive a
:class:`CropEpisode` instead of cutting crops themselves, so a change to the protocol (a new crop set, the
request parser, the crops turn's wording, the cost metric) is made once and holds everywhere.

An episode does not talk to a model: a caller shows :meth:`CropEpisode.first_view` to whatever model it drives,
reads the model's reply with :meth:`~CropEpisode.parse` (text, tool calls, zoom boxes: one typed
:class:`~awares_tool.protocol.CropRequest`), and gets the crops and the wording of the turn that delivers them
from :meth:`~CropEpisode.fetch`. The :class:`~awares_tool.episode.ledger.CropLedger` records every image shown.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from awares_tool.crops import FULL_IMAGE, CropSet, get_crop_set
from awares_tool.episode.ledger import CropLedger, ShownImage, TokenCounter
from awares_tool.episode.result import Mode
from awares_tool.errors import AwaresError, MalformedRequestError, RequestError, TooManyCropsError
from awares_tool.images import ImageLimits, ImageSource, open_image
from awares_tool.images.lowres import (
    LongestSidePolicy,
    ScalePolicy,
    cap_pixels,
    capped_size,
    lowres_size,
    parse_lowres,
)
from awares_tool.tokens import get_family
from awares_tool.protocol.brief import brief
from awares_tool.protocol import (
    GET_CROPS_TOOL,
    BboxUnits,
    CropRequest,
    FinalAnswer,
    OnTooMany,
    OnUnknown,
    crops_turn_text,
    parse_reply,
)

__all__ = ["CropEpisode", "CropsTurn", "OnMalformed", "tool_request", "model_costs", "model_view_size", "first_view_size"]

_UNCAPPED = 10**13  # "no pixel cap" for a family's native-resolution token count

log = logging.getLogger(__name__)

OnMalformed = Literal["error", "full_image"]


class CropsTurn(BaseModel):
    """What one fetch delivers: the crops, where they come from, and the text of the turn that carries them."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    round: int = Field(description="1-based crop round.")
    request: CropRequest
    names: list[str] = Field(description="Regions delivered, in image order ('boxN' for free-form boxes).")
    boxes: list[tuple[int, int, int, int]] = Field(description="Pixel boxes in the original image.")
    images: list[Image.Image] = Field(exclude=True, description="The crops as sent (after any downscaling).")
    text: str = Field(description="The crops turn's wording (the model card's template, else the protocol's).")

    def parts(self) -> list[dict[str, Any]]:
        """The turn as chat content parts: each crop image, then the text (TRL's tool-result shape)."""
        images = [{"type": "image", "image": im} for im in self.images]
        return [*images, {"type": "text", "text": self.text}] if self.text else images


def model_view_size(size: tuple[int, int], model_max_pixels: int | None) -> tuple[int, int]:
    """The size a model with this pixel cap sees an image of ``size`` at (aspect kept, never upscaled)."""
    return capped_size(size, model_max_pixels)


def first_view_size(size: tuple[int, int], policy: Any = None, *, mode: Mode = "awares",
                    model_max_pixels: int | None = None) -> tuple[int, int]:
    """Size of the first view of an image of ``size``: the full view in ``fullres``, else the low-res view.

    Scale and longest-side policies apply to what the model sees at full resolution (its capped view), so
    above the cap the low-res view still costs about a quarter of the full view; a token-budget policy already
    speaks the model's units and applies to the image itself.
    """
    view = model_view_size(size, model_max_pixels)
    if mode == "fullres":
        return view
    policy = parse_lowres(policy)
    if isinstance(policy, (ScalePolicy, LongestSidePolicy)):
        return lowres_size(policy, *view)
    return lowres_size(policy, *size)


def tool_request(regions: Any, crop_set: CropSet, max_crops: int | None = None) -> CropRequest:
    """A tool's ``regions`` argument as a strict request: unknown names, too many crops and bad values raise.

    Tools (the GRPO environment, MCP, LangChain) call this: a model that named a region the set lacks is told
    so, rather than silently given something else. It needs no image, so a tool can refuse a bad request
    before it opens (or downloads) one.

    Raises:
        MalformedRequestError: ``regions`` is not a non-empty list of names.
        UnknownRegionError: A name the crop set does not have (the message lists the valid ones).
        TooManyCropsError: More than ``max_crops`` distinct regions.
    """
    if not isinstance(regions, (list, tuple)) or not regions or not all(isinstance(r, str) for r in regions):
        raise MalformedRequestError(
            f"`regions` must be a non-empty list of region names such as ['3'] or ['0', '5'], got "
            f"{str(regions)[:80]!r}; valid names: {', '.join(crop_set.region_names())}")
    distinct = len(dict.fromkeys(r.strip() for r in regions))
    if max_crops is not None and distinct > max_crops:
        raise TooManyCropsError(f"{distinct} regions requested, but at most {max_crops} are allowed per call; "
                                "ask for the fewest regions that contain the evidence")
    parsed = parse_reply({"name": GET_CROPS_TOOL, "arguments": {"regions": list(regions)}}, crop_set,
                         max_crops=max_crops, on_unknown="error", on_too_many="error")
    assert isinstance(parsed, CropRequest)  # a structured call is never an answer
    return parsed


class CropEpisode:
    """One image, one question's worth of crop requests.

    Args:
        image: Anything :func:`~awares_tool.images.open_image` takes (a path, bytes, PIL image, SourceImage...).
        crop_set: Crop-set name/spec/object (default ``awares9``).
        lowres: Low-res policy spec (default: half of each side of what the model sees at full resolution).
        mode: ``"fullres"`` shows the full image first; ``"full_on_request"`` answers any request with the whole
            image (the dynamic-resolution baseline); the other modes show the low-res view (whether requests are
            honoured at all is the driver's business).
        max_rounds: Crop rounds allowed (the protocol: one).
        max_crops: Most regions one request may fetch (None: no limit).
        max_image_pixels: Downscale every image shown (first view and crops) above this many pixels.
        model_max_pixels: The model's own pixel cap (its processor's ``max_pixels``). Above it the model's
            "full resolution" is itself downscaled, so a scale policy is applied to that capped view: a photo of
            12 MP then still gets a first view of a quarter of what full resolution costs.
        counter: ``(w, h) -> visual tokens`` for the model (its resize rule and cap); None accounts in pixels.
        native_counter: The same rule without the cap, for RTR against native resolution.
        crops_template: A model card's crops-turn wording with a ``{regions}`` placeholder.
        first_view: The first view as already shown elsewhere (e.g. a dataset's low-res image); it is
            recorded, not re-rendered.
        limits: Pixel/byte/URL limits for opening ``image``.
    """

    def __init__(self, image: ImageSource, *, crop_set: str | CropSet | None = None, lowres: Any = None,
                 mode: Mode = "awares", max_rounds: int = 1, max_crops: int | None = None,
                 max_image_pixels: int | None = None, model_max_pixels: int | None = None,
                 counter: TokenCounter | None = None, native_counter: TokenCounter | None = None,
                 crops_template: str | None = None, first_view: Image.Image | None = None,
                 limits: ImageLimits | None = None) -> None:
        if max_rounds < 0 or (max_crops is not None and max_crops < 1):
            raise ValueError("max_rounds must be >= 0 and max_crops >= 1 (or None)")
        self.source = open_image(image, limits=limits)
        self.crop_set = get_crop_set(crop_set)
        self.policy = parse_lowres(lowres)
        self.mode = mode
        self.max_rounds = max_rounds
        self.max_crops = max_crops
        self.max_image_pixels = max_image_pixels
        self.model_max_pixels = model_max_pixels
        self.crops_template = crops_template
        w, h = self.source.size
        capped = bool(model_max_pixels) and w * h > model_max_pixels  # type: ignore[operator]
        # below the cap the model sees the native image: both baselines are the same count
        self.ledger = CropLedger(self.source.size, counter=counter, native_counter=native_counter if capped else None)
        self._counter = counter
        self.turns: list[CropsTurn] = []
        self._first: Image.Image | None = None
        if first_view is not None:
            self._show_first(first_view)

    # -- geometry ----------------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the original image."""
        return self.source.size

    def model_view_size(self) -> tuple[int, int]:
        """The size the model sees the full image at: native, or scaled under ``model_max_pixels``."""
        return model_view_size(self.size, self.model_max_pixels)

    def first_view_size(self) -> tuple[int, int]:
        """The first view's size under the policy (a scale policy applies to the model's full view)."""
        return first_view_size(self.size, self.policy, mode=self.mode, model_max_pixels=self.model_max_pixels)

    # -- the first look ----------------------------------------------------------------------------------
    def first_view(self) -> Image.Image:
        """The image the model sees first (the low-res view, or the full image in ``fullres``), made once."""
        if self._first is None:
            if self.mode == "fullres":
                view = self.source.image
            else:
                view = self.source.resized(self.first_view_size())
            self._show_first(self._fit(view))
        assert self._first is not None
        return self._first

    def _show_first(self, view: Image.Image) -> None:
        self._first = view
        w, h = self.size
        self.ledger.add(ShownImage(kind="first_view", box=(0, 0, w, h), size=view.size))

    # -- requests ----------------------------------------------------------------------------------------
    def parse(self, reply: str | Mapping[str, Any] | Sequence[Any], *, on_unknown: OnUnknown = "drop",
              on_too_many: OnTooMany = "truncate", on_malformed: OnMalformed = "full_image",
              bbox_units: BboxUnits | None = None) -> CropRequest | FinalAnswer:
        """Read one model reply as a crop request or a final answer, checked against this episode's crop set.

        Args:
            reply: The reply text, a tool call dict, a list of them, or an assistant message dict.
            on_unknown: Names the crop set lacks (see :func:`~awares_tool.protocol.parse_reply`).
            on_too_many: More than ``max_crops`` regions.
            on_malformed: ``"full_image"`` reads an unreadable request as a request for the whole image (the
                official code's outcome, and the documented fallback); ``"error"`` raises.
            bbox_units: Accept free-form zoom boxes in these units.

        Raises:
            RequestError: Only under the ``"error"`` policies.
        """
        try:
            return parse_reply(reply, self.crop_set, max_crops=self.max_crops, on_unknown=on_unknown,
                               on_too_many=on_too_many, bbox_units=bbox_units, image_size=self.size,
                               bbox_mode="crop")
        except MalformedRequestError:
            if on_malformed == "error":
                raise
            raw = reply if isinstance(reply, str) else brief(reply, 10_000)
            log.warning("malformed crop request %r; falling back to the full image", raw[:200])
            return CropRequest(regions=[FULL_IMAGE], form="text", raw=raw, fallback="full_image")

    def request_regions(self, regions: Any) -> CropRequest:
        """A tool's ``regions`` argument as a strict request (see :func:`tool_request`)."""
        return tool_request(regions, self.crop_set, self.max_crops)

    def all_regions(self) -> CropRequest:
        """A request for every region of the set but ``all`` (the ``all_crops`` baseline)."""
        names = [n for n in self.crop_set.region_names() if n != FULL_IMAGE]
        return CropRequest(regions=names, form="text", raw=f"GET_CROPS: {names}")

    # -- crops -------------------------------------------------------------------------------------------
    @property
    def rounds_left(self) -> int:
        return max(0, self.max_rounds - len(self.turns))

    def fetch(self, request: CropRequest) -> CropsTurn:
        """Cut the requested crops from the original pixels and record them.

        Raises:
            RequestError: No crop round is left (the model asked again after its last round).
        """
        if not self.rounds_left:
            raise RequestError(
                f"crops may be requested only {self.max_rounds} time(s) per question; answer the question now")
        if self._first is None:
            self.first_view()
        names, boxes = self._plan(request)
        images = [self._fit(self.source.crop(b)) for b in boxes]
        if request.token_budget and self._counter is not None:  # a zoom call asked for at most this many tokens
            share = max(1, request.token_budget // len(images))
            images = [_fit_tokens(im, share, self._counter) for im in images]
        turn = CropsTurn(round=len(self.turns) + 1, request=request, names=names, boxes=boxes, images=images,
                         text=crops_turn_text(names, self.crop_set, self.crops_template))
        self.turns.append(turn)
        for name, box, im in zip(names, boxes, images):
            self.ledger.add(ShownImage(kind="crop", name=name, box=box, size=im.size, round=turn.round))
        return turn

    def withdraw(self, turn: CropsTurn) -> None:
        """The crops of ``turn`` never reached the model (e.g. TRL rolled the tool result back): uncount them."""
        self.ledger.withdraw(turn.round)

    def _plan(self, request: CropRequest) -> tuple[list[str], list[tuple[int, int, int, int]]]:
        w, h = self.size
        if self.mode == "full_on_request":
            return [FULL_IMAGE], [(0, 0, w, h)]
        if request.boxes:
            return [f"box{i}" for i in range(len(request.boxes))], [tuple(b) for b in request.boxes]
        boxes = [(0, 0, w, h) if n == FULL_IMAGE and not self.crop_set.has(n) else self.crop_set.box(n, w, h)
                 for n in request.regions]
        return list(request.regions), boxes

    def _fit(self, img: Image.Image) -> Image.Image:
        return cap_pixels(img, max_pixels=self.max_image_pixels) if self.max_image_pixels else img

    def __repr__(self) -> str:
        return (f"CropEpisode(image={self.source.id}, size={self.size}, crop_set={self.crop_set.name!r}, "
                f"rounds={len(self.turns)}/{self.max_rounds})")


def _fit_tokens(img: Image.Image, max_tokens: int, count: TokenCounter) -> Image.Image:
    """``img`` downscaled (aspect kept) to the largest size whose visual tokens are at most ``max_tokens``."""
    if count(*img.size) <= max_tokens:
        return img
    lo, hi = 1, max(img.size)  # longest side: count(lo) is the floor any size can reach
    while hi - lo > 1:
        mid = (lo + hi) // 2
        size = capped_size(img.size, max(1, mid * mid * min(img.size) // max(img.size)))
        if count(*size) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return img.resize(capped_size(img.size, max(1, lo * lo * min(img.size) // max(img.size))),
                      Image.Resampling.BICUBIC)


def model_costs(backend: Any) -> tuple[TokenCounter | None, TokenCounter | None, int | None]:
    """How a backend's model pays for images: its token counter, the same rule uncapped, and its pixel cap.

    The counter is the backend's own (``count_image_tokens``, exact) or else its token family's estimate;
    the uncapped rule and the cap come from the family (Qwen-VL families have one). Everything that runs an
    episode for a model (the loop, the trajectory builder) builds it from these, so views and costs agree.
    """
    family = None
    name = getattr(backend, "token_family", None)
    if name:
        try:
            family = get_family(name)
        except AwaresError as e:
            log.warning("unknown token family %r of backend: %s", name, e)
    own = getattr(backend, "count_image_tokens", None)
    counter = own if callable(own) else (family.count if family is not None else None)
    cap = getattr(backend, "max_pixels", None)
    family_cap = getattr(family, "max_pixels", None)
    native = None
    if isinstance(family_cap, int):
        cap = cap or family_cap
        native = dataclasses.replace(family, max_pixels=_UNCAPPED).count  # type: ignore[type-var]
    return counter, native, cap if isinstance(cap, int) else None
