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

__all__ = ["read_records", "load_trajectory_dataset", "read_settings", "trajectory_folders"]

log = logging.getLogger(__name__)


def trajectory_folders(spec: str | Path) -> list[Path]:
    """The folders ``train_data`` names: one folder, or several separated by commas (``a/,b/``).

    Several folders mix datasets (say a benchmark's trajectories and an older task's) in one run without
    copying them into one folder.
    """
    folders = [Path(part.strip()) for part in str(spec).split(",") if part.strip()]
    if not folders:
        raise ValueError("no trajectory folder given")
    return folders


def read_settings(spec: str | Path) -> dict[str, Any]:
    """The ``settings.json`` of the (first) folder in ``spec`` (empty dict when absent).

    Raises:
        ValueError: Several folders whose trajectories were built with different crop sets or low-res views.
    """
    found = []
    for folder in trajectory_folders(spec):
        path = folder / "settings.json"
        found.append((folder, json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}))
    first_folder, first = found[0]
    for folder, settings in found[1:]:
        for key, (mine, theirs) in zip(("crop set", "low-res view"), zip(_built_with(settings), _built_with(first))):
            if None not in (mine, theirs) and mine != theirs:
                raise ValueError(f"{folder} and {first_folder} differ in their {key} ({mine} vs {theirs}): "
                                 "their trajectories cannot be trained on together")
    return first


def _built_with(settings: dict[str, Any]) -> tuple[Any, Any]:
    """The crop set's name and the low-res policy a folder's images were made with (None: not recorded).

    The system prompt may differ between folders: the training config sets its own.
    """
    crop_set = settings.get("crop_set")
    name = crop_set.get("name") if isinstance(crop_set, dict) else crop_set
    return name, settings.get("lowres_policy", settings.get("lowres"))


def read_records(spec: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of each folder's ``data.jsonl`` (``spec``: one folder or several, comma-separated), image paths
    made absolute; with several folders, ids are prefixed with the folder's position (``1:train-000003``) so
    that they stay unique.

    Raises:
        FileNotFoundError: No ``data.jsonl`` in a folder.
        ValueError: A record lacks ``messages``/``images`` or its placeholder count differs from its images.
    """
    folders = trajectory_folders(spec)
    if len(folders) > 1:
        read_settings(spec)  # refuse folders built with different crops or low-res views
    rows: list[dict[str, Any]] = []
    for k, folder in enumerate(folders):
        left = None if limit is None else limit - len(rows)
        if left is not None and left <= 0:
            break
        part = _read_folder(folder, limit=left)
        if len(folders) > 1:
            for row in part:
                row["id"] = f"{k}:{row['id']}"
        rows += part
    return rows


def _read_folder(folder: Path, *, limit: int | None) -> list[dict[str, Any]]:
    root = folder.resolve()
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


def load_trajectory_dataset(spec: str | Path, *, limit: int | None = None) -> Any:
    """``read_records`` as a ``datasets.Dataset``."""
    from datasets import Dataset

    rows = read_records(spec, limit=limit)
    if not rows:
        raise ValueError(f"{spec}: data.jsonl holds no records")
    return Dataset.from_list(rows)
