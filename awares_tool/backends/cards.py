"""Built-in model cards: how published checkpoints expect to be spoken to, when they ship no ``awares.json``.

A model is run with the protocol it was trained on (prompt, request form, how crops arrive, low-res policy,
pixel limits). Models trained by this package carry that in ``awares.json``; a published checkpoint trained
elsewhere does not, so its card ships here as a data file (``awares_tool/assets/cards/NAME.json``, with its
source cited) and is chosen by name (``--card awares-official``) or automatically for the checkpoint's hub id.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from awares_tool.backends.base import ModelCard
from awares_tool.errors import BackendUnavailableError

__all__ = ["builtin_card_names", "builtin_card", "load_card", "card_for_model"]

_CARDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "cards"


def builtin_card_names() -> list[str]:
    """Names of the built-in cards (``awares-official``, ...)."""
    return sorted(p.stem for p in _CARDS_DIR.glob("*.json"))


@cache
def builtin_card(name: str) -> ModelCard:
    """The built-in card ``name``.

    Raises:
        BackendUnavailableError: No such card; the message lists the built-in ones.
    """
    path = _CARDS_DIR / f"{name}.json"
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name) or not path.is_file():
        raise BackendUnavailableError(
            f"no built-in model card {name!r}; built-in cards: {', '.join(builtin_card_names())} (or pass the path "
            "of an awares.json)")
    return ModelCard.read(path)


def load_card(name_or_path: str | os.PathLike[str]) -> ModelCard:
    """A card from a built-in name or from a path (``awares.json`` or the folder holding it)."""
    text = os.fspath(name_or_path)
    if text in builtin_card_names():
        return builtin_card(text)
    if not Path(text).expanduser().exists():
        raise BackendUnavailableError(
            f"no model card at {text!r} and no built-in card of that name; pass the path of an awares.json (or its "
            f"folder) or a built-in card: {', '.join(builtin_card_names())}")
    return ModelCard.read(Path(text).expanduser())


def card_for_model(model: str | os.PathLike[str]) -> ModelCard | None:
    """The card of a model: its folder's ``awares.json``, else a built-in card whose hub id it is.

    A hub id matches as given (``Kimhi/AWARES-Qwen2.5-VL-7B``), as the last part of a local folder
    (``~/models/AWARES-Qwen2.5-VL-7B``) or inside a hub cache path (``models--Kimhi--AWARES-Qwen2.5-VL-7B``).
    """
    path = Path(os.fspath(model)).expanduser()
    if path.is_dir():
        card = ModelCard.from_folder(path)
        if card is not None:
            return card
    text = os.fspath(model).rstrip("/").lower()
    for name in builtin_card_names():
        card = builtin_card(name)
        for model_id in card.model_ids:
            mid = model_id.lower()
            if text == mid or text.endswith("/" + mid.split("/")[-1]) or f"models--{mid.replace('/', '--')}" in text:
                return card
    return None
