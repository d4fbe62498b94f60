"""The crop environment of a GRPO rollout: ``get_crops`` cuts regions of the ORIGINAL image.

TRL's ``environment_factory`` makes one instance per rollout, calls ``reset(**row)`` with the whole
dataset row and exposes every public method but ``reset`` as a tool, with a schema built from its type
hints and Google docstring (ml-stack.md §3). A tool that returns ``[{"type": "image", ...}, {"type":
"text", ...}]`` puts the crops into the next turn, and TRL feeds those images to generation and to the
training forward pass. The instance remembers what was fetched so the rewards can price it.

Keep every other method private (leading underscore): a public one would become a second tool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from awares_tool.crops import CropSet, get_crop_set
from awares_tool.episode import CropEpisode
from awares_tool.errors import RequestError

__all__ = ["CropEnv", "make_env_factory", "crop_tool_schemas"]

log = logging.getLogger(__name__)

TokenCounter = Callable[[int, int], int]


class CropEnv:
    """One rollout's crop tool: a :class:`~awares_tool.episode.CropEpisode` behind TRL's tool interface.

    The episode checks the request (unknown names, too many crops and a second round are errors the policy
    reads back), cuts the crops from the original pixels, words the crops turn and keeps the ledger the
    rewards price; this class only adapts it to TRL.

    Args:
        crop_set: The crop set the model may request from.
        max_crops: Most regions per request (``None``: no limit).
        count_tokens: ``(width, height) -> visual tokens`` of the policy's processor, for RTR; ``None``
            measures cost in pixels only (``rtr`` is then the pixel ratio).
        max_requests: Request rounds allowed (the protocol allows one).
        crops_template: The policy's model-card wording of the crops turn (``None``: the protocol's), so
            rollouts deliver crops with the text the SFT stage trained on.
        crop_max_pixels: Downscale each crop above this many pixels (bounds the crops turn's tokens).
    """

    def __init__(self, crop_set: str | CropSet = "awares9", max_crops: int | None = None,
                 count_tokens: TokenCounter | None = None, max_requests: int = 1,
                 crops_template: str | None = None, crop_max_pixels: int | None = None) -> None:
        self._crop_max_pixels = crop_max_pixels
        self._crop_set = get_crop_set(crop_set)
        self._crops_template = crops_template
        self._max_crops = max_crops
        self._count = count_tokens
        self._max_requests = max_requests
        self.reset()

    def reset(self, **row: Any) -> None:
        """Start a rollout on ``row`` (needs ``source_image``; reads ``label``, ``images`` when present)."""
        self.source_path = row.get("source_image")
        self.needs_crop = row.get("label") == "crop"
        self._first = (row.get("images") or [None])[0]
        self._episode: CropEpisode | None = None

    def _source(self) -> CropEpisode:
        if self._episode is None:
            if self.source_path is None:
                raise RequestError("this rollout has no source image; the dataset row needs 'source_image'")
            first = self._first
            if isinstance(first, str):
                from PIL import Image

                first = Image.open(first)  # only its size is read: the policy already saw it
            self._episode = CropEpisode(
                self.source_path, crop_set=self._crop_set, max_rounds=self._max_requests, max_crops=self._max_crops,
                counter=self._count, crops_template=self._crops_template, max_image_pixels=self._crop_max_pixels,
                first_view=first if hasattr(first, "size") else None)
        return self._episode

    def get_crops(self, regions: list[str]) -> list:
        """Fetch high-resolution crops of the image for the named regions.

        Args:
            regions: Names of the regions of the crop map to fetch at full resolution, e.g. ["3"] or ["0", "5"].
        """
        episode = self._source()
        return episode.fetch(episode.request_regions(regions)).parts()

    def _reconcile(self, completion: list[dict[str, Any]]) -> int:
        """Uncount crops that TRL cut from the rollout (a tool result over the completion budget is rolled back).

        Every delivered ``get_crops`` result is a tool message holding images; turns of the episode beyond
        those never reached the policy. Returns how many crops were withdrawn.
        """
        if self._episode is None:
            return 0
        delivered = sum(1 for m in completion if m.get("role") == "tool" and isinstance(m.get("content"), list)
                        and any(isinstance(p, dict) and p.get("type") == "image" for p in m["content"]))
        withdrawn = 0
        for turn in self._episode.turns[delivered:]:
            if any(im.round == turn.round and im.delivered for im in self._episode.ledger.images):
                self._episode.withdraw(turn)
                withdrawn += len(turn.names)
        return withdrawn

    @property
    def _ledger(self) -> Any:
        return None if self._episode is None else self._episode.ledger

    @property
    def regions(self) -> list[str]:
        """Regions whose crops the policy saw."""
        return [] if self._ledger is None else self._ledger.regions

    @property
    def requested(self) -> bool:
        """Whether this rollout received any crop."""
        return bool(self.regions)

    @property
    def rolled_back(self) -> int:
        """Crops cut for this rollout that never reached the policy (see ``CropLedger.withdrawn``)."""
        return 0 if self._ledger is None else len(self._ledger.withdrawn)

    @property
    def area_fraction(self) -> float:
        """Summed area of the crops the policy saw over the image's area."""
        return 0.0 if self._ledger is None else self._ledger.area_fraction

    @property
    def rtr(self) -> float | None:
        """Visual tokens spent (low-res view + crops) over those of the full image (pixels if no counter)."""
        if self.source_path is None or self._first is None:
            return None
        return self._source().ledger.rtr

    @property
    def crop_rtr(self) -> float:
        """Visual tokens of the crops alone over those of the full image (0 without crops)."""
        return 0.0 if self._ledger is None else self._ledger.crop_rtr


def make_env_factory(crop_set: str | CropSet = "awares9", max_crops: int | None = None,
                     count_tokens: TokenCounter | None = None,
                     crops_template: str | None = None, crop_max_pixels: int | None = None) -> Callable[[], CropEnv]:
    """The ``environment_factory`` for ``GRPOTrainer``: a zero-argument constructor of configured envs."""
    return partial(CropEnv, crop_set, max_crops, count_tokens, crops_template=crops_template,
                   crop_max_pixels=crop_max_pixels)


def crop_tool_schemas(crop_set: str | CropSet = "awares9") -> list[dict[str, Any]]:
    """The JSON schema TRL renders for the env's tool, so SFT prompts show exactly the GRPO tool list."""
    from transformers.utils import get_json_schema

    return [get_json_schema(CropEnv(crop_set).get_crops)]
