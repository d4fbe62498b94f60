"""Answer metrics shared by data construction (judges) and evaluation.

Every metric is a plain typed function ``f(prediction, answers) -> float in [0, 1]`` that takes the
best match over all reference answers, because every benchmark we use ships several acceptable
answers per question. :func:`score` looks a metric up by name, which is what configs and the
evaluation harness store.

The rules follow the official scorers of each benchmark: ChartQA's relaxed accuracy (5% relative
tolerance on numbers), DocVQA/InfoVQA's ANLS (threshold 0.5), OCRBench's normalised containment,
POPE's yes/no extraction and the VQA accuracy of TextVQA (``min(#humans that agree / 3, 1)``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

__all__ = [
    "normalize_text",
    "exact_match",
    "relaxed_accuracy",
    "anls",
    "ocrbench_match",
    "multiple_choice",
    "pope_yes_no",
    "vqa_accuracy",
    "METRICS",
    "SOURCE_METRICS",
    "metric_for_source",
    "score",
]

_WS = re.compile(r"\s+")
_ARTICLES = {"a", "an", "the"}
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}


def _answers(answers: str | Sequence[str]) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    return [str(a) for a in answers]


def normalize_text(text: str) -> str:
    """Lower-case, trim, collapse whitespace and drop trailing sentence punctuation.

    >>> normalize_text("  The Total:  37.50. ")
    'the total: 37.50'
    """
    text = _WS.sub(" ", str(text).strip().lower())
    return text.rstrip(" .!?;,")


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference.

    >>> exact_match("Red.", ["red"])
    1.0
    >>> exact_match("dark red", ["red"])
    0.0
    """
    pred = normalize_text(prediction)
    return float(any(pred == normalize_text(a) for a in _answers(answers)))


def _to_float(text: str) -> float | None:
    """ChartQA's number reading: commas and ``$`` dropped, ``x%`` read as ``x / 100``."""
    t = text.strip().replace(",", "").replace("$", "")
    try:
        if t.endswith("%"):
            return float(t.rstrip("%")) / 100.0
        return float(t)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, answers: str | Sequence[str], tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: numbers within ``tolerance`` relative error, text exactly.

    A zero reference needs an exact zero (relative error is undefined there).

    >>> relaxed_accuracy("102", ["100"])
    1.0
    >>> relaxed_accuracy("106", ["100"])
    0.0
    >>> relaxed_accuracy("Yes", ["yes"])
    1.0
    """
    pred = normalize_text(prediction)
    pv = _to_float(pred)
    for ans in _answers(answers):
        ref = normalize_text(ans)
        rv = _to_float(ref)
        if pv is not None and rv is not None:
            if rv == 0.0:
                ok = pv == 0.0
            else:
                ok = abs(pv - rv) / abs(rv) <= tolerance
        else:
            ok = pred == ref
        if ok:
            return 1.0
    return 0.0


def _levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: str | Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity of one prediction (DocVQA, InfoVQA).

    ``1 - edit_distance / max_len`` against the closest reference, set to 0 when the normalised
    distance reaches ``threshold`` (the official tau = 0.5).

    >>> anls("48213", ["48213"])
    1.0
    >>> anls("48218", ["48213"])
    0.8
    >>> anls("hello", ["world"])
    0.0
    """
    pred = " ".join(str(prediction).strip().lower().split())
    best = 0.0
    for ans in _answers(answers):
        ref = " ".join(ans.strip().lower().split())
        longest = max(len(pred), len(ref))
        if longest == 0:
            return 1.0
        nl = _levenshtein(pred, ref) / longest
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


def ocrbench_match(prediction: str, answers: str | Sequence[str]) -> float:
    """OCRBench's rule: a normalised reference contained in the normalised prediction.

    Whitespace is ignored entirely for references that look like formulas (they carry LaTeX
    spacing that models rarely reproduce), as the official HME100k scoring does.

    >>> ocrbench_match("The sign says STOP here", ["stop"])
    1.0
    >>> ocrbench_match("x ^ { 2 }", ["x^{2}"])
    1.0
    >>> ocrbench_match("go", ["stop"])
    0.0
    """
    pred = str(prediction).lower().strip().replace("\n", " ")
    for ans in _answers(answers):
        ref = ans.lower().strip().replace("\n", " ")
        if not ref:
            continue
        if any(c in ref for c in "^{}\\"):
            if ref.replace(" ", "") in pred.replace(" ", ""):
                return 1.0
        elif ref in pred:
            return 1.0
    return 0.0


