"""Judges: decide from the low-res and full-res answers whether a question needs a crop.

The paper's rule is pairwise: a judge compares both answers against the reference and says which
is better, or that they tie. A tie or a better low-res answer means the low-res view was enough
(label ``direct``); a better full-res answer means the question needs a crop (``crop``); when
neither answer is right the sample teaches nothing about resolution (``drop``).

Three kinds of judge implement the small :class:`Judge` protocol:

* :class:`MetricJudge`: a metric from :mod:`awares_train.metrics` (exact, relaxed, ANLS, ...), or
  ``auto`` to pick the metric each data set is scored with. No model, fully reproducible; the
  honest choice for numbers and codes (see ``shared/notes/data-and-rewards.md``).
* :class:`EmbeddingJudge`: cosine similarity of sentence embeddings (all-MiniLM-L6-v2), for
  free-form answers; it barely separates near-miss numbers, so it is not the default.
* :class:`LLMJudge`: any chat backend asked the pairwise question (a text-only local model works).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from awares_tool.errors import AwaresError

__all__ = [
    "Verdict",
    "Label",
    "Judgement",
    "Judge",
    "JudgeError",
    "MetricJudge",
    "EmbeddingJudge",
    "LLMJudge",
    "label_for",
    "verdict_from_scores",
    "get_judge",
]

logger = logging.getLogger(__name__)

Verdict = Literal["tie", "lowres", "fullres", "neither"]
Label = Literal["direct", "crop", "drop"]


class JudgeError(AwaresError):
    """A judge could not reach a verdict (e.g. an LLM reply that names no option)."""


class Judgement(BaseModel):
    """A judge's verdict on one pair of answers, with the evidence for it."""

    verdict: Verdict
    lowres_score: float | None = None
    fullres_score: float | None = None
    raw: str | None = None


@runtime_checkable
class Judge(Protocol):
    """Compares a low-res and a full-res answer against the references."""

    name: str

    def judge(self, question: str, answers: Sequence[str], lowres_answer: str, fullres_answer: str, *,
              source: str | None = None, record_id: str = "") -> Judgement:
        """The verdict for one record."""
        ...


def label_for(verdict: Verdict) -> Label:
    """The paper's rule: tie or low-res better -> ``direct``; full-res better -> ``crop``; else ``drop``.

    >>> [label_for(v) for v in ("tie", "lowres", "fullres", "neither")]
    ['direct', 'direct', 'crop', 'drop']
    """
    return {"tie": "direct", "lowres": "direct", "fullres": "crop", "neither": "drop"}[verdict]  # type: ignore[return-value]


def verdict_from_scores(lowres: float, fullres: float, *, threshold: float, tie_margin: float = 0.0) -> Verdict:
    """Pairwise verdict from two correctness scores.

    Neither reaching ``threshold`` is ``neither``; scores within ``tie_margin`` tie; otherwise the
    higher score wins (so a near-miss low-res number loses to the exact full-res one under ANLS).

    >>> verdict_from_scores(1.0, 1.0, threshold=0.5)
    'tie'
    >>> verdict_from_scores(0.8, 1.0, threshold=0.5)
    'fullres'
    >>> verdict_from_scores(0.0, 0.2, threshold=0.5)
    'neither'
    """
    if lowres < threshold and fullres < threshold:
        return "neither"
    if abs(lowres - fullres) <= tie_margin:
        return "tie"
    return "lowres" if lowres > fullres else "fullres"


class MetricJudge:
    """Judge with an answer metric; ``metric="auto"`` uses each record source's own metric.

    Args:
        metric: A name from :data:`awares_train.metrics.METRICS`, or ``auto``.
        threshold: Score an answer needs to count as right (ANLS already zeroes anything under 0.5).
        tie_margin: Score difference still treated as a tie.
    """

    def __init__(self, metric: str = "auto", *, threshold: float = 0.5, tie_margin: float = 0.0) -> None:
        from awares_train.metrics import METRICS

        if metric != "auto" and metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: auto, {', '.join(METRICS)}")
        self.metric, self.threshold, self.tie_margin = metric, threshold, tie_margin
        self.name = f"metric:{metric}"

    def judge(self, question: str, answers: Sequence[str], lowres_answer: str, fullres_answer: str, *,
              source: str | None = None, record_id: str = "") -> Judgement:
        from awares_train.metrics import metric_for_source, score

        metric = metric_for_source(source) if self.metric == "auto" else self.metric
        lo, hi = score(metric, lowres_answer, answers), score(metric, fullres_answer, answers)
        v = verdict_from_scores(lo, hi, threshold=self.threshold, tie_margin=self.tie_margin)
        return Judgement(verdict=v, lowres_score=lo, fullres_score=hi, raw=metric)

    def describe(self) -> dict[str, Any]:
        return {"kind": "metric", "metric": self.metric, "threshold": self.threshold, "tie_margin": self.tie_margin}


