"""VQA records and the readers that load them from local files.

A :class:`VQARecord` is the one shape the pipeline works on (image, question, reference answers,
optional evidence boxes); each public data set reaches it through an adapter
(:mod:`awares_train.data.adapters`). Files are read lazily, row by row, so a 100K-row data set
never sits in memory; images stored inside the rows (Hugging Face ``Image`` features, parquet
bytes) stay bytes until the pipeline opens them.

Readable inputs: ``.jsonl`` / ``.json`` (a list, or an object with a ``data`` list as the official
DocVQA/TextVQA releases have), ``.parquet`` (a file or a folder of shards) and folders written by
``datasets.Dataset.save_to_disk`` (or a ``DatasetDict``, whose split is chosen by ``split``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["VQARecord", "read_rows", "detect_format", "count_rows"]

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class VQARecord(BaseModel):
    """One question about one image, with its reference answers.

    Attributes:
        id: Unique, stable id (resuming a run keys on it).
        image: Path of the image file (absolute, or relative to the current directory).
        image_bytes: The encoded image, for rows that embed it (then ``image`` may be None).
        question: The question text.
        answers: Reference answers, most trusted first (the first one is the SFT target).
        evidence_boxes: Pixel boxes ``(left, top, right, bottom)`` of the evidence, when the data
            set gives them.
        source: Data set name (``chartqa``, ``docvqa``, ...); picks the metric of the ``auto`` judge.
        meta: Anything else worth keeping (ground-truth labels of synthetic data, original ids).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    image: str | None = None
    image_bytes: bytes | None = Field(None, exclude=True, repr=False)
    question: str
    answers: list[str] = Field(min_length=1)
    evidence_boxes: list[Box] | None = None
    source: str = "unknown"
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answers", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if isinstance(v, (str, int, float)):
            return [str(v)]
        if isinstance(v, (list, tuple)):
            return [str(a) for a in v]
        return v

    def image_source(self) -> str | bytes:
        """What :func:`awares_tool.images.open_image` should open for this record."""
        if self.image_bytes is not None:
            return self.image_bytes
        if self.image is None:
            raise ValueError(f"record {self.id!r} has neither an image path nor image bytes")
        return self.image


def detect_format(path: Path) -> str:
    """``jsonl``, ``json``, ``parquet`` or ``hf`` (a ``save_to_disk`` folder), from the path alone."""
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() \
                or (path / "state.json").is_file():
            return "hf"
        if any(path.glob("*.parquet")) or any(path.glob("**/*.parquet")):
            return "parquet"
        if (path / "records.jsonl").is_file():
            return "jsonl"
        if (path / "data.jsonl").is_file():
            return "jsonl"
        raise ValueError(
            f"cannot tell the format of folder {path}: expected a datasets save_to_disk folder, parquet "
            "shards, records.jsonl or data.jsonl"
        )
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".parquet":
        return "parquet"
    raise ValueError(f"unsupported data file {path}: use .jsonl, .json, .parquet or a datasets folder")


def _jsonl_file(path: Path) -> Path:
    if path.is_dir():
        for name in ("records.jsonl", "data.jsonl"):
            if (path / name).is_file():
                return path / name
    return path


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({e}); fix or remove that line") from e


def _read_json(path: Path) -> Iterator[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("data", data.get("annotations"))
    if not isinstance(data, list):
        raise ValueError(f"{path} holds neither a list of records nor an object with a 'data' list")
    yield from data


def _read_parquet(path: Path, split: str | None) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq  # lazy: only parquet inputs need pyarrow

    files = [path] if path.is_file() else sorted(path.glob("**/*.parquet"))
    if split and len(files) > 1:
        chosen = [f for f in files if split in f.name or split in f.parent.name]
        files = chosen or files
    for f in files:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=256):
            yield from batch.to_pylist()


def _read_hf(path: Path, split: str | None) -> Iterator[dict[str, Any]]:
    import datasets  # lazy: only HF folders need it

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        name = split or ("train" if "train" in ds else next(iter(ds)))
        if name not in ds:
            raise ValueError(f"{path} has splits {list(ds)}, not {name!r}; pass split=")
        ds = ds[name]
    # Image columns stay encoded ({"bytes", "path"}): decoding every image up front wastes time.
    for col, feat in ds.features.items():
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
    yield from ds


def read_rows(path: str | Path, *, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Raw rows of a local data file or folder, lazily, as dicts.

    Args:
        path: A ``.jsonl``/``.json``/``.parquet`` file, a parquet folder, a ``save_to_disk``
            folder, or a folder holding ``records.jsonl`` (the synthetic generator's output).
        split: Which split of a ``DatasetDict`` or of split-named parquet shards to read.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data path {p} does not exist")
    fmt = detect_format(p)
    if fmt == "jsonl":
        return _read_jsonl(_jsonl_file(p))
    if fmt == "json":
        return _read_json(p)
    if fmt == "parquet":
        return _read_parquet(p, split)
    return _read_hf(p, split)


def count_rows(path: str | Path, *, split: str | None = None) -> int | None:
    """Number of rows without reading them all (for the progress bar's ETA); None when unknown."""
    p = Path(path)
    try:
        fmt = detect_format(p)
        if fmt == "jsonl":
            with _jsonl_file(p).open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        if fmt == "parquet":
            import pyarrow.parquet as pq

            files = [p] if p.is_file() else sorted(p.glob("**/*.parquet"))
            return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, ValueError, ImportError):
        return None
    return None
