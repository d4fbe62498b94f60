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
from awares_tool.errors import RequestError, TooManyCropsError, UnknownRegionError
from awares_tool.protocol import crops_turn_text

__all__ = ["CropEnv", "make_env_factory", "crop_tool_schemas"]

log = logging.getLogger(__name__)

TokenCounter = Callable[[int, int], int]


class CropEnv:
    """One rollout's crop tool and its bookkeeping.

    Args:
        crop_set: The crop set the model may request from.
        max_crops: Most regions per request (``None``: no limit).
        count_tokens: ``(width, height) -> visual tokens`` of the policy's processor, for RTR; ``None``
            measures cost in pixels only (``rtr`` is then the pixel ratio).
        max_requests: Request rounds allowed (the protocol allows one).
        crops_template: The policy's model-card wording of the crops turn (``None``: the protocol's), so
            rollouts deliver crops with the text the SFT stage trained on.
    """

    def __init__(self, crop_set: str | CropSet = "awares9", max_crops: int | None = None,
                 count_tokens: TokenCounter | None = None, max_requests: int = 1,
                 crops_template: str | None = None) -> None:
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
        self._image = None
        self._lowres_size: tuple[int, int] | None = None
        low = (row.get("images") or [None])[0]
        if low is not None and hasattr(low, "size"):
            self._lowres_size = tuple(low.size)
        elif isinstance(low, str):
            from PIL import Image

            with Image.open(low) as im:
                self._lowres_size = im.size
        self.requests = 0
        self.regions: list[str] = []
        self.crop_sizes: list[tuple[int, int]] = []
        self.area_fraction = 0.0

    def _source(self) -> Any:
        if self._image is None:
            from awares_tool.images import open_image

            if self.source_path is None:
                raise RequestError("this rollout has no source image; the dataset row needs 'source_image'")
            self._image = open_image(self.source_path)
        return self._image

    def get_crops(self, regions: list[str]) -> list:
        """Fetch high-resolution crops of the image for the named regions.

        Args:
            regions: Names of the regions of the crop map to fetch at full resolution, e.g. ["3"] or ["0", "5"].
        """
        if self.requests >= self._max_requests:
            raise RequestError(f"crops may be requested only {self._max_requests} time(s); answer the question now")
        if isinstance(regions, str):
            regions = [regions]
        names = list(dict.fromkeys(str(r).strip() for r in regions))
        if not names:
            raise RequestError("get_crops needs at least one region name, e.g. ['3']")
        bad = [n for n in names if not self._crop_set.has(n)]
        if bad:
            raise UnknownRegionError(f"unknown region(s) {bad}; valid regions: {self._crop_set.region_names()}")
        if self._max_crops is not None and len(names) > self._max_crops:
            raise TooManyCropsError(f"{len(names)} regions requested but at most {self._max_crops} are allowed")
        src = self._source()
        w, h = src.size
        self.requests += 1
        parts: list[dict[str, Any]] = []
        for name in names:
            box = self._crop_set.box(name, w, h)
            crop = src.crop(box)
            self.regions.append(name)
            self.crop_sizes.append(crop.size)
            self.area_fraction += (box[2] - box[0]) * (box[3] - box[1]) / (w * h)
            parts.append({"type": "image", "image": crop})
        parts.append({"type": "text", "text": crops_turn_text(names, self._crop_set, self._crops_template)})
        return parts

    @property
    def requested(self) -> bool:
        """Whether this rollout fetched any crop."""
        return bool(self.regions)

    @property
    def rtr(self) -> float | None:
        """Visual tokens spent (low-res view + crops) over those of the full image (pixels if no counter)."""
        if self.source_path is None or self._lowres_size is None:
            return None
        full_size = self._source().size
        count = self._count or (lambda w, h: w * h)
        full = count(*full_size)
        spent = count(*self._lowres_size) + sum(count(*s) for s in self.crop_sizes)
        return spent / full if full else None

    @property
    def crop_rtr(self) -> float:
        """Visual tokens of the crops alone over those of the full image (0 without crops)."""
        if not self.crop_sizes:
            return 0.0
        count = self._count or (lambda w, h: w * h)
        return sum(count(*s) for s in self.crop_sizes) / count(*self._source().size)


def make_env_factory(crop_set: str | CropSet = "awares9", max_crops: int | None = None,
                     count_tokens: TokenCounter | None = None,
                     crops_template: str | None = None) -> Callable[[], CropEnv]:
    """The ``environment_factory`` for ``GRPOTrainer``: a zero-argument constructor of configured envs."""
    return partial(CropEnv, crop_set, max_crops, count_tokens, crops_template=crops_template)


def crop_tool_schemas(crop_set: str | CropSet = "awares9") -> list[dict[str, Any]]:
    """The JSON schema TRL renders for the env's tool, so SFT prompts show exactly the GRPO tool list."""
    from transformers.utils import get_json_schema

    return [get_json_schema(CropEnv(crop_set).get_crops)]