_MC_PATTERNS = (
    re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.:)]|$)"),  # "B", "(B)", "B.", "B) text"
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?\b", re.IGNORECASE),
    re.compile(r"\(([A-Z])\)"),
)


def _mc_letter(text: str) -> str | None:
    for pat in _MC_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1).upper()
    return None


def multiple_choice(prediction: str, answers: str | Sequence[str]) -> float:
    """Multiple-choice match: the option letter the prediction picks equals the reference's.

    References may be letters (``"B"``) or option texts; a prediction with no recognisable
    letter falls back to exact match against the references.

    >>> multiple_choice("(B) the red car", ["B"])
    1.0
    >>> multiple_choice("The answer is C.", ["B"])
    0.0
    >>> multiple_choice("red car", ["red car"])
    1.0
    """
    letter = _mc_letter(str(prediction))
    if letter is not None:
        for ans in _answers(answers):
            ref = _mc_letter(ans) if len(ans.strip()) > 1 else ans.strip().upper()
            if ref == letter:
                return 1.0
    return exact_match(prediction, answers)


def _yes_no(text: str) -> str:
    """POPE's reading: the first sentence says "no" if it contains "no"/"not", else "yes"."""
    first = str(text).split(".")[0].replace(",", " ")
    words = {w.strip(string.punctuation).lower() for w in first.split()}
    return "no" if words & {"no", "not"} else "yes"


def pope_yes_no(prediction: str, answers: str | Sequence[str]) -> float:
    """POPE accuracy of one yes/no answer.

    >>> pope_yes_no("Yes, there is a dog.", ["yes"])
    1.0
    >>> pope_yes_no("There is not a dog in the image.", ["no"])
    1.0
    >>> pope_yes_no("No.", ["yes"])
    0.0
    """
    pred = _yes_no(prediction)
    return float(any(pred == normalize_text(a) for a in _answers(answers)))


def _vqa_normalize(text: str) -> str:
    text = normalize_text(text)
    text = "".join(" " if c in string.punctuation and c not in ".'" else c for c in text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words).strip(". ")


def vqa_accuracy(prediction: str, answers: str | Sequence[str]) -> float:
    """VQA / TextVQA accuracy: ``min(#references equal to the prediction / 3, 1)``.

    References are the raw human answers (duplicates count).

    >>> vqa_accuracy("two", ["2", "2", "2", "3"])
    1.0
    >>> round(vqa_accuracy("3", ["2", "2", "2", "3"]), 3)
    0.333
    """
    pred = _vqa_normalize(prediction)
    hits = sum(pred == _vqa_normalize(a) for a in _answers(answers))
    return min(hits / 3.0, 1.0)


METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact": exact_match,
    "relaxed": relaxed_accuracy,
    "anls": anls,
    "ocrbench": ocrbench_match,
    "mc": multiple_choice,
    "pope": pope_yes_no,
    "vqa": vqa_accuracy,
}
"""Metric name -> function; the names configs, data files and the evaluation harness use."""

SOURCE_METRICS: dict[str, str] = {
    "chartqa": "relaxed",
    "docvqa": "anls",
    "infovqa": "anls",
    "textvqa": "exact",
    "ocrbench": "ocrbench",
    "pope": "pope",
    "realworldqa": "mc",
    "vstar": "mc",
    "synthetic": "exact",
}
"""The metric each benchmark is scored with (TextVQA's answers are de-duplicated by the loaders, so
its per-record metric is exact match against any human answer)."""


def metric_for_source(source: str | None, default: str = "exact") -> str:
    """The metric of a data source, e.g. ``"chartqa" -> "relaxed"``.

    >>> metric_for_source("DocVQA")
    'anls'
    >>> metric_for_source("mystery")
    'exact'
    """
    return SOURCE_METRICS.get((source or "").lower(), default)


def score(metric: str, prediction: str, answers: str | Sequence[str]) -> float:
    """Score ``prediction`` against ``answers`` with the metric called ``metric``.

    >>> score("relaxed", "0.5", ["50%"])
    1.0

    Raises:
        ValueError: unknown metric name; the message lists the known ones.
    """
    fn = METRICS.get(metric)
    if fn is None:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
    return float(fn(prediction, _answers(answers)))