class EmbeddingJudge:
    """Judge by cosine similarity of sentence embeddings (the paper's answer reward).

    Args:
        model: Path of a sentence-transformers model folder; default the packaged all-MiniLM-L6-v2
            (see :mod:`awares_train.embedding`, shared with the GRPO answer reward).
        threshold: Similarity an answer needs to count as right.
        tie_margin: Similarity difference still treated as a tie (embeddings never give exact ties).
    """

    def __init__(self, model: str | None = None, *, threshold: float = 0.8, tie_margin: float = 0.05) -> None:
        self.model, self.threshold, self.tie_margin = model, threshold, tie_margin
        self.name = "embedding"

    def similarity(self, prediction: str, answers: Sequence[str]) -> float:
        """Highest cosine similarity between ``prediction`` and any reference."""
        from awares_train.embedding import get_embedder

        try:
            return get_embedder(self.model).similarity(prediction, list(answers))
        except ImportError as e:  # MissingExtraError: the weights package is not installed
            raise JudgeError(str(e)) from e

    def judge(self, question: str, answers: Sequence[str], lowres_answer: str, fullres_answer: str, *,
              source: str | None = None, record_id: str = "") -> Judgement:
        lo, hi = self.similarity(lowres_answer, answers), self.similarity(fullres_answer, answers)
        v = verdict_from_scores(lo, hi, threshold=self.threshold, tie_margin=self.tie_margin)
        return Judgement(verdict=v, lowres_score=lo, fullres_score=hi)

    def describe(self) -> dict[str, Any]:
        return {"kind": "embedding", "model": self.model or "all-MiniLM-L6-v2", "threshold": self.threshold,
                "tie_margin": self.tie_margin}


LLM_JUDGE_SYSTEM = (
    "You grade answers to questions about images. You see the question, the reference answer(s) and "
    "two candidate answers. Decide which candidate agrees better with the reference."
)
LLM_JUDGE_TEMPLATE = (
    "Question: {question}\nReference answer(s): {references}\nAnswer 1: {first}\nAnswer 2: {second}\n\n"
    "Reply with one word: 1 if answer 1 is better, 2 if answer 2 is better, TIE if both are equally "
    "correct, NEITHER if both are wrong."
)
_LLM_WORDS = {"1": "first", "2": "second", "FIRST": "first", "SECOND": "second", "TIE": "tie",
              "BOTH": "tie", "EQUAL": "tie", "NEITHER": "neither", "NONE": "neither"}
_LLM_TOKEN = re.compile(r"\b(" + "|".join(_LLM_WORDS) + r")\b")


def parse_llm_verdict(text: str) -> Literal["first", "second", "tie", "neither"]:
    """The option an LLM judge's reply names first.

    >>> parse_llm_verdict("Answer 2 is better.")
    'second'
    >>> parse_llm_verdict("tie")
    'tie'
    """
    cleaned = re.sub(r"\banswer\s+", "", text.upper(), flags=re.IGNORECASE)
    m = _LLM_TOKEN.search(cleaned)
    if m is None:
        raise JudgeError(f"LLM judge reply {text[:120]!r} names none of 1, 2, TIE, NEITHER")
    return _LLM_WORDS[m.group(1)]  # type: ignore[return-value]


class LLMJudge:
    """The paper's pairwise LLM judge, through any chat backend.

    The two answers are shown in a per-record pseudo-random order (from ``seed`` and the record
    id) so that a judge's position bias does not turn into a resolution bias.

    Args:
        backend: A backend object or spec (see :func:`awares_tool.backends.resolve_backend`).
        seed: Seed of the answer order.
        shuffle: Randomise the answer order; False always shows the low-res answer first.
        max_new_tokens: Reply budget.
    """

    def __init__(self, backend: Any, *, seed: int = 0, shuffle: bool = True, max_new_tokens: int = 16) -> None:
        from awares_tool.backends import resolve_backend

        self.backend = resolve_backend(backend)
        self.seed, self.shuffle, self.max_new_tokens = seed, shuffle, max_new_tokens
        self.name = f"llm:{getattr(self.backend, 'name', type(self.backend).__name__)}"

    def judge(self, question: str, answers: Sequence[str], lowres_answer: str, fullres_answer: str, *,
              source: str | None = None, record_id: str = "") -> Judgement:
        from awares_tool.backends.base import GenerationSettings, Message

        swap = self.shuffle and random.Random(f"judge:{self.seed}:{record_id}").random() < 0.5
        first, second = (fullres_answer, lowres_answer) if swap else (lowres_answer, fullres_answer)
        prompt = LLM_JUDGE_TEMPLATE.format(question=question, references=" | ".join(answers),
                                           first=first, second=second)
        messages = [Message.text("system", LLM_JUDGE_SYSTEM), Message.text("user", prompt)]
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens, temperature=0.0, seed=self.seed)
        reply = self.backend.generate(messages, settings).text
        choice = parse_llm_verdict(reply)
        if choice in ("first", "second"):
            low_won = (choice == "first") != swap
            verdict: Verdict = "lowres" if low_won else "fullres"
        else:
            verdict = choice  # type: ignore[assignment]
        return Judgement(verdict=verdict, raw=reply)

    def describe(self) -> dict[str, Any]:
        return {"kind": "llm", "backend": self.name, "seed": self.seed, "shuffle": self.shuffle,
                "system": LLM_JUDGE_SYSTEM, "template": LLM_JUDGE_TEMPLATE}


def get_judge(spec: Any = "auto", *, seed: int = 0, threshold: float | None = None,
              tie_margin: float | None = None) -> Judge:
    """A judge from a spec: a :class:`Judge` object, a metric name, ``auto``, ``embedding``,
    ``embedding:MODEL_DIR`` or ``llm:BACKEND_SPEC`` (e.g. ``llm:llamacpp:/models/judge.gguf``).
    """
    if not isinstance(spec, str):
        if not callable(getattr(spec, "judge", None)):
            raise TypeError(f"a judge must have a judge() method, got {type(spec).__name__}")
        return spec
    kw = {k: v for k, v in (("threshold", threshold), ("tie_margin", tie_margin)) if v is not None}
    kind, _, rest = spec.partition(":")
    if kind == "embedding":
        return EmbeddingJudge(rest or None, **kw)
    if kind == "llm":
        if not rest:
            raise ValueError("an LLM judge needs a backend: 'llm:BACKEND_SPEC', e.g. 'llm:llamacpp:/m/judge.gguf'")
        return LLMJudge(rest, seed=seed)
    return MetricJudge(spec, **kw)
