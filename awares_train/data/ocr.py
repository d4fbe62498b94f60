"""OCR grounding: find where an answer's text is written, with Tesseract word boxes.

For text-heavy questions (documents, charts, codes) the evidence of the correct answer is where
that answer is written, so a real OCR engine is an oracle grounder that needs no model. Tesseract
returns each word with its box; :func:`find_text_box` matches the normalised answer against
sequences of consecutive words and returns the union of their boxes.

Tesseract's layout analysis misses isolated small text on busy colour images (most of our
synthetic scenes), so :func:`locate_text` runs a short cascade of views, stopping at the first that
finds the answer: the greyscale image, then binarised views upscaled 2x (a dark-text threshold
drops coloured shapes that otherwise swallow nearby text).

Needs the Debian package ``tesseract-ocr`` and ``pip install pytesseract``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

from PIL import Image, ImageOps
from pydantic import BaseModel

from awares_tool.errors import MissingExtraError

__all__ = ["OcrWord", "TextMatch", "ocr_words", "find_text_box", "locate_text", "normalize_token",
           "tesseract_available", "DEFAULT_PASSES"]

logger = logging.getLogger(__name__)

DEFAULT_PASSES: tuple[tuple[int | None, int], ...] = ((None, 1), (128, 2), (80, 2))
"""OCR views tried in order: (binarisation threshold or None for greyscale, upscale factor)."""

_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


class OcrWord(BaseModel):
    """One word Tesseract read, with its pixel box in the original image."""

    text: str
    box: tuple[int, int, int, int]
    conf: float


class TextMatch(BaseModel):
    """Where an answer was found: the union box, the words, how well they match and how many places matched."""

    box: tuple[int, int, int, int]
    words: list[str]
    similarity: float
    conf: float
    candidates: int


def normalize_token(text: str) -> str:
    """Case-, accent- and punctuation-free form used to compare OCR words with answers.

    >>> normalize_token("Total: $37.50")
    'total3750'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_ALNUM.sub("", text)


def tesseract_available() -> bool:
    """Whether both pytesseract and the tesseract binary are installed."""
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


def ocr_words(image: Image.Image, *, threshold: int | None = None, scale: int = 1, psm: int = 11,
              lang: str = "eng") -> list[OcrWord]:
    """Words Tesseract reads on one view of ``image``, boxes mapped back to original pixels.

    Args:
        image: The original image.
        threshold: Binarise the greyscale view at this level (None keeps greyscale).
        scale: Upscale factor of the view (small text reads better larger).
        psm: Tesseract page segmentation mode; 11 (sparse text) suits scattered labels.
        lang: Tesseract language.

    Raises:
        MissingExtraError: pytesseract or the tesseract binary is missing.
    """
    try:
        import pytesseract
    except ImportError as e:
        raise MissingExtraError("OCR grounding needs pytesseract and Tesseract: pip install pytesseract; "
                                "apt-get install -y tesseract-ocr") from e
    view = ImageOps.grayscale(image)
    if threshold is not None:
        view = view.point(lambda v: 255 if v > threshold else 0)
    if scale != 1:
        view = view.resize((view.width * scale, view.height * scale), Image.Resampling.BICUBIC)
    try:
        data = pytesseract.image_to_data(view, lang=lang, config=f"--psm {psm}",
                                         output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as e:
        raise MissingExtraError("the tesseract binary is not installed: apt-get install -y tesseract-ocr") from e
    words = []
    for text, left, top, w, h, conf in zip(data["text"], data["left"], data["top"], data["width"],
                                           data["height"], data["conf"]):
        if not str(text).strip():
            continue
        box = (left // scale, top // scale, -(-(left + w) // scale), -(-(top + h) // scale))
        words.append(OcrWord(text=str(text).strip(), box=box, conf=float(conf)))
    return words


def _similarity(a: str, b: str) -> float:
    from awares_train.metrics import _levenshtein

    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - _levenshtein(a, b) / longest


def _union(boxes: Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def find_text_box(words: Sequence[OcrWord], answer: str, *, min_similarity: float = 1.0,
                  max_words: int = 12) -> TextMatch | None:
    """The box of the consecutive words whose normalised concatenation best matches ``answer``.

    Word boundaries are ignored (OCR splits "37.50" or joins "Total:37.50" unpredictably), so
    the match is on the concatenated normalised text. Exact matches win; otherwise the most
    similar window (normalised Levenshtein) at or above ``min_similarity``. Among equal matches
    the one Tesseract is most confident about wins; ``candidates`` counts them.
    """
    target = normalize_token(answer)
    if not target:
        return None
    norm = [normalize_token(w.text) for w in words]
    found: list[tuple[float, float, int, int]] = []  # (similarity, mean confidence, start, end)
    for i in range(len(words)):
        if not norm[i]:
            continue
        text = ""
        for j in range(i, min(len(words), i + max_words)):
            if not norm[j]:
                continue
            text += norm[j]
            sim = _similarity(text, target)
            if sim >= min_similarity:
                found.append((sim, sum(w.conf for w in words[i:j + 1]) / (j + 1 - i), i, j))
            if len(text) >= len(target) * 2:
                break
    if not found:
        return None
    top = max(f[0] for f in found)
    tied = [f for f in found if f[0] == top]
    sim, conf, i, j = max(tied, key=lambda f: (f[1], -f[2]))
    count = len(tied)
    chosen = words[i:j + 1]
    return TextMatch(box=_union([w.box for w in chosen]), words=[w.text for w in chosen], similarity=sim,
                     conf=conf, candidates=count)


def locate_text(image: Image.Image, answer: str, *, passes: Sequence[tuple[int | None, int]] = DEFAULT_PASSES,
                min_similarity: float = 1.0, lang: str = "eng") -> TextMatch | None:
    """Run the OCR views in order and return the first match of ``answer`` (None if none matches)."""
    for threshold, scale in passes:
        match = find_text_box(ocr_words(image, threshold=threshold, scale=scale, lang=lang), answer,
                              min_similarity=min_similarity)
        if match is not None:
            logger.debug("OCR found %r at %s (view threshold=%s scale=%s)", answer, match.box, threshold, scale)
            return match
    return None
