"""A resumable run's work folder belongs to the settings that started it.

Long runs (the base adaptation's phases, the reproduction, the default's recipe) resume when the same command
is run again: a finished stage is skipped, a stopped one continues from its checkpoint. The same command with
another base or other settings would then find the old run's results and reuse them as its own, silently (a
finished 2,000-step phase is "already done" for a 1,300-step request; trajectories labelled by one base feed
another base's SFT; the report names the new base). So the folder records what started it (``run.json``: the
base model's fingerprint and the settings that shape the results) and a rerun that asks for something else
stops with :class:`WorkFolderMismatchError` before it reads or writes anything.

Settings that only extend a run (a longer budget, more seeds, the ablations added) and those that change how
it runs but not what it computes (threads, evaluation sizes, the docs folder) stay out of the record.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from awares_tool.errors import AwaresError

__all__ = ["WorkFolderMismatchError", "claim_work_folder", "model_fingerprint", "file_fingerprint", "RECORD"]

log = logging.getLogger(__name__)

#: The record's file name inside a work folder.
RECORD = "run.json"
#: Files of a model folder that decide what it computes (the card, README and the like do not).
_MODEL_FILES = ("config.json", "chat_template.jinja", "tokenizer.json", "processor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


class WorkFolderMismatchError(AwaresError, ValueError):
    """A work folder holds a run started with other settings (resuming there would reuse its results)."""


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def file_fingerprint(path: Path | str) -> str:
    """A short content hash of one file (a training config), so an edited file counts as other settings."""
    return _digest([Path(path)])


def model_fingerprint(folder: Path | str) -> str:
    """A short content hash of a model folder's weights, config, template and processor settings.

    Content, not path: the same folder retrained in place is another base, and a copy elsewhere is the same.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file()
                   and (p.name in _MODEL_FILES or p.suffix in _WEIGHT_SUFFIXES)) if folder.is_dir() else []
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(f"{folder} is not a model folder (no weights file: "
                                f"{', '.join('*' + s for s in _WEIGHT_SUFFIXES)})")
    return _digest(files)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def claim_work_folder(work: Path, identity: dict[str, Any], *, what: str) -> None:
    """Record ``identity`` in ``work/run.json``, or check it against the one recorded there.

    Args:
        work: The run's work folder (created when missing).
        identity: What the results depend on (JSON-serialisable; compared after a JSON round trip).
        what: The run's name for messages ("bench-base phase", "reproduction").

    Raises:
        WorkFolderMismatchError: ``work`` records a different identity; the message lists what differs and the fix.

    A folder with results but no record (written before records existed) cannot be checked: a warning says so
    and the record is written, assuming the results are this run's. Log files alone are not results.
    """
    asked = json.loads(json.dumps(identity))
    path = work / RECORD
    if path.is_file():
        stored = json.loads(path.read_text())
        differ = sorted(k for k in stored.keys() | asked.keys() if stored.get(k) != asked.get(k))
        if differ:
            changes = "; ".join(f"{k}: {_short(stored.get(k))} there, {_short(asked.get(k))} now" for k in differ)
            raise WorkFolderMismatchError(
                f"{work} holds a {what} started with other settings ({changes}); resuming there would reuse its "
                f"results as this run's. Pass another work folder, or delete {work} to start over.")
        return
    if work.is_dir() and any(p.suffix != ".log" for p in work.iterdir()):
        log.warning("%s holds results without a record of their settings (%s): they cannot be checked and are "
                    "resumed as this %s's", work, RECORD, what)
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asked, indent=2, sort_keys=True) + "\n")
