"""Adapters: one small function per public data set, turning its rows into :class:`VQARecord`.

Each adapter reads the column names the data set has on the Hugging Face hub (and, where it
differs, in the authors' original JSON release), so a local copy of either loads unchanged:

* ChartQA (``HuggingFaceM4/ChartQA``): ``image``, ``query``, ``label`` (a list), ``human_or_machine``;
  the original release has ``imgname`` (images under ``png/``) and a string ``label``.
* DocVQA (``lmms-lab/DocVQA``, config ``DocVQA``): ``questionId``, ``question``, ``answers``,
  ``image``, ``docId``, ``question_types``; the original has ``image`` as ``documents/x.png``.
* InfographicVQA (``lmms-lab/DocVQA``, config ``InfographicVQA``): ``questionId``, ``question``,
  ``answers``, ``image``, ``answer_type``; the original has ``image_local_name``.
* TextVQA (``facebook/textvqa``, ``lmms-lab/textvqa``): ``question_id``, ``question``, ``answers``
  (ten human answers), ``image``, ``image_id``, ``ocr_tokens``; the original keeps images as
  ``train_images/<image_id>.jpg``.
* AwaRes (``NimrodShabtay1986/AwaRes``): chat trajectories. Its card could not be read from here, so
  the adapter accepts the usual chat layouts (``conversations`` with ``from``/``value``, or
  ``messages`` with ``role``/``content``) plus ``image``/``images``, takes the question from the
  first user turn, the answer from the last assistant turn, and any ``GET_CROPS`` request as the
  record's published target (kept in ``meta['target_regions']``).
* ``synthetic``: the ``records.jsonl`` of :func:`awares_train.data.synthetic.write_split`.
* ``generic``: ``id``, ``image``, ``question``, ``answers``/``answer``, ``evidence_box(es)``, ``source``.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from awares_train.data.records import VQARecord, read_rows

__all__ = ["ADAPTERS", "Adapter", "get_adapter", "guess_adapter", "image_fields", "load_records"]

logger = logging.getLogger(__name__)

Adapter = Callable[..., VQARecord]

_IMAGE_TOKENS = re.compile(r"<image>\s*|<\|image\|>\s*|<\|vision_start\|>.*?<\|vision_end\|>\s*")
_REQUEST = re.compile(r"GET_CROPS\s*:?\s*\[([^\]]*)\]", re.IGNORECASE)


def _resolve(path: str, root: Path, subdirs: tuple[str, ...] = ()) -> str:
    p = Path(path)
    if p.is_absolute():
        return str(p)
    for sub in (*subdirs, ""):
        cand = root / sub / p if sub else root / p
        if cand.exists():
            return str(cand)
    return str(root / p)


def image_fields(value: Any, root: Path, subdirs: tuple[str, ...] = ()) -> tuple[str | None, bytes | None]:
    """``(path, bytes)`` of an image cell: a path, a ``{"bytes", "path"}`` struct, bytes or a PIL image."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if value.startswith("data:") and "," in value:
            return None, base64.b64decode(value.split(",", 1)[1])
        return _resolve(value, root, subdirs), None
    if isinstance(value, (bytes, bytearray)):
        return None, bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return None, bytes(value["bytes"])
        if value.get("path"):
            return _resolve(str(value["path"]), root, subdirs), None
        return None, None
    if hasattr(value, "save"):  # a decoded PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return None, buf.getvalue()
    raise TypeError(f"unsupported image cell of type {type(value).__name__}")


def _by_frequency(answers: list[Any]) -> list[str]:
    """Distinct answers, most frequent first (ties keep first-seen order)."""
    texts = [str(a).strip() for a in answers if str(a).strip()]
    counts = Counter(texts)
    first = {t: i for i, t in reversed(list(enumerate(texts)))}
    return sorted(counts, key=lambda t: (-counts[t], first[t]))


def _boxes(row: dict[str, Any]) -> list[tuple[float, float, float, float]] | None:
    if row.get("evidence_boxes"):
        return [tuple(b) for b in row["evidence_boxes"]]  # type: ignore[misc]
    if row.get("evidence_box"):
        return [tuple(row["evidence_box"])]  # type: ignore[list-item]
    return None


