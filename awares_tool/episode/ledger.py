"""The token ledger of one episode: every image shown to the model, what it covers and what it cost.

RTR (retained token ratio) = visual tokens of every image the model was shown (the first view plus each crop
delivered) over the visual tokens of the full image as the model sees it at "full resolution". Above a model's
pixel cap that full view is itself downscaled, so RTR is also reported against the full image's native-resolution
token count (``rtr_native``: what a model without a cap would have spent). The pixel ratio is reported beside
both, as the official evaluation does.

A crop can be cut and then not reach the model: TRL's GRPO tool loop drops a tool result that does not fit the
completion budget. Such a view is marked ``delivered=False`` and costs nothing here, so neither the rewards nor
the metrics count crops the policy never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.episode.result import TokenLedger

__all__ = ["ShownImage", "CropLedger", "TokenCounter"]

TokenCounter = Callable[[int, int], int]
"""``(width, height) -> visual tokens`` of one image for the model in use."""


class ShownImage(BaseModel):
    """One image of the episode: the first view or a crop, as sent to the model."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["first_view", "crop"]
    name: str | None = Field(None, description="Region name (or 'boxN' for a free-form box); None for the first view.")
    box: tuple[int, int, int, int] = Field(description="What it covers, in pixels of the original image.")
    size: tuple[int, int] = Field(description="(width, height) as sent, after any downscaling.")
    round: int = Field(0, description="0 for the first view, else the 1-based crop round.")
    delivered: bool = Field(True, description="False when the image was cut but never reached the model.")


class CropLedger:
    """The images of one episode and their cost.

    Args:
        full_size: ``(width, height)`` of the original image.
        counter: Visual tokens of an image as the model sees it (its processor's resize rule and pixel cap),
            or None to account in pixels only.
        native_counter: The same rule without the pixel cap, for ``rtr_native``; None: same as ``counter``.
    """

    def __init__(self, full_size: tuple[int, int], *, counter: TokenCounter | None = None,
                 native_counter: TokenCounter | None = None) -> None:
        self.full_size = full_size
        self._count = counter
        self._count_native = native_counter or counter
        self.images: list[ShownImage] = []

    # -- recording
    def add(self, image: ShownImage) -> ShownImage:
        self.images.append(image)
        return image

    def withdraw(self, round_: int) -> int:
        """Mark every crop of ``round_`` as not delivered (rolled back); returns how many were."""
        n = 0
        for i, im in enumerate(self.images):
            if im.kind == "crop" and im.round == round_ and im.delivered:
                self.images[i] = im.model_copy(update={"delivered": False})
                n += 1
        return n

    # -- what was shown
    @property
    def delivered(self) -> list[ShownImage]:
        return [im for im in self.images if im.delivered]

    @property
    def crops(self) -> list[ShownImage]:
        """The crops the model saw, in order."""
        return [im for im in self.delivered if im.kind == "crop"]

    @property
    def withdrawn(self) -> list[ShownImage]:
        """Crops cut but never shown (see the module docstring)."""
        return [im for im in self.images if not im.delivered]

    @property
    def regions(self) -> list[str]:
        return [im.name for im in self.crops if im.name is not None]

    @property
    def area_fraction(self) -> float:
        """Summed area of the crops shown over the image's area (``all`` counts 1.0)."""
        w, h = self.full_size
        return sum((b[2] - b[0]) * (b[3] - b[1]) for b in (im.box for im in self.crops)) / float(w * h)

    @property
    def pixel_ratio(self) -> float:
        """Pixels shown (as sent) over the original image's pixels."""
        w, h = self.full_size
        return sum(im.size[0] * im.size[1] for im in self.delivered) / float(w * h)

    # -- tokens
    def tokens_of(self, images: Sequence[ShownImage]) -> list[int] | None:
        if self._count is None:
            return None
        return [int(self._count(*im.size)) for im in images]

    @property
    def full_tokens(self) -> int | None:
        """Tokens of the full image as the model sees it (the counter applies its pixel cap): the RTR baseline."""
        return None if self._count is None else int(self._count(*self.full_size))

    @property
    def native_tokens(self) -> int | None:
        """Tokens of the full image at native resolution, were there no pixel cap."""
        return None if self._count_native is None else int(self._count_native(*self.full_size))

    @property
    def spent_tokens(self) -> int | None:
        counts = self.tokens_of(self.delivered)
        return None if counts is None else sum(counts)

    @property
    def rtr(self) -> float | None:
        """Tokens shown over ``full_tokens``; the pixel ratio when no counter is known."""
        full, spent = self.full_tokens, self.spent_tokens
        if full is None or spent is None:
            return self.pixel_ratio
        return spent / full if full else None

    @property
    def crop_rtr(self) -> float:
        """Tokens of the crops alone over ``full_tokens`` (pixels when no counter is known); 0 without crops."""
        if not self.crops:
            return 0.0
        counts, full = self.tokens_of(self.crops), self.full_tokens
        if counts is None or not full:
            w, h = self.full_size
            return sum(im.size[0] * im.size[1] for im in self.crops) / float(w * h)
        return sum(counts) / full

    def token_ledger(self, measured: Sequence[int] | None = None, *, measured_full: int | None = None) -> TokenLedger:
        """The public :class:`TokenLedger` of this episode.

        Args:
            measured: Visual tokens of each delivered image as the backend really counted them (in order);
                used instead of the estimate when their number matches.
            measured_full: The backend's own count of the full view, if it has one.
        """
        shown = self.delivered
        counts: list[int] | None
        if measured is not None and len(measured) == len(shown):
            counts, source = list(measured), "backend"
        else:
            counts, source = self.tokens_of(shown), "estimate"
        full = measured_full if measured_full is not None else self.full_tokens
        native = self.native_tokens
        if counts is None:
            return TokenLedger(full=full, full_native=native, pixel_ratio=self.pixel_ratio, source="unknown")
        spent = sum(counts)
        first = counts[0] if shown and shown[0].kind == "first_view" else None
        return TokenLedger(
            full=full,
            full_native=native,
            first_view=first,
            crops=counts[1:] if first is not None else counts,
            spent=spent,
            rtr=(spent / full) if full else None,
            rtr_native=(spent / native) if native else None,
            pixel_ratio=self.pixel_ratio,
            source=source,  # type: ignore[arg-type]
        )
