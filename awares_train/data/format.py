"""The trajectory format: one JSON line per record, images as PNG files beside it.

This is the contract between data construction, SFT, GRPO and evaluation (see the module
docstring of :mod:`awares_train.data` and ``/tmp/trajectory_format.md`` in the project notes). A
record holds the chat ``messages`` with ``{"type": "image"}`` placeholders (no ``image`` key: a
PIL image inside a part makes Arrow add ``image: None`` to every text part, which chat templates
then render as an image), the ``images`` that fill them in order, and the original full image
that GRPO crops from at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, Field

__all__ = ["JudgeInfo", "Trajectory", "safe_name", "build_messages", "save_png",
           "load_trajectories", "read_jsonl_ids"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class JudgeInfo(BaseModel):
    lowres_answer: str
    fullres_answer: str
    verdict: Literal["tie", "lowres", "fullres", "neither"]


class Trajectory(BaseModel):
    """One line of ``data.jsonl``."""

    id: str
    source: str
    question: str
    answers: list[str]
    label: Literal["direct", "crop", "drop"]
    target_regions: list[str]
    image: str = Field(description="The original full image, relative to the data folder.")
    image_size: tuple[int, int]
    images: list[str] = Field(description="Images filling the placeholders, in order, relative paths.")
    messages: list[dict[str, Any]]
    tool_turn: int | None
    target_rtr: float | None
    evidence_box: tuple[int, int, int, int] | None
    grounding: Literal["dataset", "ocr", "vlm"] | None
    judge: JudgeInfo
    target_fallback: Literal["no_region", "no_box"] | None = Field(
        None, description="Why a crop target is 'all': no crop qualified for the box, or no box was found.")


def safe_name(record_id: str) -> str:
    """A file-name-safe form of a record id; ids that had to change get a short hash to stay unique.

    >>> safe_name("docvqa-000123")
    'docvqa-000123'
    >>> safe_name("a/b c")[:4]
    'a_b_'
    """
    cleaned = _UNSAFE.sub("_", record_id).strip("._") or "rec"
    if cleaned == record_id:
        return cleaned
    return f"{cleaned[:80]}_{hashlib.sha1(record_id.encode()).hexdigest()[:8]}"


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def build_messages(*, system_prompt: str, question: str, answer: str, request: str | None = None,
                   n_crops: int = 0, crops_text: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Chat messages of one trajectory and the index of its tool-request turn.

    A direct record is system, user (low-res image + question), assistant (answer). A crop
    record adds the assistant's ``request``, a user turn with ``n_crops`` image placeholders and
    ``crops_text``, then the answer.
    """
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": [_text(system_prompt)]},
        {"role": "user", "content": [{"type": "image"}, _text(question)]},
    ]
    tool_turn = None
    if request is not None:
        if n_crops < 1 or crops_text is None:
            raise ValueError("a crop trajectory needs n_crops >= 1 and crops_text")
        tool_turn = len(msgs)
        msgs.append({"role": "assistant", "content": [_text(request)]})
        msgs.append({"role": "user", "content": [*({"type": "image"} for _ in range(n_crops)), _text(crops_text)]})
    msgs.append({"role": "assistant", "content": [_text(answer)]})
    return msgs, tool_turn


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` as PNG atomically (a killed run never leaves a half-written file)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def copy_or_save(src: Any, path: Path) -> None:
    """Store the original image: copy a PNG source byte for byte, else encode it as PNG."""
    if getattr(src, "format", None) == "PNG" and getattr(src, "path", None) is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.copyfile(src.path, tmp)
        os.replace(tmp, path)
    else:
        save_png(src.image, path)


def read_jsonl_ids(path: Path) -> list[str]:
    """The ``id`` of every complete line of a JSONL file (a torn last line is ignored)."""
    import json

    ids: list[str] = []
    if not path.is_file():
        return ids
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                ids.append(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError):
                continue
    return ids


def load_trajectories(path: str | Path) -> Any:
    """Load a trajectory folder as a ``datasets.Dataset``.

    ``images`` becomes a list of ``datasets.Image()`` and ``image`` an absolute path, so the
    result goes straight into TRL's SFT (``images`` + ``messages``) and GRPO (crops from ``image``).
    """
    import datasets

    base = Path(path).resolve()
    data = base / "data.jsonl"
    if not data.is_file():
        raise FileNotFoundError(f"{data} does not exist; build it with `awares-train build-data`")
    ds = datasets.load_dataset("json", data_files=str(data), split="train")

    def absolute(row: dict[str, Any]) -> dict[str, Any]:
        return {"images": [str(base / p) for p in row["images"]], "image": str(base / row["image"])}

    ds = ds.map(absolute)
    return ds.cast_column("images", datasets.List(datasets.Image()))
