"""Chat templates and the crop protocol: can this checkpoint's template do tool calls, and if not, what can.

The crop request can be a native tool call (``get_crops``) whose result, the crops, arrives in a tool turn: the
shape TRL's GRPO tool loop trains and rolls out. Qwen2-VL- and Qwen2.5-VL-Instruct ship templates that render
neither tool calls nor tool turns, so a model fine-tuned from them with our tool format would be trained on empty
turns (the call is dropped from the rendered text) and GRPO refuses to start. For those families a tool-capable
template ships with the package (``awares_tool/assets/chat_templates``); SFT and GRPO apply it, record its name in
the model card, save it with the processor, and inference applies what the card names. A family with no such
template keeps the text protocol (``GET_CROPS: [...]``, the paper's own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["TemplateSupport", "TOOL_TEMPLATES", "tool_template", "template_support", "ensure_tool_template",
           "apply_named_template"]

log = logging.getLogger(__name__)

_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "assets" / "chat_templates"

#: model_type -> the tool-capable template applied when the checkpoint's own cannot render tool calls.
TOOL_TEMPLATES: dict[str, str] = {
    "qwen2_vl": "qwen-vl-tools",
    "qwen2_5_vl": "qwen-vl-tools",
    "qwen3_vl": "qwen-vl-tools",
}

_SENTINELS = ("awares_tool_name_x7", "awares_arg_key_x7", "awares_arg_val_x7", "awares_tool_text_x7")


@dataclass(frozen=True)
class TemplateSupport:
    """What a chat template renders of the tool protocol."""

    tool_calls: bool  # an assistant turn's tool calls (name and arguments) and a tool turn's text
    tool_images: bool  # images inside a tool turn


@cache
def tool_template(name: str) -> str:
    """The text of a shipped template, byte for byte (TRL recognises templates by identity).

    Raises:
        ValueError: No template of that name.
    """
    path = _TEMPLATES_DIR / f"{name}.jinja"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in _TEMPLATES_DIR.glob("*.jinja")))
        raise ValueError(f"no shipped chat template {name!r}; shipped: {known}")
    return path.read_text(encoding="utf-8")


def _render(processor: Any, messages: list[dict[str, Any]], template: str | None = None) -> str | None:
    try:
        return processor.apply_chat_template(messages, tokenize=False, chat_template=template)
    except Exception as e:  # noqa: BLE001 - a template that raises on tool turns simply does not support them
        log.debug("template does not render %s: %s", [m["role"] for m in messages], e)
        return None


def template_support(processor: Any, template: str | None = None) -> TemplateSupport:
    """Render a tool call and tool turns (text, then an image) with the processor's (or the given) template."""
    name, key, val, text = _SENTINELS
    call = {"type": "function", "function": {"name": name, "arguments": {key: val}}}
    base = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [], "tool_calls": [call]}]
    rendered = _render(processor, [*base, {"role": "tool", "name": name,
                                           "content": [{"type": "text", "text": text}]}], template)
    calls = rendered is not None and all(s in rendered for s in _SENTINELS)
    images = False
    if calls:
        plain = rendered or ""
        with_image = _render(processor, [*base, {"role": "tool", "name": name, "content": [
            {"type": "image"}, {"type": "text", "text": text}]}], template) or ""
        token = getattr(processor, "image_token", None) or "<image>"
        images = with_image.count(token) > plain.count(token)
    return TemplateSupport(tool_calls=calls, tool_images=images)


def ensure_tool_template(processor: Any, model_type: str | None) -> str | None:
    """Give ``processor`` a template that renders tool calls, if its own does not and the family has one.

    Returns:
        The name of the template applied, or None when the processor's own template is kept (it supports tool
        calls, or the family has no tool-capable template: then only the text protocol is available).
    """
    if template_support(processor).tool_calls:
        return None
    name = TOOL_TEMPLATES.get(model_type or "")
    if name is None:
        return None
    apply_named_template(processor, name)
    log.info("the %s checkpoint's chat template renders no tool calls; applying the package's %r template",
             model_type, name)
    return name


def apply_named_template(processor: Any, name: str) -> None:
    """Set a shipped template on the processor and its tokenizer (what ``save_pretrained`` then writes)."""
    text = tool_template(name)
    processor.chat_template = text
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.chat_template = text
