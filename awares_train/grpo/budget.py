"""The completion budget of a GRPO rollout must hold the crops turn, or TRL silently throws the crops away.

TRL's tool loop counts the tool call *and the tool result* (the crop images' visual tokens included) against
``max_completion_length``; a result that does not fit is rolled back and the rollout ends on the call. The
answer reward is then 0 while the crop cost is still charged, so the paper's reward teaches "never crop". At the
paper's 512-token budget a DocVQA-size Qwen2.5-VL quadrant (~1170 visual tokens) never fits.

So before training we render, with the policy's own processor and template, the completion of the largest
request the environment can answer for this data (``max_crops`` copies of the largest crop of the data's
largest image, after the environment's and the processor's pixel caps), add room for the answer, and either
refuse a config that is too small (with the numbers) or size the budget to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from awares_tool.crops import CropSet, get_crop_set
from awares_tool.images.lowres import cap_pixels
from awares_tool.protocol import GET_CROPS_TOOL

__all__ = ["CropsTurnBudget", "largest_crop", "crops_turn_budget", "check_completion_budget"]

log = logging.getLogger(__name__)


class CropsTurnBudget(BaseModel):
    """The completion tokens the largest crop request needs, and what they are made of."""

    image_size: tuple[int, int]
    region: str
    crop_size: tuple[int, int]
    crops: int
    turn_tokens: int
    answer_tokens: int

    @property
    def needed(self) -> int:
        return self.turn_tokens + self.answer_tokens

    def explain(self) -> str:
        w, h = self.image_size
        cw, ch = self.crop_size
        return (f"{self.crops} x crop {self.region!r} of a {w}x{h} image (sent at {cw}x{ch}): the call and the crops "
                f"turn take {self.turn_tokens} tokens, plus {self.answer_tokens} for the answer = {self.needed}")


def largest_crop(sizes: Sequence[tuple[int, int]], crop_set: str | CropSet = "awares9",
                 crop_max_pixels: int | None = None) -> tuple[tuple[int, int], str, tuple[int, int]]:
    """``(image size, region, crop size as sent)`` of the largest crop any image of ``sizes`` can give."""
    from PIL import Image

    cs = get_crop_set(crop_set)
    best: tuple[int, tuple[int, int], str, tuple[int, int]] | None = None
    for w, h in set(map(tuple, sizes)):
        for name, (x0, y0, x1, y1) in cs.boxes(w, h).items():
            size = (x1 - x0, y1 - y0)
            if crop_max_pixels and size[0] * size[1] > crop_max_pixels:
                size = cap_pixels(Image.new("1", size), max_pixels=crop_max_pixels).size
            if best is None or size[0] * size[1] > best[0]:
                best = (size[0] * size[1], (w, h), name, size)
    if best is None:
        raise ValueError("no image sizes: the GRPO data is empty")
    return best[1], best[2], best[3]


def _render_length(processor: Any, messages: list[dict[str, Any]], tools: Any, chat_template: str | None,
                   add_generation_prompt: bool) -> int:
    from trl.data_utils import prepare_multimodal_messages

    ids = processor.apply_chat_template(
        prepare_multimodal_messages(messages), tools=tools, chat_template=chat_template, tokenize=True,
        add_generation_prompt=add_generation_prompt, return_dict=False)
    if ids and isinstance(ids[0], list):  # processors return a batch
        ids = ids[0]
    return len(ids)


def crops_turn_budget(processor: Any, sizes: Sequence[tuple[int, int]], *, crop_set: str | CropSet = "awares9",
                      max_crops: int | None = None, crop_max_pixels: int | None = None, answer_tokens: int = 32,
                      tools: Any = None, chat_template: str | None = None, crops_text: str = "") -> CropsTurnBudget:
    """Render the largest request's call and crops turn with the policy's processor and count its tokens.

    The count is the length TRL's loop adds to the completion: the tool call (generated) and the tool turn with
    its images (appended), up to the prompt of the answer, measured as the difference of two renderings.
    """
    from PIL import Image

    image_size, region, crop_size = largest_crop(sizes, crop_set, crop_max_pixels)
    n = max_crops or 1
    regions = [region] * n
    call = {"type": "function", "function": {"name": GET_CROPS_TOOL, "arguments": {"regions": regions}}}
    crops = [Image.new("RGB", crop_size, "white") for _ in range(n)]
    tool_content = [*({"type": "image", "image": im} for im in crops), {"type": "text", "text": crops_text or "crops"}]
    user = {"role": "user", "content": "question"}
    before = _render_length(processor, [user], tools, chat_template, add_generation_prompt=True)
    after = _render_length(processor, [user, {"role": "assistant", "content": "", "tool_calls": [call]},
                                       {"role": "tool", "name": GET_CROPS_TOOL, "content": tool_content}],
                           tools, chat_template, add_generation_prompt=True)
    return CropsTurnBudget(image_size=image_size, region=region, crop_size=crop_size, crops=n,
                           turn_tokens=after - before, answer_tokens=answer_tokens)


def check_completion_budget(cfg: Any, processor: Any, sizes: Sequence[tuple[int, int]], *, tools: Any = None,
                            chat_template: str | None = None, crops_text: str = "") -> CropsTurnBudget:
    """Refuse (``completion_budget: check``) or fit (``auto``) ``cfg.max_completion_length`` to the crops turn.

    Raises:
        ValueError: ``check`` and the budget cannot hold the largest request; the message has the numbers and
            the three ways out.
    """
    budget = crops_turn_budget(processor, sizes, crop_set=cfg.crop_set, max_crops=cfg.max_crops,
                               crop_max_pixels=cfg.crop_max_pixels, answer_tokens=cfg.answer_tokens, tools=tools,
                               chat_template=chat_template, crops_text=crops_text)
    have = cfg.max_completion_length
    if cfg.completion_budget == "auto":
        if have != budget.needed:
            log.info("completion budget: max_completion_length %s -> %d (%s)", have, budget.needed, budget.explain())
        cfg.max_completion_length = budget.needed
    elif have < budget.needed:
        raise ValueError(
            f"max_completion_length={have} cannot hold the crops turn: {budget.explain()}. TRL would roll those "
            f"crops back and end the rollout on the call (answer reward 0, crop cost charged), teaching the policy "
            f"never to crop. Raise max_completion_length to >= {budget.needed}, or cap the crops with "
            f"crop_max_pixels (and/or max_crops), or set completion_budget: auto.")
    else:
        log.info("completion budget %d holds the largest crops turn (%s)", have, budget.explain())
    return budget