def generic(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """Rows already in our field names (``answer`` is accepted for a single answer)."""
    path, data = image_fields(row.get("image"), image_root)
    answers = row.get("answers", row.get("answer"))
    known = {"id", "image", "question", "answers", "answer", "evidence_box", "evidence_boxes", "source"}
    return VQARecord(
        id=str(row.get("id", f"rec-{index:06d}")), image=path, image_bytes=data, question=row["question"],
        answers=answers, evidence_boxes=_boxes(row), source=row.get("source", "generic"),
        meta={k: v for k, v in row.items() if k not in known and _jsonable(v)},
    )


def synthetic(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """The synthetic generator's ``records.jsonl`` (keeps its ground truth in ``meta``)."""
    path, _ = image_fields(row["image"], image_root)
    meta = {k: row[k] for k in ("needs_crop", "kind", "target_regions", "split", "font_size") if k in row}
    return VQARecord(id=str(row["id"]), image=path, question=row["question"], answers=row["answers"],
                     evidence_boxes=_boxes(row), source="synthetic", meta=meta)


def chartqa(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """ChartQA: ``query`` / ``label``; the image is ``image`` or ``imgname`` (under ``png/``)."""
    path, data = image_fields(row.get("image") or row.get("imgname"), image_root, subdirs=("png",))
    meta = {"human_or_machine": row["human_or_machine"]} if "human_or_machine" in row else {}
    if row.get("imgname"):
        meta["imgname"] = row["imgname"]
    return VQARecord(id=str(row.get("id", f"chartqa-{index:06d}")), image=path, image_bytes=data,
                     question=row["query"], answers=row["label"], source="chartqa", meta=meta)


def docvqa(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """DocVQA: ``questionId``, ``question``, ``answers``, ``image`` (cell or ``documents/...`` path)."""
    path, data = image_fields(row.get("image"), image_root)
    qid = row.get("questionId", index)
    meta = {k: row[k] for k in ("docId", "question_types", "ucsf_document_id", "data_split") if k in row}
    return VQARecord(id=f"docvqa-{qid}", image=path, image_bytes=data, question=row["question"],
                     answers=row["answers"], source="docvqa", meta=meta)


def infovqa(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """InfographicVQA: like DocVQA; the original release names the file in ``image_local_name``."""
    cell = row.get("image") or row.get("image_local_name")
    path, data = image_fields(cell, image_root, subdirs=("infographicsvqa_images", "images"))
    qid = row.get("questionId", index)
    meta = {k: row[k] for k in ("answer_type", "image_url", "data_split") if k in row}
    return VQARecord(id=f"infovqa-{qid}", image=path, image_bytes=data, question=row["question"],
                     answers=row["answers"], source="infovqa", meta=meta)


def textvqa(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """TextVQA: ten human ``answers`` become distinct answers, most frequent first."""
    cell = row.get("image")
    if cell is None and row.get("image_id"):
        cell = f"{row['image_id']}.jpg"
    path, data = image_fields(cell, image_root, subdirs=("train_images", "images"))
    qid = row.get("question_id", index)
    meta = {k: row[k] for k in ("image_id", "image_classes", "set_name") if k in row}
    meta["answer_counts"] = dict(Counter(str(a).strip() for a in row["answers"]))
    return VQARecord(id=f"textvqa-{qid}", image=path, image_bytes=data, question=row["question"],
                     answers=_by_frequency(row["answers"]), source="textvqa", meta=meta)


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """``(role, text)`` pairs of a chat row in either the LLaVA or the OpenAI layout."""
    out = []
    for turn in row.get("conversations") or row.get("messages") or []:
        role = turn.get("from", turn.get("role", ""))
        role = {"human": "user", "gpt": "assistant"}.get(role, role)
        content = turn.get("value", turn.get("content", ""))
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        out.append((role, str(content)))
    return out


def awares(row: dict[str, Any], *, index: int, image_root: Path) -> VQARecord:
    """AwaRes chat trajectories (see the module docstring for what is assumed)."""
    cell = row.get("image")
    if cell is None and row.get("images"):
        cell = row["images"][0]
    path, data = image_fields(cell, image_root)
    turns = _turns(row)
    users = [_IMAGE_TOKENS.sub("", t).strip() for r, t in turns if r == "user"]
    assistants = [t.strip() for r, t in turns if r == "assistant"]
    question = row.get("question") or (users[0] if users else None)
    answers = row.get("answers") or row.get("answer") or [a for a in assistants[-1:] if not _REQUEST.search(a)]
    if not question or not answers:
        raise ValueError(f"AwaRes row {index} has no question or no final answer (keys {sorted(row)[:12]})")
    meta: dict[str, Any] = {}
    for a in assistants:
        m = _REQUEST.search(a)
        if m:
            meta["target_regions"] = [s.strip().strip("'\"") for s in m.group(1).split(",") if s.strip()]
    return VQARecord(id=str(row.get("id", f"awares-{index:06d}")), image=path, image_bytes=data, question=question,
                     answers=answers, evidence_boxes=_boxes(row), source=str(row.get("source", "awares")), meta=meta)


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict)) or v is None


ADAPTERS: dict[str, Adapter] = {
    "generic": generic,
    "synthetic": synthetic,
    "chartqa": chartqa,
    "docvqa": docvqa,
    "infovqa": infovqa,
    "textvqa": textvqa,
    "awares": awares,
}


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; raises ``ValueError`` listing the known ones."""
    try:
        return ADAPTERS[name.lower()]
    except KeyError as e:
        raise ValueError(f"unknown data adapter {name!r}; known: auto, {', '.join(ADAPTERS)}") from e


def guess_adapter(row: dict[str, Any]) -> str:
    """Name of the adapter whose columns ``row`` has (``generic`` when none fits better)."""
    keys = set(row)
    if {"query", "label"} <= keys:
        return "chartqa"
    if "question_id" in keys and ({"image_id", "ocr_tokens", "flickr_original_url"} & keys):
        return "textvqa"
    if "questionId" in keys:
        return "infovqa" if {"image_local_name", "answer_type", "image_url"} & keys else "docvqa"
    if {"conversations", "messages"} & keys:
        return "awares"
    if {"needs_crop", "kind", "target_regions"} <= keys:
        return "synthetic"
    return "generic"


def load_records(
    path: str | Path,
    *,
    adapter: str = "auto",
    split: str | None = None,
    image_root: str | Path | None = None,
    limit: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> Iterator[VQARecord]:
    """Load a local data set as :class:`VQARecord` objects, lazily.

    Args:
        path: See :func:`read_rows`.
        adapter: ``auto`` (guess from the columns), ``generic``, ``synthetic``, ``chartqa``,
            ``docvqa``, ``infovqa``, ``textvqa`` or ``awares``.
        split: Split to read from a ``DatasetDict`` or sharded parquet folder.
        image_root: Folder that relative image paths are relative to (default: the data file's
            folder).
        limit: Stop after this many records.
        on_error: A row the adapter cannot read (missing column, bad value): ``raise`` a
            ``ValueError`` naming the row, or ``skip`` it with a logged warning.
    """
    p = Path(path)
    root = Path(image_root) if image_root is not None else (p if p.is_dir() else p.parent)
    fn = None if adapter == "auto" else get_adapter(adapter)
    for i, row in enumerate(read_rows(p, split=split)):
        if limit is not None and i >= limit:
            return
        if fn is None:
            name = guess_adapter(row)
            logger.info("data adapter for %s: %s", p, name)
            fn = get_adapter(name)
        try:
            yield fn(row, index=i, image_root=root)
        except (KeyError, TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            msg = f"{p} row {i} cannot be read as a VQA record ({type(e).__name__}: {e}); fix the row or pick --adapter"
            if on_error == "raise":
                raise ValueError(msg) from e
            logger.warning("skipped: %s", msg)
