"""The text form of a request, ``GET_CROPS: ['0', '5']``, found with linear scans only.

Tolerated, because small and fine-tuned models drift in exactly these ways: any letter case of
the keyword, an optional ``:`` (or ``=``), any whitespace, single/double/typographic/back quotes
or none (``GET_CROPS: [3, 5]``), a trailing comma in the list, text before the request and a
period or more text after it, the call-like ``GET_CROPS(['3'])`` / ``get_crops(regions=['3'])``,
and a bracket-less ``GET_CROPS: 3, 5`` when every token on that line is a region name.

The official parser instead requires the bracket right after the optional colon and maps the
list character by character, so quoted or multi-crop requests silently become the full image;
we parse the list as a list.

Where a request ends and prose begins: the keyword followed by a ``[`` is a request (an unreadable list is a
malformed request, never an answer), and so is a line of nothing but region names after it; the keyword with nothing
after it (the reply cut off) is malformed; anywhere else it is a mention in prose ("No need to call get_crops. The
answer is 7."), and a reply whose only mentions are prose is an answer.

No regular expression here has nested or adjacent unbounded quantifiers that can overlap, so a
1 MB adversarial reply costs a few linear passes, not catastrophic backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from awares_tool.errors import MalformedRequestError

__all__ = ["TextRequest", "find_text_requests", "split_name_list", "KEYWORD"]

KEYWORD = "GET_CROPS"

# The keyword as a whole identifier (not part of ``my_get_crops_fn``); a literal, so linear.
_KEYWORD_RE = re.compile(r"(?<![A-Za-z0-9_])get_crops(?![A-Za-z0-9_])", re.IGNORECASE)
# One list token: a quoted name (each quote kind closes itself), a bare name, or separators.
# Alternatives start with distinct characters and each quantifier eats one class, so the scan is linear.
_TOKEN_RE = re.compile(
    r"'([^']*)'|\"([^\"]*)\"|`([^`]*)`|‘([^’]*)’|“([^”]*)”|([^\s,'\"`‘’“”\[\]()]+)|([\s,]+)"
)
_QUOTES = "'\"`‘’“”"
_MAX_LIST_CHARS = 100_000  # a request list longer than this is garbage, not a request
_MAX_BARE_CHARS = 10_000  # a bracket-less list is one short line
_MAX_KEYWORDS = 64  # occurrences examined per reply: bounds the work on adversarial text


@dataclass(frozen=True)
class TextRequest:
    """One ``GET_CROPS`` request found in text: the names as written and where it lies."""

    names: list[str]
    start: int
    end: int


def split_name_list(body: str) -> list[str]:
    """Split the inside of ``[...]`` into names, quoted or not.

    Raises:
        MalformedRequestError: An unbalanced quote or a stray character.
    """
    names: list[str] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN_RE.match(body, pos)
        if m is None:
            raise MalformedRequestError(
                f"cannot read the crop list [{body[:80]}]: unexpected {body[pos]!r} at position {pos}; "
                "write it like GET_CROPS: ['0', '5']"
            )
        if m.lastindex is not None and m.lastindex <= 6:
            names.append(m.group(m.lastindex).strip())
        pos = m.end()
    return names


_WS_RE = re.compile(r"\s*")


def _skip_ws(text: str, i: int) -> int:
    return _WS_RE.match(text, i).end()


def _parse_one(text: str, kw_end: int, is_name: Callable[[str], bool]) -> tuple[list[str], int] | None:
    """Parse what follows one keyword: the names and the end of the request, or None for a mention in prose."""
    i = _skip_ws(text, kw_end)
    call_like = i < len(text) and text[i] == "("
    if call_like:
        i = _skip_ws(text, i + 1)
        if text[i : i + 7].lower() == "regions":
            i = _skip_ws(text, i + 7)
            if i < len(text) and text[i] in ":=":
                i = _skip_ws(text, i + 1)
    elif i < len(text) and text[i] in ":=":
        i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "[":
        close = text.find("]", i + 1, i + 1 + _MAX_LIST_CHARS)
        if close < 0:
            raise MalformedRequestError(
                f"GET_CROPS list is not closed: {text[i : i + 80]!r}...; write it like GET_CROPS: ['0', '5']"
            )
        names = split_name_list(text[i + 1 : close])
        end = close + 1
        if call_like:
            j = _skip_ws(text, end)
            end = j + 1 if j < len(text) and text[j] == ")" else end
        if not names:
            raise MalformedRequestError(
                "GET_CROPS request with an empty list; name at least one region, e.g. GET_CROPS: ['0']"
            )
        return names, end
    # Bracket-less: accepted only if the rest of the line is nothing but region names, so that prose
    # such as "GET_CROPS: 3 because ..." is refused rather than half-read.
    eol = text.find("\n", i, i + _MAX_BARE_CHARS + 1)
    if eol < 0:
        if len(text) - i > _MAX_BARE_CHARS:
            raise MalformedRequestError(
                f"GET_CROPS followed by {len(text) - i:,} characters on one line is no readable request; "
                "write it like GET_CROPS: ['0', '5']")
        eol = len(text)
    line = text[i:eol].rstrip().rstrip(".").rstrip()
    tokens = [t.strip(_QUOTES) for t in re.split(r"[\s,]+", line) if t.strip(_QUOTES)]
    if tokens and all(is_name(t) for t in tokens):
        return tokens, i + len(text[i:eol].rstrip())
    if not text[i:].strip(" \t\n.)"):  # the reply ends at the keyword: a request cut off before its list
        raise MalformedRequestError(
            f"found GET_CROPS but no crop list after it: {text[kw_end - 9 : kw_end + 60]!r}; "
            "write the request alone, like GET_CROPS: ['0', '5']"
        )
    return None  # the keyword in prose ("no need to GET_CROPS here; the answer is 5"): not a request


def find_text_requests(text: str, is_name: Callable[[str], bool]) -> list[TextRequest]:
    """Every well-formed ``GET_CROPS`` request in ``text``, in order.

    A keyword whose list cannot be read is skipped when another request in the reply parses (a
    model may mention the keyword in prose before requesting); when none parses it is an error,
    because a request must never be mistaken for the answer.

    Args:
        text: The model's reply.
        is_name: Whether a bare token is a region name (for the bracket-less form only).

    Returns:
        The requests found; empty when the keyword does not occur at all.

    Raises:
        MalformedRequestError: The keyword occurs but no occurrence has a readable list.
    """
    found: list[TextRequest] = []
    first_error: MalformedRequestError | None = None
    pos = 0
    for _ in range(_MAX_KEYWORDS):
        m = _KEYWORD_RE.search(text, pos)
        if m is None:
            break
        try:
            parsed = _parse_one(text, m.end(), is_name)
        except MalformedRequestError as e:
            first_error = first_error or e
            pos = m.end()
            continue
        if parsed is None:
            pos = m.end()
            continue
        names, end = parsed
        found.append(TextRequest(names=names, start=m.start(), end=end))
        pos = max(end, m.end())
    if not found and first_error is not None:
        raise first_error
    return found
