"""Append-only, resumable output: ``data.jsonl``, ``rejects.jsonl`` and a ``done_ids.txt`` index.

Why this shape: a run over tens of thousands of records calls a model twice per record and can
be killed at any moment (``kill -9``, a pre-empted job). Each record's images are written first
(atomically), then its JSON line with a single ``write`` on an ``O_APPEND`` descriptor, then its
id in the index. On start, :meth:`RunStore.open` repairs whatever a kill left: a torn last line is
cut off, and the set of finished ids is the union of the index and the ids actually present in
both JSONL files, so a record written but not yet indexed is never redone (no duplicates) and a
record not fully written is redone (no loss). Records that failed with an error are retried on
the next run; their old reject lines are dropped first so they are not duplicated either.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from awares_train.data.format import read_jsonl_ids

__all__ = ["RunStore"]

logger = logging.getLogger(__name__)


def _truncate_torn_line(path: Path) -> None:
    """Cut a file back to its last newline (a kill mid-write can leave a partial line)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            buf = fh.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                fh.truncate(start + i + 1)
                logger.warning("%s: removed a torn last line left by an interrupted run", path)
                return
            pos = start
        fh.truncate(0)


class RunStore:
    """The output files of one build, opened for appending.

    Args:
        out_dir: The trajectory folder.
        retry_errors: Redo records whose previous attempt ended in an error (default True).
    """

    def __init__(self, out_dir: str | Path, *, retry_errors: bool = True) -> None:
        self.dir = Path(out_dir)
        self.data_path = self.dir / "data.jsonl"
        self.rejects_path = self.dir / "rejects.jsonl"
        self.index_path = self.dir / "done_ids.txt"
        self.retry_errors = retry_errors
        self._fds: dict[str, int] = {}

    def open(self) -> set[str]:
        """Repair the files, open them for appending and return the ids already finished."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "images").mkdir(exist_ok=True)
        for p in (self.data_path, self.rejects_path, self.index_path):
            _truncate_torn_line(p)
        done = set(read_jsonl_ids(self.data_path))
        if self.rejects_path.is_file():
            kept: list[str] = []
            dropped = 0
            with self.rejects_path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if self.retry_errors and rec.get("reason") == "error":
                        dropped += 1
                        continue
                    kept.append(line if line.endswith("\n") else line + "\n")
                    done.add(str(rec["id"]))
            if dropped:
                tmp = self.rejects_path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(kept), encoding="utf-8")
                os.replace(tmp, self.rejects_path)
                logger.info("retrying %d records that failed with an error last time", dropped)
        if self.index_path.is_file():
            indexed = {ln.strip() for ln in self.index_path.read_text(encoding="utf-8").splitlines() if ln.strip()}
            # An indexed id whose line is missing was lost (e.g. files edited by hand): redo it.
            stale = indexed - done
            if stale:
                logger.warning("%d ids in %s have no output line; they will be redone", len(stale), self.index_path)
        tmp = self.index_path.with_suffix(".txt.tmp")
        tmp.write_text("".join(f"{i}\n" for i in sorted(done)), encoding="utf-8")
        os.replace(tmp, self.index_path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        for key, p in (("data", self.data_path), ("rejects", self.rejects_path), ("index", self.index_path)):
            self._fds[key] = os.open(p, flags, 0o644)
        return done

    def _append(self, key: str, text: str) -> None:
        data = text.encode("utf-8")
        written = os.write(self._fds[key], data)
        if written != len(data):  # regular files write fully; anything else is a disk problem
            raise OSError(f"short write to {key} ({written} of {len(data)} bytes); is the disk full?")

    def add(self, record: dict[str, Any]) -> None:
        """Append a finished trajectory and index its id."""
        self._append("data", json.dumps(record, ensure_ascii=False) + "\n")
        self._append("index", f"{record['id']}\n")

    def reject(self, record_id: str, reason: str, **info: Any) -> None:
        """Append a rejected record (``reason``: ``drop``, ``no_evidence``, ``error``...)."""
        self._append("rejects", json.dumps({"id": record_id, "reason": reason, **info}, ensure_ascii=False,
                                           default=str) + "\n")
        if reason != "error" or not self.retry_errors:
            self._append("index", f"{record_id}\n")

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
