"""Trajectory folders (the data contract, /tmp/trajectory_format.md) as ``datasets.Dataset`` rows for SFT and GRPO.

Images stay file paths (absolute) in the rows: the collator and the crop environment open them when
a batch is built, so Arrow never stores PIL images inside ``messages`` (ml-stack.md §3 explains why
that breaks the chat template). The original full image is the ``source_image`` column (GRPO crops from it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["read_records", "load_trajectory_dataset", "read_settings"]

log = logging.getLogger(__name__)


def read_settings(folder: str | Path) -> dict[str, Any]:
    """The folder's ``settings.json`` (empty dict when absent)."""
    path = Path(folder) / "settings.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_records(folder: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of ``folder/data.jsonl`` with image paths made absolute.

    Raises:
        FileNotFoundError: No ``data.jsonl`` in ``folder``.
        ValueError: A record lacks ``messages``/``images`` or its placeholder count differs from its images.
    """
    root = Path(folder).resolve()
    path = root / "data.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no trajectory data at {str(path)!r}; build it with `awares-train build-data`")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "messages" not in rec or "images" not in rec:
                raise ValueError(f"{path}:{n}: a trajectory record needs 'messages' and 'images'")
            placeholders = sum(p.get("type") == "image" for m in rec["messages"] for p in m["content"]
                               if isinstance(m["content"], list))
            if placeholders != len(rec["images"]):
                raise ValueError(f"{path}:{n}: {placeholders} image placeholders but {len(rec['images'])} images")
            rows.append({
                "id": str(rec.get("id", n)),
                "question": rec.get("question", ""),
                "answers": list(rec.get("answers") or []),
                "label": rec.get("label", "direct"),
                "target_regions": list(rec.get("target_regions") or []),
                "source_image": str(root / rec["image"]) if rec.get("image") else str(root / rec["images"][0]),
                "image_size": list(rec.get("image_size") or []),
                "images": [str(root / p) for p in rec["images"]],
                "messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]],
            })
            if limit is not None and len(rows) >= limit:
                break
    return rows


def load_trajectory_dataset(folder: str | Path, *, limit: int | None = None) -> Any:
    """``read_records`` as a ``datasets.Dataset``."""
    from datasets import Dataset

    rows = read_records(folder, limit=limit)
    if not rows:
        raise ValueError(f"{folder}: data.jsonl holds no records")
    return Dataset.from_list(rows)
