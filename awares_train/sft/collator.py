"""The collator TRL lacks: AwaRes trajectories with images in several turns, loss on assistant turns only.

TRL's ``DataCollatorForVisionLanguageModeling`` fills image placeholders in user turns only, renders
no ``tools`` and weights every target token alike (ml-stack.md §3). This one:

* fills the ``{"type": "image"}`` placeholders of *every* turn, in order, from the row's ``images``
  (the low-res view in turn one, the crops in the turn after the request);
* optionally rewrites the text request ``GET_CROPS: ['3']`` as a native ``get_crops`` tool call and the
  crops turn as a ``tool`` turn (``request_format="tool"``), the exact shape of a GRPO rollout, and
  renders the tool schema so the SFT prompt equals the RL prompt;
* labels exactly the assistant tokens (the template's ``{% generation %}`` spans) and gives each
  labelled token a weight: ``tool_turn_weight`` for the request turn (every assistant turn but the last),
  1 for the answer, and optionally ``region_token_weight`` times more for the tokens that spell the
  requested region names. The request turn is mostly fixed syntax the model learns in a few steps; the
  region name is the one decision in it, and a small model trained from scratch learns it only when
  it dominates the turn's loss (measured on the tiny model: region choice stayed at chance with the
  turn weighted 2x, and was learnt with the name weighted 8x). The weights go out as ``loss_weights``;
  :class:`~awares_train.sft.trainer.WeightedSFTTrainer` uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from awares_tool.crops import get_crop_set
from awares_tool.protocol import GET_CROPS_TOOL, CropRequest, parse_reply

__all__ = ["TrajectoryCollator", "to_conversation", "span_runs", "name_token_positions"]

log = logging.getLogger(__name__)


def _open(image: Any) -> Any:
    """A PIL image from a path, a PIL image, or a datasets ``{"path", "bytes"}`` struct."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):
        if image.get("bytes"):
            import io

            return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
        image = image.get("path")
    return Image.open(Path(image)).convert("RGB")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content if p.get("type") == "text")


def to_conversation(
    messages: Sequence[dict[str, Any]],
    images: Sequence[Any],
    *,
    request_format: str = "text",
    system_prompt: str | None = None,
    crop_set: Any = "awares9",
) -> list[dict[str, Any]]:
    """One trajectory as chat messages with PIL images in place, ready for ``apply_chat_template``.

    Args:
        messages: The record's ``messages`` (contract format; Arrow may have added ``text: None`` keys).
        images: Paths or PIL images, in placeholder order.
        request_format: ``"text"`` keeps the trajectory as it is; ``"tool"`` turns every request turn
            into a ``get_crops`` tool call and the user turn after it into a ``tool`` turn.
        system_prompt: Replaces the system turn's text when given.
        crop_set: Crop set used to read the requests (``"tool"`` only).

    Raises:
        ValueError: Placeholders and images differ in number, or (``"tool"``) a non-final assistant
            turn is not a crop request.
    """
    it = iter(images)
    conv: list[dict[str, Any]] = []
    n_placeholders = 0
    for msg in messages:
        parts = msg["content"] if isinstance(msg["content"], list) else [{"type": "text", "text": msg["content"]}]
        content = []
        for p in parts:
            if p.get("type") == "image":
                n_placeholders += 1
                try:
                    content.append({"type": "image", "image": _open(next(it))})
                except StopIteration as e:
                    raise ValueError(f"{n_placeholders} image placeholders but only {len(images)} images") from e
            else:
                content.append({"type": "text", "text": p.get("text") or ""})
        conv.append({"role": msg["role"], "content": content})
    if n_placeholders != len(images):
        raise ValueError(f"{n_placeholders} image placeholders but {len(images)} images")
    if system_prompt is not None:
        if conv and conv[0]["role"] == "system":
            conv[0] = {"role": "system", "content": [{"type": "text", "text": system_prompt}]}
        else:
            conv.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    if request_format == "tool":
        conv = _as_tool_calls(conv, get_crop_set(crop_set))
    elif request_format != "text":
        raise ValueError(f"request_format must be 'text' or 'tool', got {request_format!r}")
    return conv


def _as_tool_calls(conv: list[dict[str, Any]], crop_set: Any) -> list[dict[str, Any]]:
    last_assistant = max((i for i, m in enumerate(conv) if m["role"] == "assistant"), default=-1)
    out: list[dict[str, Any]] = []
    after_request = False
    for i, msg in enumerate(conv):
        if after_request and msg["role"] == "user":
            out.append({"role": "tool", "name": GET_CROPS_TOOL, "content": msg["content"]})
            after_request = False
            continue
        if msg["role"] == "assistant" and i != last_assistant:
            parsed = parse_reply(_text(msg["content"]), crop_set)
            if not isinstance(parsed, CropRequest):
                raise ValueError(f"assistant turn {i} is not the last one but is no crop request: {parsed!r:.120}")
            call = {"type": "function", "function": {"name": GET_CROPS_TOOL, "arguments": {"regions": parsed.regions}}}
            out.append({"role": "assistant", "content": [], "tool_calls": [call]})
            after_request = True
            continue
        out.append(msg)
    return out


