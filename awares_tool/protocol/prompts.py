"""The words of the protocol: system prompt, the turn that delivers crops, the force-answer turn.

The wording is ours (not the paper's); what must match the method is the contract it states: the
first view is low resolution, the model answers directly when that is enough, otherwise it replies
with a single request naming regions of the crop set, gets the crops in the next user turn, and
then must answer. One request round at most.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from awares_tool.protocol.tools import GET_CROPS_TOOL

if TYPE_CHECKING:
    from awares_tool.crops import CropSet

__all__ = ["PromptStyle", "build_system_prompt", "crops_turn_text", "FORCE_ANSWER_TEXT", "example_request"]

PromptStyle = Literal["full", "compact", "tool"]

FORCE_ANSWER_TEXT = "No more crops are available. Answer the question now using what you have seen."
"""User turn sent when the model requests crops again after its last allowed round."""


def example_request(names: Sequence[str]) -> str:
    """The canonical text form of a request, e.g. ``GET_CROPS: ['0', '5']``."""
    return "GET_CROPS: [" + ", ".join(repr(str(n)) for n in names) + "]"


def _example_names(crop_set: CropSet) -> tuple[list[str], list[str]]:
    """One single-region and one two-region example taken from the crop set itself.

    Taking them from the set (not hard-coding ``'3'``) keeps the examples valid for any crop set.
    """
    names = [n for n in crop_set.region_names() if n != "all"] or list(crop_set.region_names())
    one = [names[min(3, len(names) - 1)]]
    two = [names[0], names[min(5, len(names) - 1)]] if len(names) > 1 else [names[0]]
    return one, two


def build_system_prompt(crop_set: CropSet, *, style: PromptStyle = "full") -> str:
    """The system prompt that teaches a model the crop protocol for ``crop_set``.

    Args:
        crop_set: The crop set whose regions the model may request.
        style: ``"full"``: the complete instructions with the region map, for capable models;
            ``"compact"``: two short sentences and the region names on one line, for tiny models
            where every prompt token counts; ``"tool"``: for backends with native function calling,
            telling the model to call the ``get_crops`` tool instead of writing the text form.

    Returns:
        The prompt text.

    Raises:
        ValueError: ``style`` is not one of the three styles.
    """
    one, two = _example_names(crop_set)
    if style == "compact":
        listing = "; ".join(f"{r.name}={r.description}" for r in crop_set.regions)
        return (
            "You see a low-resolution image. Answer directly if you can; otherwise reply only "
            f"{example_request(one)} (or several names) to get high-resolution crops, then answer. "
            f"Regions: {listing}."
        )
    if style == "full":
        how = (
            "If the view is not enough (small text, fine detail, distant objects), reply with "
            f"ONLY a crop request and nothing else, for example {example_request(one)} or "
            f"{example_request(two)}."
        )
    elif style == "tool":
        how = (
            f"If the view is not enough (small text, fine detail, distant objects), call the "
            f"`{GET_CROPS_TOOL}` tool with the names of the regions you need, for example "
            f"{json.dumps({'regions': one})}, instead of answering."
        )
    else:
        raise ValueError(f"style must be 'full', 'compact' or 'tool', got {style!r}")
    return "\n".join(
        [
            "You are shown a low-resolution view of the image. Answer the question directly "
            "whenever this view is enough.",
            how,
            "Request the fewest regions that contain the evidence. The available regions are:",
            crop_set.describe(),
            "You may request crops only once. The crops arrive in the next message as "
            "high-resolution images of those regions; after that you must answer the question.",
        ]
    )


def crops_turn_text(names: Sequence[str], crop_set: CropSet, template: str | None = None) -> str:
    """Text of the user turn that delivers the crops (the images come before it in that turn).

    Inference, trajectory building and GRPO rollouts all call this, so a model sees at run time the
    wording it was trained on: a model card's ``crops_turn_text`` template when it has one, else ours.

    Args:
        names: The regions delivered, in the order of the images.
        crop_set: The crop set, for the region descriptions.
        template: A model card's template with a ``{regions}`` placeholder (names joined by ", "); ``""``
            means no text at all (the turn holds only the crop images).

    Returns:
        E.g. ``"High-resolution crops: 0 (top-left quarter), 5 (top half). Answer the question now."``.
        Names the set does not know (e.g. a box the loop cut itself) are listed without description.
    """
    if template is not None:  # "" is a template too: the crops arrive as images only (the official protocol)
        return template.format(regions=", ".join(str(n) for n in names))
    described = {r.name: r.description for r in crop_set.regions}
    parts = [f"{n} ({described[n]})" if n in described else str(n) for n in names]
    label = "High-resolution crop" if len(parts) == 1 else "High-resolution crops"
    return f"{label}: {', '.join(parts)}. Answer the question now."