def span_runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of ones: one run per assistant turn of a rendered chat.

    >>> span_runs([0, 1, 1, 0, 0, 1, 0])
    [(1, 3), (5, 6)]
    """
    runs, start = [], None
    for i, v in enumerate(mask):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def name_token_positions(pieces: Sequence[str], names: Sequence[str]) -> list[int]:
    """Indices of the tokens that spell each quoted name (``'1'`` or ``"1"``) in the text ``pieces`` form.

    ``pieces`` are the decoded tokens of one turn; the last quoted occurrence of each name counts (in a
    tool call the arguments come last). A token counts when it overlaps the name's characters.

    >>> name_token_positions(['{"', 'regions', '":', ' ["', '1', '"]}'], ["1"])
    [4]
    """
    text = "".join(pieces)
    ends, pos = [], 0
    for p in pieces:
        pos += len(p)
        ends.append(pos)
    out: set[int] = set()
    for name in names:
        at = max(text.rfind(f'"{name}"'), text.rfind(f"'{name}'"))
        if at < 0:
            continue
        lo, hi = at + 1, at + 1 + len(name)
        start = 0
        for i, end in enumerate(ends):
            if start < hi and end > lo:
                out.add(i)
            start = end
    return sorted(out)


def _requested(msg: dict[str, Any], crop_set: Any) -> list[str]:
    """Region names of one request turn, in the text or the tool-call format."""
    calls = msg.get("tool_calls") or []
    if calls:
        return [str(r) for c in calls for r in (c["function"]["arguments"].get("regions") or [])]
    parsed = parse_reply(_text(msg["content"]), crop_set)
    return list(parsed.regions) if isinstance(parsed, CropRequest) else []


class TrajectoryCollator:
    """Batch trajectory rows into model inputs with assistant-only ``labels`` and per-token ``loss_weights``.

    Args:
        processor: The VLM's processor (``ProcessorMixin``).
        request_format: ``"text"`` or ``"tool"`` (see :func:`to_conversation`).
        tools: Tool schemas or callables rendered into the prompt (``"tool"`` format).
        system_prompt: Replaces every trajectory's system prompt when given.
        tool_turn_weight: Weight of the request turn's tokens; the answer's tokens weigh 1.
        region_token_weight: Extra factor on the tokens of the requested region names (1: none).
        crop_set: The crop set of the trajectories.
        chat_template: A template with ``{% generation %}`` markers; ``None`` takes TRL's training
            variant of the processor's template (or the template itself when it has the markers).

    Raises:
        ValueError: No template with ``{% generation %}`` markers is available for this model.
    """

    def __init__(self, processor: Any, *, request_format: str = "text", tools: Sequence[Any] | None = None,
                 system_prompt: str | None = None, tool_turn_weight: float = 5.0, crop_set: Any = "awares9",
                 chat_template: str | None = None, region_token_weight: float = 1.0) -> None:
        from trl.chat_template_utils import get_training_chat_template

        self.processor = processor
        self.request_format = request_format
        self.tools = list(tools) if tools else None
        self.system_prompt = system_prompt
        self.tool_turn_weight = float(tool_turn_weight)
        self.region_token_weight = float(region_token_weight)
        self.crop_set = get_crop_set(crop_set)
        template = chat_template or get_training_chat_template(processor) or processor.chat_template
        if not template or "{% generation %}" not in template.replace("{%- generation %}", "{% generation %}"):
            raise ValueError(
                f"the chat template of {type(processor).__name__} has no {{% generation %}} markers and TRL ships no "
                "training variant for it, so assistant tokens cannot be found; pass chat_template= with "
                "{% generation %}...{% endgeneration %} around assistant content"
            )
        self.chat_template = template

    def _piece(self, token_id: int) -> str:
        tok = getattr(self.processor, "tokenizer", self.processor)
        return tok.decode([token_id])

    def conversations(self, rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The rows as chat messages with images in place (what gets rendered)."""
        return [to_conversation(r["messages"], r["images"], request_format=self.request_format,
                                system_prompt=self.system_prompt, crop_set=self.crop_set) for r in rows]

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        convs = self.conversations(rows)
        out = self.processor.apply_chat_template(
            convs, tools=self.tools, chat_template=self.chat_template, tokenize=True, return_dict=True,
            return_tensors="pt", return_assistant_tokens_mask=True,
            processor_kwargs={"padding": True, "padding_side": "right"},
        )
        mask = out.pop("assistant_masks")
        mask = torch.as_tensor(mask) * out["attention_mask"]
        labels = out["input_ids"].clone()
        labels[mask == 0] = -100
        weights = mask.to(torch.float32)
        for b, conv in enumerate(convs):
            runs = span_runs(mask[b].tolist())
            n_assistant = sum(m["role"] == "assistant" for m in conv)
            if len(runs) != n_assistant:
                raise ValueError(
                    f"row {b}: {n_assistant} assistant turns but {len(runs)} labelled spans; the chat template's "
                    "{% generation %} markers do not wrap each assistant turn separately"
                )
            requests = [m for m in conv if m["role"] == "assistant"][:-1]
            for (start, end), msg in zip(runs[:-1], requests):  # every turn before the answer is a request
                weights[b, start:end] = self.tool_turn_weight
                if self.region_token_weight != 1.0:
                    pieces = [self._piece(int(t)) for t in out["input_ids"][b, start:end]]
                    for i in name_token_positions(pieces, _requested(msg, self.crop_set)):
                        weights[b, start + i] *= self.region_token_weight
        out["labels"] = labels
        out["loss_weights"] = weights
        return dict(out)
